// REST calls per poll for 0, 1, 2,500 and 10,000 new records, against the emulator over HTTP.
// Target: at most ceil(N / 2000) + 1 calls, none per record. Prints calls / target as a ratio.
// Then the idle poll that follows (nothing new, not a lookback sweep): target one call, zero
// records read, whatever the last second held (all N records share one CreatedDate second).
// Run: node bench/poll-calls.ts
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { ruleSchema } from '../src/config/schema.ts';
import { startEmulator } from '../src/emulator/index.ts';
import { connectSalesforce, createConnection } from '../src/sources/salesforce/connection.ts';
import { RulePoller } from '../src/sources/salesforce/poller.ts';
import { Enqueuer } from '../src/app/enqueue.ts';
import { openStore } from '../src/store/index.ts';
import { compileRule } from '../src/templates/index.ts';

for (const k of ['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY']) delete process.env[k];

const emu = await startEmulator({ port: 0 });
const dir = mkdtempSync(join(tmpdir(), 'ln-bench-calls-'));
const rows: string[] = [];
const idleRows: string[] = [];
try {
  for (const n of [0, 1, 2500, 10_000]) {
    emu.control.reset();
    const store = await openStore(`sqlite:${join(dir, `calls-${n}.db`)}`, { exclusive: true });
    await store.migrate();
    const rule = ruleSchema.parse({
      name: 'bench',
      startFrom: '2026-01-01T00:00:00Z',
      select: ['FirstName', 'LastName', 'Company', 'Email', 'Owner.Email'],
      email: {
        from: 'desk@example.com',
        to: '{{Owner.Email}}',
        subject: 'New lead {{LastName}}',
        text: '{{Company}}',
      },
    });
    const sf = {
      loginUrl: emu.url,
      apiVersion: '62.0',
      requestTimeoutMs: 60_000,
      auth: {
        flow: 'client_credentials' as const,
        clientId: 'emulator-client',
        clientSecret: 'emulator-secret',
      },
    };
    const conn = createConnection(sf, dir);
    await connectSalesforce(conn, sf, dir);
    const logger = pino({ level: 'silent' });
    const enqueuer = new Enqueuer({ rule, compiled: compileRule(rule, dir), store, logger });
    const poller = new RulePoller({
      rule,
      conn,
      store,
      commit: enqueuer.commit,
      apiVersion: '62.0',
      logger: pino({ level: 'silent' }),
    });
    await poller.init();
    emu.org.insertMany(
      'Lead',
      Array.from({ length: n }, (_, i) => ({
        FirstName: `F${i}`,
        LastName: `L${i}`,
        Company: `C${i}`,
        Email: `l${i}@example.com`,
      })),
      { createdDate: new Date('2026-06-01T00:00:00Z') },
    );
    const before = sum(emu.counters());
    const t0 = performance.now();
    const r = await poller.pollOnce();
    const ms = performance.now() - t0;
    const calls = sum(emu.counters()) - before;
    const target = Math.ceil(n / 2000) + 1;
    rows.push(
      `N=${String(n).padStart(6)}  calls=${calls} (poller counted ${r.apiCalls})  target<=${target}  ratio=${(calls / target).toFixed(2)}  enqueued=${r.enqueued}  ${ms.toFixed(0)} ms`,
    );
    const idleBefore = sum(emu.counters());
    const idle = await poller.pollOnce();
    const idleCalls = sum(emu.counters()) - idleBefore;
    idleRows.push(
      `after N=${String(n).padStart(6)}: calls=${idleCalls} records read=${idle.read} (sweep: ${idle.sweep})  ${idleCalls === 1 && idle.read === 0 && !idle.sweep ? 'OK' : 'ABOVE TARGET'}`,
    );
    await store.close();
  }
} finally {
  await emu.close();
  rmSync(dir, { recursive: true, force: true });
}
console.log('REST calls per poll (ratio = calls / (ceil(N/2000)+1); <= 1.00 meets the target)');
for (const r of rows) console.log('  ' + r);
console.log('Idle poll right after (target: 1 call, 0 records read)');
for (const r of idleRows) console.log('  ' + r);

function sum(c: Record<string, number>): number {
  // count only REST API calls, not OAuth token requests
  return Object.entries(c)
    .filter(([k]) => !/token|oauth|__emulator/i.test(k))
    .reduce((a, [, v]) => a + v, 0);
}
