// `npm run bench`: every benchmark, one after the other, each printing its figures as ratios
// against a baseline measured in the same run. Pick some by name: `npm run bench -- startup drain`.
// The 100,000-record backlog takes minutes; BENCH_BACKLOG=20000 makes it shorter.
import { spawnSync } from 'node:child_process';

const benches: Record<string, string[]> = {
  // delivery: outbox -> dispatcher vs plain pooled nodemailer, into smtp-sink and smtp-server
  throughput: ['throughput.ts', '10000', '3'],
  // webhook channel: outbox -> dispatcher -> HTTP channel vs plain undici, into a local node:http receiver
  webhook: ['webhook.ts', '5000', '3', '8'],
  // the same with a receiver that takes 20 ms per request, as real ones do
  'webhook-20ms': ['webhook.ts', '2000', '3', '8', '20'],
  // the outside view: `lead-notifier run` draining 10,000 Leads into smtp-sink, with peak RSS
  drain: ['drain.ts', '10000', '3'],
  // peak RSS of `lead-notifier run` through a 100,000-record backlog, no flags
  'backlog-rss': ['backlog-rss.ts', process.env.BENCH_BACKLOG ?? '100000'],
  // REST calls per poll, and records read by an idle poll
  'poll-calls': ['poll-calls.ts'],
  // --help and run -> first poll, median of 5
  startup: ['startup.ts', '5'],
  // Send API: POST /v1/send requests/s to 202 from 50 keep-alive clients, SQLite store (target 2,000)
  'send-api': ['send-api.ts', '20000', '50', '3'],
  // the dispatcher's store step alone: Store.cycle CPU per message on SQLite
  'store-cycle': ['store-cycle.ts', '10000'],
  // wide records under the daemon's heap cap: an on: updated backlog, and a digest
  'wide-updated': ['wide-records.ts', 'updated', '10000', '16000'],
  'wide-digest': ['wide-records.ts', 'digest', '500', '32000'],
};

const wanted = process.argv.slice(2);
for (const w of wanted) {
  if (!(w in benches)) {
    console.error(`unknown benchmark ${w}; known: ${Object.keys(benches).join(', ')}`);
    process.exit(2);
  }
}
let failed = 0;
for (const [name, [file, ...args]] of Object.entries(benches)) {
  if (wanted.length && !wanted.includes(name)) continue;
  console.log(`\n== ${name}`);
  const r = spawnSync(process.execPath, [new URL(file!, import.meta.url).pathname, ...args], {
    stdio: 'inherit',
    env: { ...process.env, BENCH_NODE_ARGS: process.env.BENCH_NODE_ARGS ?? '' },
  });
  if (r.status !== 0) {
    failed++;
    console.log(`== ${name}: exited ${r.status ?? r.signal}`);
  }
}
process.exit(failed ? 1 : 0);
