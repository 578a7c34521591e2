// The SQLite store's own edges: the single-writer lock cannot be got round through an alias, and a
// file that is not a database is named, left untouched, and refused.
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openStore } from '../../src/store/index.ts';
import type { Store } from '../../src/store/index.ts';

const dirs: string[] = [];
const stores: Store[] = [];

function dir(): string {
  const d = mkdtempSync(join(tmpdir(), 'ln-sqlite-edges-'));
  dirs.push(d);
  return d;
}

afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('sqlite store edges', () => {
  it('a second exclusive open through a symlink to the file, or to its directory, is refused', async () => {
    const d = dir();
    mkdirSync(join(d, 'data'));
    const file = join(d, 'data', 'notifier.db');
    stores.push(await openStore(`sqlite:${file}`, { exclusive: true }));
    symlinkSync(file, join(d, 'alias.db'));
    symlinkSync(join(d, 'data'), join(d, 'linked'));
    for (const alias of [join(d, 'alias.db'), join(d, 'linked', 'notifier.db')]) {
      await expect(openStore(`sqlite:${alias}`, { exclusive: true })).rejects.toMatchObject({
        code: 'ESTORELOCKED',
      });
    }
    // the lock file sits beside the real file only
    expect(readdirSync(d).filter((f) => f.endsWith('.lock'))).toEqual([]);
    expect(readdirSync(join(d, 'data'))).toContain('notifier.db.lock');
  });

  it('opened exclusively, it takes over the leases and heartbeat of a process that died (the lock says so)', async () => {
    const d = dir();
    const file = join(d, 'notifier.db');
    const dead = await openStore(`sqlite:${file}`);
    await dead.heartbeat({ id: 'dead', host: 'h', pid: 1 }, 60_000);
    const old = (await dead.acquireLease('r', 'dead', 60_000))!;
    await dead.close(); // as after kill -9: its rows stay, live for another minute
    const store = await openStore(`sqlite:${file}`, { exclusive: true });
    stores.push(store);
    expect((await store.heartbeat({ id: 'new', host: 'h', pid: 2 }, 60_000)).map((r) => r.id)).toEqual([
      'new',
    ]);
    const lease = await store.acquireLease('r', 'new', 60_000);
    expect(lease).toMatchObject({ holder: 'new', epoch: old.epoch + 1 });
    // and the dead holder's fence no longer writes
    await expect(
      store.commitBatch('r', [], { floor: old.acquiredAt, watermark: old.acquiredAt }, undefined, {
        holder: 'dead',
        epoch: old.epoch,
      }),
    ).rejects.toMatchObject({ code: 'ELEASELOST' });
  });

  it('a file that is not a database: one message naming it and what to do; the file untouched', async () => {
    const d = dir();
    const file = join(d, 'notifier.db');
    const garbage = randomBytes(8192);
    writeFileSync(file, garbage);
    const err = (await openStore(`sqlite:${file}`, { exclusive: true }).catch((e: unknown) => e)) as Error & {
      code?: string;
    };
    expect(err).toMatchObject({ code: 'ESTORECORRUPT' });
    expect(err.message).toContain(file);
    expect(err.message).toMatch(/left untouched.*backup/);
    expect(err.message).not.toContain('\n');
    expect(readFileSync(file).equals(garbage)).toBe(true);
    expect(readdirSync(d).sort()).toEqual(['notifier.db']); // no -wal, -shm or lock left behind
    // read-only commands (status, outbox list) say the same
    await expect(openStore(`sqlite:${file}`, { readOnly: true })).rejects.toMatchObject({
      code: 'ESTORECORRUPT',
    });
  });
});
