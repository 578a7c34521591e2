// Peak RSS of `lead-notifier run` while it works through a backlog of 100,000 Leads (polled,
// rendered, stored and sent into a loopback SMTP server). Baseline, measured in the same run: the
// same daemon with no backlog. Target: peak under 150 MB. The SMTP peer is Postfix's smtp-sink when
// installed (the smtp-server package otherwise), so the daemon's memory is measured at full speed.
// Run: node bench/backlog-rss.ts [N=100000]
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { stringify } from 'yaml';
import { startEmulator } from '../src/emulator/index.ts';
import { havePostfixSink, startPostfixSink } from './helpers/postfix-sink.ts';

for (const k of ['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY']) delete process.env[k];
const N = Number(process.argv[2] ?? 100_000);
// BENCH_CLI: another checkout's bin/lead-notifier.js (to measure a "before")
const CLI = process.env.BENCH_CLI ?? new URL('../bin/lead-notifier.js', import.meta.url).pathname;

let countServer = 0;
const smtp = new SMTPServer({
  authOptional: true,
  disabledCommands: ['STARTTLS'],
  logger: false,
  onData(stream, _session, cb) {
    stream.on('data', () => undefined);
    stream.on('end', () => {
      countServer++;
      cb();
    });
  },
});
await new Promise<void>((r) => smtp.listen(0, '127.0.0.1', r));
const sink = havePostfixSink() ? await startPostfixSink() : undefined;
const smtpPort = sink ? sink.port : (smtp.server.address() as { port: number }).port;
const counted = () => (sink ? sink.received() : countServer);
const emu = await startEmulator({ port: 0 });

function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

async function runDaemon(label: string, expected: number): Promise<{ peak: number; seconds: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'ln-bench-rss-'));
  const config = {
    salesforce: {
      loginUrl: emu.url,
      auth: { flow: 'client_credentials', clientId: 'emulator-client', clientSecret: 'emulator-secret' },
    },
    smtp: {
      host: '127.0.0.1',
      port: smtpPort,
      ignoreTLS: true,
      pool: { maxConnections: 5 },
      // BENCH_SMTP_THREAD=true|false: smtp.thread (unset: the default, as a user runs it)
      ...(process.env.BENCH_SMTP_THREAD ? { thread: process.env.BENCH_SMTP_THREAD === 'true' } : {}),
    },
    store: `sqlite:${join(dir, 'n.db')}`,
    // as a user runs it: HTTP (health, readiness, metrics) on, logging at info
    http: { host: '127.0.0.1', port: 0 },
    rules: [
      {
        name: 'backlog',
        schedule: '*/2 * * * * *',
        startFrom: '2026-01-01T00:00:00Z',
        select: ['FirstName', 'LastName', 'Company', 'Email', 'Owner.Email'],
        email: {
          from: 'desk@example.com',
          to: 'sales@example.com',
          subject: 'New lead {{FirstName}} {{LastName}}',
          text: '{{FirstName}} {{LastName}} from {{Company}} <{{Email}}>',
          html: '<p>{{FirstName}} {{LastName}} from {{Company}}</p>',
        },
      },
    ],
  };
  writeFileSync(join(dir, 'n.yaml'), stringify(config));
  const env = { ...process.env };
  // The daemon runs the way a user starts it: no Node flags (it sets its own heap limits, see
  // src/util/heap.ts). BENCH_NODE_ARGS adds flags, e.g. the image's NODE_OPTIONS.
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, CLI, 'run', '-c', join(dir, 'n.yaml')], {
    env,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const start = Date.now();
  const startReceived = counted();
  let peak = 0;
  const deadline = Date.now() + 15 * 60_000;
  const settleMs = expected === 0 ? 5000 : 0;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    peak = Math.max(peak, peakRss(child.pid!));
    if (counted() - startReceived >= expected && Date.now() - start > settleMs) break;
  }
  const seconds = (Date.now() - start) / 1000;
  peak = Math.max(peak, peakRss(child.pid!));
  child.kill('SIGTERM');
  await new Promise((r) => child.on('exit', r));
  rmSync(dir, { recursive: true, force: true });
  console.log(
    `  ${label}: peak RSS ${(peak / 1048576).toFixed(1)} MB, ${counted() - startReceived} sent in ${seconds.toFixed(1)} s`,
  );
  return { peak, seconds };
}

try {
  console.log(
    `Peak RSS of the daemon (VmHWM), ${N} Lead backlog, into ${sink ? 'smtp-sink' : 'smtp-server'}`,
  );
  const idle = await runDaemon('baseline (no backlog)', 0);
  // A bulk import: 100 records a second (CreatedDate has one-second resolution).
  const base = Date.parse('2026-06-01T00:00:00Z');
  for (let start = 0; start < N; start += 100) {
    emu.org.insertMany(
      'Lead',
      Array.from({ length: Math.min(100, N - start) }, (_, k) => {
        const i = start + k;
        return {
          FirstName: `First${i}`,
          LastName: `Last${i}`,
          Company: `Company ${i} Ltd`,
          Email: `lead${i}@prospect.example.org`,
          LeadSource: 'Web',
        };
      }),
      { createdDate: new Date(base + (start / 100) * 1000) },
    );
  }
  const work = await runDaemon(`backlog of ${N}`, N);
  const target = 150 * 1048576;
  console.log(
    `  ratio to baseline: ${(work.peak / idle.peak).toFixed(2)}x; ratio to the 150 MB target: ${(work.peak / target).toFixed(2)} (<= 1.00 meets it); ${(N / work.seconds).toFixed(0)} records/s end to end`,
  );
} finally {
  await emu.close();
  await new Promise<void>((r) => smtp.close(() => r()));
  await sink?.close();
}
