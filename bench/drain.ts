// The outside view: `lead-notifier run` (as a user starts it, no Node flags) drains a
// backlog of N Leads from the org emulator into Postfix's smtp-sink with 5 connections. Printed:
// messages/s from the first delivery to the last, the same from process start, and peak RSS
// (VmHWM); beside it, plain pooled nodemailer sending N comparable messages into the same sink with
// the same connection count, measured in this run. Target: drain rate >= 0.9 of nodemailer's.
// Run: node bench/drain.ts [N=10000] [ROUNDS=3]   (BENCH_NODE_ARGS: extra flags for the daemon)
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { stringify } from 'yaml';
import { startEmulator } from '../src/emulator/index.ts';
import { startPostfixSink } from './helpers/postfix-sink.ts';

for (const k of ['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY']) delete process.env[k];
const N = Number(process.argv[2] ?? 10_000);
const ROUNDS = Number(process.argv[3] ?? 3);
const CONNECTIONS = 5;
// BENCH_CLI: another checkout's bin/lead-notifier.js (to measure a "before")
const CLI = process.env.BENCH_CLI ?? new URL('../bin/lead-notifier.js', import.meta.url).pathname;

const sink = await startPostfixSink();
const emu = await startEmulator({ port: 0 });

function peakRss(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** CPU seconds (user + system, all threads) the process has used so far */
function cpuSeconds(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // clock ticks: USER_HZ is 100 on Linux
  } catch {
    return NaN;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function leadFields(i: number) {
  return {
    FirstName: `First${i}`,
    LastName: `Last${i}`,
    Company: `Company ${i} Ltd`,
    Email: `lead${i}@prospect.example.org`,
    LeadSource: 'Web',
  };
}

async function daemon(): Promise<{
  drain: number;
  total: number;
  peakMb: number;
  cpuMs: number;
  drainCpuMs: number;
}> {
  emu.control.reset();
  const base = Date.parse('2026-06-01T00:00:00Z');
  // a bulk import: 100 records a second (CreatedDate has one-second resolution)
  for (let start = 0; start < N; start += 100) {
    emu.org.insertMany(
      'Lead',
      Array.from({ length: Math.min(100, N - start) }, (_, k) => leadFields(start + k)),
      { createdDate: new Date(base + (start / 100) * 1000) },
    );
  }
  const dir = mkdtempSync(join(tmpdir(), 'ln-bench-drain-'));
  const config = {
    salesforce: {
      loginUrl: emu.url,
      auth: { flow: 'client_credentials', clientId: 'emulator-client', clientSecret: 'emulator-secret' },
    },
    smtp: {
      host: '127.0.0.1',
      port: sink.port,
      ignoreTLS: true,
      pool: { maxConnections: CONNECTIONS },
      // BENCH_SMTP_THREAD=true|false: smtp.thread (unset: the default, as a user runs it)
      ...(process.env.BENCH_SMTP_THREAD ? { thread: process.env.BENCH_SMTP_THREAD === 'true' } : {}),
    },
    store: `sqlite:${join(dir, 'n.db')}`,
    http: { enabled: false },
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
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const before = sink.received();
  const t0 = performance.now();
  const child = spawn(process.execPath, [...nodeArgs, CLI, 'run', '-c', join(dir, 'n.yaml')], {
    env: { ...process.env, LOG_FORMAT: 'json' },
    // BENCH_DAEMON_LOG=file keeps the daemon's log lines (poll lines carry its memory figures)
    stdio: [
      'ignore',
      process.env.BENCH_DAEMON_LOG ? openSync(process.env.BENCH_DAEMON_LOG, 'w') : 'ignore',
      'inherit',
    ],
  });
  let first = 0;
  let firstCpu = 0;
  let peak = 0;
  const deadline = Date.now() + 10 * 60_000;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    peak = Math.max(peak, peakRss(child.pid!));
    const got = sink.received() - before;
    if (!first && got > 0) {
      first = performance.now();
      firstCpu = cpuSeconds(child.pid!);
    }
    if (got >= N) break;
  }
  const t1 = performance.now();
  peak = Math.max(peak, peakRss(child.pid!));
  const cpu = cpuSeconds(child.pid!);
  child.kill('SIGTERM');
  await new Promise((r) => child.on('exit', r));
  rmSync(dir, { recursive: true, force: true });
  if (sink.received() - before < N) throw new Error(`daemon: ${sink.received() - before} of ${N} arrived`);
  return {
    drain: N / ((t1 - first) / 1000),
    total: N / ((t1 - t0) / 1000),
    peakMb: peak / 1048576,
    // CPU per delivered message: from spawn (start-up, polling, rendering, enqueueing, sending),
    // and during the drain alone; a loaded machine moves the rates, much less these
    cpuMs: (cpu * 1000) / N,
    drainCpuMs: ((cpu - firstCpu) * 1000) / N,
  };
}

async function plain(): Promise<{ rate: number; cpuMs: number }> {
  const transport = nodemailer.createTransport({
    pool: true,
    host: '127.0.0.1',
    port: sink.port,
    maxConnections: CONNECTIONS,
    ignoreTLS: true,
  });
  const before = sink.received();
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  await Promise.all(
    Array.from({ length: N }, (_, i) => {
      const f = leadFields(i);
      return transport.sendMail({
        from: 'desk@example.com',
        to: 'sales@example.com',
        subject: `New lead ${f.FirstName} ${f.LastName}`,
        text: `${f.FirstName} ${f.LastName} from ${f.Company} <${f.Email}>`,
        html: `<p>${f.FirstName} ${f.LastName} from ${f.Company}</p>`,
        messageId: `<backlog.${i}@bench.test>`,
      });
    }),
  );
  const rate = N / ((performance.now() - t0) / 1000);
  const c = process.cpuUsage(c0);
  transport.close();
  await new Promise((r) => setTimeout(r, 200));
  if (sink.received() - before !== N) throw new Error('nodemailer: server count mismatch');
  return { rate, cpuMs: (c.user + c.system) / 1000 / N };
}

try {
  const d: Awaited<ReturnType<typeof daemon>>[] = [];
  const p: Awaited<ReturnType<typeof plain>>[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    if (round % 2 === 0) p.push(await plain());
    d.push(await daemon());
    if (round % 2 === 1) p.push(await plain());
    const last = d.at(-1)!;
    console.log(
      `round ${round + 1}: daemon ${last.drain.toFixed(0)} msgs/s (${last.total.toFixed(0)} from start), ` +
        `${last.drainCpuMs.toFixed(3)} ms CPU/msg draining (${last.cpuMs.toFixed(3)} from start), ` +
        `peak RSS ${last.peakMb.toFixed(0)} MB; nodemailer ${p.at(-1)!.rate.toFixed(0)} msgs/s, ` +
        `${p.at(-1)!.cpuMs.toFixed(3)} ms CPU/msg`,
    );
  }
  const drain = median(d.map((x) => x.drain));
  const base = median(p.map((x) => x.rate));
  const drainCpu = median(d.map((x) => x.drainCpuMs));
  const baseCpu = median(p.map((x) => x.cpuMs));
  console.log(
    `\n${N}-record backlog into smtp-sink, ${CONNECTIONS} connections, median of ${ROUNDS}:\n` +
      `  lead-notifier run          ${drain.toFixed(0)} msgs/s (${median(d.map((x) => x.total)).toFixed(0)} from process start)\n` +
      `  plain pooled nodemailer    ${base.toFixed(0)} msgs/s\n` +
      `  ratio                      ${(drain / base).toFixed(3)} (target >= 0.9) ${drain / base >= 0.9 ? 'OK' : 'BELOW TARGET'}\n` +
      `  CPU per message            daemon ${drainCpu.toFixed(3)} ms draining (${median(d.map((x) => x.cpuMs)).toFixed(3)} ms from start), ` +
      `nodemailer ${baseCpu.toFixed(3)} ms; nodemailer / daemon ${(baseCpu / drainCpu).toFixed(3)}\n` +
      `  peak RSS of the daemon     ${median(d.map((x) => x.peakMb)).toFixed(0)} MB`,
  );
} finally {
  await emu.close();
  await sink.close();
}
