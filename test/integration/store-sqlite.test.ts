import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { openStore, StoreLockedError, StoreMissingError } from '../../src/store/index.ts';
import type { Store } from '../../src/store/index.ts';
import { loadMigrations } from '../../src/store/migrations.ts';
import { row, storeContract } from './store-contract.ts';

const dir = mkdtempSync(join(tmpdir(), 'lead-notifier-store-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// contract databases are separate files; handles are non-exclusive so two can share one file
storeContract('sqlite', (db) => openStore(`sqlite:${join(dir, 'contract', `${db}.db`)}`));

const storeModule = new URL('../../src/store/index.ts', import.meta.url).href;
const cp = { floor: '2024-01-01T00:00:00.000Z', watermark: '2024-01-01T00:00:00.000Z' };

/** a separate process that opens `path` exclusively, enqueues and claims one row, then waits */
async function holder(path: string): Promise<ChildProcess> {
  const code = `
    import { openStore } from ${JSON.stringify(storeModule)};
    const store = await openStore(${JSON.stringify(`sqlite:${path}`)}, { exclusive: true });
    const r = { rule: 'r', object: 'Lead', recordId: 'child1', recordCreatedDate: '2024-01-01T00:00:00Z', state: 'pending',
      message: { messageId: '<m>', from: 'a@b', to: ['c@d'], cc: [], bcc: [], subject: 's', headers: {}, attachments: [] } };
    await store.commitBatch('r', [r], ${JSON.stringify(cp)});
    await store.claimDue({ owner: 'child', limit: 1, leaseMs: 600000 });
    process.stdout.write('ready\\n');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) resolve();
    });
    child.on('exit', (c) => reject(new Error(`holder exited ${c}: ${stderr}`)));
  });
  return child;
}

async function killHard(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

describe('sqlite store specifics', () => {
  const toClose: Store[] = [];
  const children: ChildProcess[] = [];
  afterEach(async () => {
    await Promise.all(toClose.splice(0).map((s) => s.close()));
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) await killHard(c);
  });
  const keep = (s: Store) => (toClose.push(s), s);

  it('creates the parent directory and resolves relative paths against baseDir; WAL is on', async () => {
    const store = keep(await openStore('sqlite:./nested/deeper/notifier.db', { baseDir: join(dir, 'base') }));
    const path = join(dir, 'base', 'nested', 'deeper', 'notifier.db');
    expect(existsSync(path)).toBe(true);
    await store.commitBatch('r', [row('r', 'a')], cp);
    expect(existsSync(`${path}-wal`)).toBe(true);
  });

  it('sqlite::memory: works', async () => {
    const store = keep(await openStore('sqlite::memory:', { exclusive: true }));
    expect((await store.commitBatch('r', [row('r', 'a')], cp)).inserted).toBe(1);
  });

  it('exclusive: a second open fails while a live process holds the lock; kill -9 leaves a lock that is taken over', async () => {
    const path = join(dir, 'locked.db');
    const child = await holder(path);
    children.push(child);
    const lock = JSON.parse(readFileSync(`${path}.lock`, 'utf8')) as {
      pid: number;
      hostname: string;
      startedAt: string;
    };
    expect(lock.pid).toBe(child.pid);

    const err = await openStore(`sqlite:${path}`, { exclusive: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreLockedError);
    expect((err as Error).message).toContain(`pid ${child.pid}`);

    // readers work while the daemon holds the lock (WAL)
    const reader = keep(await openStore(`sqlite:${path}`, { readOnly: true }));
    expect((await reader.counts()).total.sending).toBe(1);
    await expect(reader.commitBatch('r', [row('r', 'x')], cp)).rejects.toThrow(/readonly/i);

    await killHard(child);
    expect(existsSync(`${path}.lock`)).toBe(true); // kill -9 ran no cleanup
    const store = keep(await openStore(`sqlite:${path}`, { exclusive: true }));
    expect(JSON.parse(readFileSync(`${path}.lock`, 'utf8')).pid).toBe(process.pid);
    // the dead process's in-flight row: uncertain, not re-sent
    const [recovered] = await store.recoverAbandoned({ all: true });
    expect((await store.get(recovered!))!).toMatchObject({ state: 'unknown', recordId: 'child1' });
    await store.close();
    expect(existsSync(`${path}.lock`)).toBe(false);
  });

  it('exclusive: a lock naming a dead pid or our own pid (container restart) is taken over', async () => {
    const path = join(dir, 'stale.db');
    const exited = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
      encoding: 'utf8',
    });
    const deadPid = Number(exited.stdout);
    expect(deadPid).toBeGreaterThan(0);
    const { hostname } = await import('node:os');
    for (const pid of [deadPid, process.pid]) {
      writeFileSync(
        `${path}.lock`,
        JSON.stringify({ pid, hostname: hostname(), startedAt: new Date().toISOString(), token: 't' }),
      );
      const store = await openStore(`sqlite:${path}`, { exclusive: true });
      const now = JSON.parse(readFileSync(`${path}.lock`, 'utf8')) as { pid: number; token: string };
      expect(now.pid).toBe(process.pid);
      expect(now.token).not.toBe('t');
      await store.close();
      expect(existsSync(`${path}.lock`)).toBe(false);
    }
  });

  it('exclusive: twice in one process fails; a non-exclusive handle does not take the lock', async () => {
    const path = join(dir, 'twice.db');
    keep(await openStore(`sqlite:${path}`, { exclusive: true }));
    await expect(openStore(`sqlite:${path}`, { exclusive: true })).rejects.toBeInstanceOf(StoreLockedError);
    const plain = keep(await openStore(`sqlite:${path}`));
    expect(await plain.counts()).toBeTruthy();
  });

  it('exclusive: a lock from another host counts while its heartbeat is fresh', async () => {
    const path = join(dir, 'foreign.db');
    const lockPath = `${path}.lock`;
    writeFileSync(
      lockPath,
      JSON.stringify({ pid: 1, hostname: 'elsewhere.invalid', startedAt: new Date().toISOString() }),
    );
    await expect(openStore(`sqlite:${path}`, { exclusive: true })).rejects.toThrow(
      /pid 1 on host elsewhere\.invalid/,
    );
    const old = new Date(Date.now() - 5 * 60_000);
    utimesSync(lockPath, old, old);
    const store = keep(await openStore(`sqlite:${path}`, { exclusive: true }));
    expect(JSON.parse(readFileSync(lockPath, 'utf8')).pid).toBe(process.pid);
    await store.close();
  });

  it('several processes claiming from one file at once never share a row (IMMEDIATE + busy timeout)', async () => {
    const path = join(dir, 'multi.db');
    const seedStore = keep(await openStore(`sqlite:${path}`));
    const total = 300;
    const rows = Array.from({ length: total }, (_, i) => row('r', `m${String(i).padStart(4, '0')}`));
    expect((await seedStore.commitBatch('r', rows, cp)).inserted).toBe(total);
    const code = `
      import { openStore } from ${JSON.stringify(storeModule)};
      const store = await openStore(${JSON.stringify(`sqlite:${path}`)});
      const ids = [];
      for (;;) {
        const got = await store.claimDue({ owner: 'p' + process.pid, limit: 3, leaseMs: 600000 });
        if (got.length === 0) break;
        ids.push(...got.map((r) => r.id));
        await store.recordOutcomes('p' + process.pid, got.map((r) => ({ id: r.id, kind: 'sent', result: { response: '250', accepted: [], rejected: [] } })));
      }
      await store.close();
      process.stdout.write(JSON.stringify(ids));
    `;
    const run = () =>
      new Promise<number[]>((resolve, reject) => {
        const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        let err = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (err += d.toString()));
        child.on('exit', (c) => (c === 0 ? resolve(JSON.parse(out) as number[]) : reject(new Error(err))));
      });
    const results = await Promise.all([run(), run(), run()]);
    const all = results.flat();
    expect(all.length).toBe(total);
    expect(new Set(all).size).toBe(total);
    expect((await seedStore.counts()).total.sent).toBe(total);
  });

  it('readOnly: a missing file is StoreMissingError and is not created', async () => {
    const path = join(dir, 'missing', 'nope.db');
    await expect(openStore(`sqlite:${path}`, { readOnly: true })).rejects.toBeInstanceOf(StoreMissingError);
    expect(existsSync(path)).toBe(false);
  });

  it('rejects an unknown store URL scheme', async () => {
    await expect(openStore('mysql://x')).rejects.toThrow(/sqlite: or postgres/);
  });

  it('synchronous: normal by default, full from the store URL, anything else refused', async () => {
    const normal = await openStore(`sqlite:${join(dir, 'normal.db')}`);
    const full = await openStore(`sqlite:${join(dir, 'full.db')}?synchronous=FULL`);
    // synchronous is a per-connection setting: read it through the store's own handle
    const read = (s: unknown) =>
      (s as { db: DatabaseSync }).db.prepare('PRAGMA synchronous').get() as { synchronous: number };
    // SQLite: 1 = NORMAL, 2 = FULL
    expect(read(full).synchronous).toBe(2);
    expect(read(normal).synchronous).toBe(1);
    // the option is not part of the file name
    expect(existsSync(join(dir, 'full.db'))).toBe(true);
    await full.close();
    await normal.close();
    await expect(openStore(`sqlite:${join(dir, 'x.db')}?synchronous=off`)).rejects.toThrow(
      /synchronous must be full or normal/,
    );
    await expect(openStore(`sqlite:${join(dir, 'x.db')}?journal=delete`)).rejects.toThrow(
      /unknown sqlite option/,
    );
  });
});

describe('a store made before on: updated (schema version 3)', () => {
  it('opens, upgrades, keeps its ledger and takes update rows and match states', async () => {
    const path = join(dir, 'v3.db');
    // today's schema, applied as version 3 code did, with one created row in it
    const db = new DatabaseSync(path);
    db.exec(
      'CREATE TABLE lead_notifier_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT',
    );
    for (const m of loadMigrations('sqlite').filter((x) => x.version <= 3)) {
      db.prepare('INSERT INTO lead_notifier_migrations VALUES (?, ?, ?)').run(m.version, m.name, cp.floor);
      db.exec(m.sql);
    }
    db.prepare(
      `INSERT INTO outbox (rule, object, record_id, record_created_date, state, message, created_at, updated_at)
       VALUES ('new-leads', 'Lead', 'rec1', ?, 'sent', ?, ?, ?)`,
    ).run(cp.floor, JSON.stringify({ messageId: '<new-leads.rec1@x.test>' }), cp.floor, cp.floor);
    db.close();

    const store = await openStore(`sqlite:${path}`);
    try {
      expect((await store.commitBatch('new-leads', [row('new-leads', 'rec1')], cp)).inserted).toBe(0);
      expect((await store.commitBatch('new-leads', [row('new-leads', 'rec2')], cp)).inserted).toBe(1);
      const upd = await store.commitBatch('qualified', [row('qualified', 'rec1.20240101T000001Z')], cp, {
        matchStates: [{ recordId: 'rec1', matched: true, watched: null, systemModstamp: cp.floor }],
      });
      expect(upd.inserted).toBe(1);
      expect((await store.getMatchStates('qualified', ['rec1'])).get('rec1')?.matched).toBe(true);
      expect((await store.firstMessageIds(['rec1'])).get('rec1')).toBe('<new-leads.rec1@x.test>');
      expect((await store.counts()).total.sent).toBe(1);
    } finally {
      await store.close();
    }
  });
});
