// The dispatcher's store step alone: Store.cycle on a SQLite file holding N pending rows, each
// tick writing one `sent` outcome, starting the row reserved by the previous tick and reserving
// the next (what a pooled connection costs the store per message). Prints CPU and wall time per
// tick. Run: node bench/store-cycle.ts [N=10000]   (SQL=...: statements to run after migrating)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from '../src/store/sqlite.ts';
import type { RenderedMessage } from '../src/types.ts';

const N = Number(process.argv[2] ?? 10_000);
const dir = mkdtempSync(join(tmpdir(), 'ln-bench-cycle-'));
const store = new SqliteStore(join(dir, 'c.db'));
try {
  await store.migrate();
  const message = {
    from: 'desk@example.com',
    to: ['sales@example.com'],
    cc: [],
    bcc: [],
    subject: 'New lead First1 Last1',
    text: 'First1 Last1 from Company 1 Ltd <lead1@prospect.example.org>',
    html: '<p>First1 Last1 from Company 1 Ltd</p>',
    messageId: '<backlog.1@example.com>',
    headers: {},
    attachments: [],
  } as unknown as RenderedMessage;
  const at = '2026-01-01T00:00:00.000Z';
  for (let b = 0; b < N; b += 100) {
    const rows = Array.from({ length: Math.min(100, N - b) }, (_, k) => ({
      rule: 'r',
      object: 'Lead',
      recordId: `id${b + k}`,
      recordCreatedDate: at,
      message,
      state: 'pending' as const,
    }));
    await store.commitBatch('r', rows, { floor: at, watermark: at });
  }
  const result = { messageId: '<a>', response: '250 ok', accepted: ['sales@example.com'], rejected: [] };
  let sending: number[] = [];
  let reserved: number[] = [];
  let ticks = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (;;) {
    const r = await store.cycle({
      owner: 'bench',
      leaseMs: 60_000,
      outcomes: sending.map((id) => ({ id, kind: 'sent' as const, result })),
      start: reserved,
      reserve: 1,
    });
    ticks++;
    sending = r.started;
    reserved = r.reserved.map((x) => x.id);
    if (sending.length === 0 && reserved.length === 0) break;
  }
  const c = process.cpuUsage(c0);
  console.log(
    `Store.cycle, SQLite, ${N} rows, 1 outcome + 1 start + 1 reservation per tick: ` +
      `${((c.user + c.system) / 1000 / ticks).toFixed(3)} ms CPU, ` +
      `${((performance.now() - t0) / ticks).toFixed(3)} ms wall per tick (${ticks} ticks)`,
  );
} finally {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}
