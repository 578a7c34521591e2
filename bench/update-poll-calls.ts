// REST calls per poll of an `on: updated` rule for 0, 1, 2,500 and 10,000 changes (half of them
// qualifying), against the emulator over HTTP. Target: the created poll's bound plus one for the
// "does not match" side, ceil(N / 2000) + 2; none per record. Baseline measured in the same run:
// a created rule's poll of N new records (ceil(N / 2000) + 1). Prints calls / target as a ratio.
// Run: node bench/update-poll-calls.ts
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { ruleSchema } from '../src/config/schema.ts';
import { startEmulator } from '../src/emulator/index.ts';
import { connectSalesforce, createConnection } from '../src/sources/salesforce/connection.ts';
import { RulePoller } from '../src/sources/salesforce/poller.ts';
import { UpdatePoller } from '../src/sources/salesforce/update-poller.ts';
import { Enqueuer } from '../src/app/enqueue.ts';
import { openStore } from '../src/store/index.ts';
import { compileRule } from '../src/templates/index.ts';

for (const k of ['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY']) delete process.env[k];

const emu = await startEmulator({ port: 0 });
const dir = mkdtempSync(join(tmpdir(), 'ln-bench-update-calls-'));
const logger = pino({ level: 'silent' });
const sf = {
  loginUrl: emu.url,
  apiVersion: '62.0',
  requestTimeoutMs: 60_000,
  auth: { flow: 'client_credentials' as const, clientId: 'emulator-client', clientSecret: 'emulator-secret' },
};
const email = {
  from: 'desk@example.com',
  to: 'sales@example.com',
  subject: '{{LastName}}',
  text: '{{Status}}',
};
const rows: string[] = [];

function restCalls(): number {
  // REST API calls only, not OAuth token requests
  return Object.entries(emu.counters())
    .filter(([k]) => !/token|oauth|__emulator/i.test(k))
    .reduce((a, [, v]) => a + v, 0);
}

try {
  for (const n of [0, 1, 2500, 10_000]) {
    emu.control.reset();
    const store = await openStore(`sqlite:${join(dir, `calls-${n}.db`)}`, { exclusive: true });
    await store.migrate();
    const conn = createConnection(sf, dir);
    await connectSalesforce(conn, sf, dir);

    // baseline: a created rule's poll of N new records
    const created = ruleSchema.parse({
      name: 'created',
      startFrom: '2026-01-01T00:00:00Z',
      select: ['LastName'],
      email,
    });
    const ce = new Enqueuer({ rule: created, compiled: compileRule(created, dir), store, logger });
    const cp = new RulePoller({ rule: created, conn, store, commit: ce.commit, apiVersion: '62.0', logger });
    await cp.init();
    const ids = emu.control.insert(
      'Lead',
      Array.from({ length: n }, (_, i) => ({ LastName: `L${i}`, Company: `C${i}` })),
      { createdDate: '2026-06-01T00:00:00Z' },
    );
    let before = restCalls();
    const cr = await cp.pollOnce();
    const createdCalls = restCalls() - before;

    // the updated rule: a first poll sees every Lead (baselines), then N changes, half qualifying
    const updated = ruleSchema.parse({
      name: 'updated',
      on: 'updated',
      startFrom: '2026-01-01T00:00:00Z',
      where: "Status = 'Working - Contacted'",
      select: ['LastName', 'Status'],
      email,
    });
    let clock = Date.parse('2026-06-01T01:00:00Z');
    const ue = new Enqueuer({ rule: updated, compiled: compileRule(updated, dir), store, logger });
    const up = new UpdatePoller({
      rule: updated,
      conn,
      store,
      commit: ue.commit,
      apiVersion: '62.0',
      logger,
      now: () => new Date(clock),
    });
    await up.init();
    await up.pollOnce();
    emu.control.update(
      'Lead',
      ids.map((Id, i) => ({ Id, ...(i % 2 === 0 ? { Status: 'Working - Contacted' } : { Rating: 'Hot' }) })),
      { systemModstamp: '2026-06-01T00:30:00Z' },
    );
    clock += 10_000; // a regular poll, not a lookback sweep
    before = restCalls();
    const t0 = performance.now();
    const ur = await up.pollOnce();
    const ms = performance.now() - t0;
    const calls = restCalls() - before;
    const target = Math.ceil(n / 2000) + 2;
    rows.push(
      `N=${String(n).padStart(6)}  updated: calls=${calls} (poller counted ${ur.apiCalls})  target<=${target}  ratio=${(calls / target).toFixed(2)}  ` +
        `notified=${ur.enqueued}  ${ms.toFixed(0)} ms | created baseline: calls=${createdCalls} (<= ${Math.ceil(n / 2000) + 1}), ` +
        `enqueued=${cr.enqueued} | updated / created calls = ${(calls / Math.max(1, createdCalls)).toFixed(2)}`,
    );
    await store.close();
  }
} finally {
  await emu.close();
  rmSync(dir, { recursive: true, force: true });
}
console.log(
  'REST calls per poll of an on: updated rule (ratio = calls / (ceil(N/2000)+2); <= 1.00 meets the target)',
);
for (const r of rows) console.log('  ' + r);
