// Send API intake: requests/s answered 202 by `lead-notifier run` (SQLite store, as a user starts
// it) on loopback, from CLIENTS concurrent keep-alive clients (undici Pool, one request in flight
// per connection). Each 202 is a committed outbox row (group commit, http/send-api.ts). Two
// figures: `sending`, the dispatcher delivering the rows meanwhile into Postfix's smtp-sink (the
// `smtp-server` package when Postfix is missing) in the same process, and `intake`, the SMTP port
// closed so the circuit opens and rows wait (the API's own cost). Target: >= 2,000 requests/s.
// Printed: requests/s per round, the medians, their ratio to 2,000, the load average (the
// machine is shared: read the figures with it), and requests per CPU-second of the daemon process
// (from /proc: what it would take with one core to itself, however busy the machine is).
// Run: node bench/send-api.ts [REQUESTS=20000] [CLIENTS=50] [ROUNDS=3]   (BENCH_NODE_ARGS: daemon flags)
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { stringify } from 'yaml';
import { startEmulator } from '../src/emulator/index.ts';
import { havePostfixSink, startPostfixSink } from './helpers/postfix-sink.ts';

for (const k of ['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY']) delete process.env[k];
const REQUESTS = Number(process.argv[2] ?? 20_000);
const CLIENTS = Number(process.argv[3] ?? 50);
const ROUNDS = Number(process.argv[4] ?? 3);
const TARGET = 2000;
const TOKEN = 'bench-token-0123456789abcdef';
const CLI = process.env.BENCH_CLI ?? new URL('../bin/lead-notifier.js', import.meta.url).pathname;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** CPU seconds (user + system) the process has used so far, from /proc (Linux) */
function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    // utime and stime are fields 14 and 15 of stat(5), in clock ticks (USER_HZ, 100 on Linux)
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const sink = havePostfixSink() ? await startPostfixSink() : undefined;
let smtpPort = sink?.port;
let stopFallback: (() => Promise<void>) | undefined;
if (!smtpPort) {
  console.log('(Postfix smtp-sink missing: sending into the smtp-server package instead)');
  const { SMTPServer } = await import('smtp-server');
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    disableReverseLookup: true,
    logger: false,
    onData(stream, _session, cb) {
      stream.on('data', () => undefined);
      stream.on('end', () => cb());
    },
  });
  smtpPort = await new Promise<number>((r) =>
    server.listen(0, '127.0.0.1', () => r((server.server.address() as { port: number }).port)),
  );
  stopFallback = () => new Promise((r) => server.close(() => r()));
}
const emu = await startEmulator({ port: 0 });

const body = JSON.stringify({
  To: 'Sales <sales@example.com>; owner@example.com',
  Subject: 'New lead: Ada Lovelace (Analytical Engines)',
  Body: '<p>A new lead arrived.</p><ul><li>Name: Ada Lovelace</li><li>Company: Analytical Engines</li></ul>',
  IsHtml: true,
  Importance: 'High',
});

async function round(mode: 'sending' | 'intake'): Promise<{ rate: number; perCpuSecond: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'ln-bench-send-api-'));
  const port = await freePort();
  const config = {
    salesforce: {
      loginUrl: emu.url,
      auth: { flow: 'client_credentials', clientId: 'emulator-client', clientSecret: 'emulator-secret' },
    },
    smtp: {
      host: '127.0.0.1',
      port: mode === 'sending' ? smtpPort : await freePort(),
      ignoreTLS: true,
      pool: { maxConnections: 5 },
    },
    store: `sqlite:${join(dir, 'n.db')}`,
    http: {
      host: '127.0.0.1',
      port,
      sendApi: {
        tokens: [
          {
            name: 'bench',
            token: TOKEN,
            defaultFrom: 'Lead desk <leads@example.com>',
            rate: { requests: 100_000_000, per: '1m' },
          },
        ],
      },
    },
    log: { level: 'warn' },
    rules: [
      {
        name: 'idle',
        schedule: '*/30 * * * * *',
        email: { from: 'desk@example.com', to: 'sales@example.com', subject: 's', text: 't' },
      },
    ],
  };
  writeFileSync(join(dir, 'n.yaml'), stringify(config));
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, CLI, 'run', '-c', join(dir, 'n.yaml')], {
    env: { ...process.env, LOG_FORMAT: 'json' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: CLIENTS, pipelining: 1 });
  const headers = { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' };
  const post = async (): Promise<number> => {
    const r = await pool.request({ path: '/v1/send', method: 'POST', headers, body });
    await r.body.dump();
    return r.statusCode;
  };
  try {
    // ready: the store is open once a request is answered 202
    const deadline = Date.now() + 60_000;
    for (;;) {
      const status = await post().catch(() => 0);
      if (status === 202) break;
      if (Date.now() > deadline) throw new Error(`the daemon never answered 202 (last: ${status})`);
      await new Promise((r) => setTimeout(r, 100));
    }
    // warm-up: connections opened, JIT warm
    await Promise.all(Array.from({ length: CLIENTS }, () => post()));
    let next = 0;
    let accepted = 0;
    const other = new Map<number, number>();
    const client = async () => {
      while (next < REQUESTS) {
        next++;
        const status = await post();
        if (status === 202) accepted++;
        else other.set(status, (other.get(status) ?? 0) + 1);
      }
    };
    const t0 = performance.now();
    const cpu0 = cpuSeconds(child.pid!);
    await Promise.all(Array.from({ length: CLIENTS }, client));
    const seconds = (performance.now() - t0) / 1000;
    const cpu = cpuSeconds(child.pid!) - cpu0;
    if (other.size > 0) throw new Error(`non-202 replies: ${JSON.stringify(Object.fromEntries(other))}`);
    // requests per CPU-second of the daemon: what one whole core would take, whatever else runs
    return { rate: accepted / seconds, perCpuSecond: accepted / cpu };
  } finally {
    await pool.close();
    child.kill('SIGTERM');
    await new Promise((r) => child.on('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

const rates: Record<'sending' | 'intake', number[]> = { sending: [], intake: [] };
const perCpu: Record<'sending' | 'intake', number[]> = { sending: [], intake: [] };
for (let i = 0; i < ROUNDS; i++) {
  for (const mode of ['sending', 'intake'] as const) {
    const r = await round(mode);
    rates[mode].push(r.rate);
    perCpu[mode].push(r.perCpuSecond);
    console.log(
      `round ${i + 1} ${mode}: ${REQUESTS} requests from ${CLIENTS} clients: ${r.rate.toFixed(0)} requests/s to 202, ` +
        `${r.perCpuSecond.toFixed(0)} per daemon CPU-second (load average ${loadavg()[0]!.toFixed(2)})`,
    );
  }
}
for (const mode of ['sending', 'intake'] as const) {
  const m = median(rates[mode]);
  console.log(
    `send API ${mode === 'sending' ? '(dispatcher sending meanwhile)' : '(intake alone, SMTP down)'}: ${m.toFixed(0)} requests/s` +
      ` (median of ${ROUNDS}), ratio to ${TARGET}: ${(m / TARGET).toFixed(2)} (target >= 1.00);` +
      ` ${median(perCpu[mode]).toFixed(0)} requests per daemon CPU-second`,
  );
}
console.log(
  `load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')} on ${availableParallelism()} cores`,
);
await sink?.close();
await stopFallback?.();
await emu.close();
