// Wide records under the daemon's own heap cap (util/heap.ts: 48 MB old space): `lead-notifier run`
// as a user starts it, against the org emulator, with Leads whose template uses a long Description.
//   updated: N Leads changed after the floor of an `on: updated` rule (their first sight: read,
//            judged, nothing sent); done when the poll lines have read all N
//   digest:  N Leads collected by a digest rule; done when the digest has reached smtp-sink
// Prints whether the daemon lived, how long it took and its peak RSS (VmHWM); exits 1 if it died.
// Run: node bench/wide-records.ts updated|digest [N] [WIDTH]   (updated 10000 16000, digest 500 32000)
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { startEmulator } from '../src/emulator/index.ts';
import { startPostfixSink } from './helpers/postfix-sink.ts';

for (const k of ['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY']) delete process.env[k];
const MODE = process.argv[2] === 'digest' ? 'digest' : 'updated';
const N = Number(process.argv[3] ?? (MODE === 'digest' ? 500 : 10_000));
const WIDTH = Number(process.argv[4] ?? (MODE === 'digest' ? 32_000 : 16_000));
const CLI = process.env.BENCH_CLI ?? new URL('../bin/lead-notifier.js', import.meta.url).pathname;

const sink = await startPostfixSink();
const emu = await startEmulator({ port: 0 });
const dir = mkdtempSync(join(tmpdir(), 'ln-bench-wide-'));
try {
  const ids = emu.control.insert(
    'Lead',
    Array.from({ length: N }, (_, i) => ({
      LastName: `W${i}`,
      Company: 'C',
      Description: `${i} `.padEnd(WIDTH, 'lorem ipsum '),
    })),
    { createdDate: MODE === 'digest' ? '2026-06-01T00:00:00Z' : '2025-06-01T00:00:00Z' },
  );
  if (MODE === 'updated') {
    // a bulk update after the rule's floor, 100 records a second
    for (let s = 0; s < N; s += 100) {
      emu.control.update(
        'Lead',
        ids.slice(s, s + 100).map((Id) => ({ Id, Rating: 'Cold' })),
        { systemModstamp: new Date(Date.parse('2026-06-01T00:00:00Z') + s * 10).toISOString() },
      );
    }
  }
  const template = {
    from: 'desk@example.com',
    to: 'sales@example.com',
    subject: MODE === 'digest' ? '{{count}} leads' : '{{LastName}}',
    text:
      MODE === 'digest'
        ? '{{#each records}}{{LastName}} {{Description}}\n{{/each}}'
        : '{{LastName}} {{Description}}',
    ...(MODE === 'digest'
      ? { html: '<ul>{{#each records}}<li>{{LastName}} {{Description}}</li>{{/each}}</ul>' }
      : {}),
  };
  const rule =
    MODE === 'digest'
      ? { name: 'wide', digest: { schedule: '*/10 * * * * *', maxRecords: 500 } }
      : { name: 'wide', on: 'updated', where: "Status = 'Working - Contacted'" };
  writeFileSync(
    join(dir, 'n.yaml'),
    stringify({
      salesforce: {
        loginUrl: emu.url,
        auth: { flow: 'client_credentials', clientId: 'emulator-client', clientSecret: 'emulator-secret' },
      },
      smtp: { host: '127.0.0.1', port: sink.port, ignoreTLS: true },
      store: `sqlite:${join(dir, 'n.db')}`,
      http: { enabled: false },
      rules: [
        {
          ...rule,
          schedule: '*/2 * * * * *',
          startFrom: '2026-01-01T00:00:00Z',
          select: ['LastName', 'Status', 'Description'],
          email: template,
        },
      ],
    }),
  );
  const log = join(dir, 'out.log');
  const t0 = performance.now();
  const child = spawn(process.execPath, [CLI, 'run', '-c', join(dir, 'n.yaml')], {
    env: { ...process.env, LOG_FORMAT: 'json' },
    stdio: ['ignore', openSync(log, 'w'), openSync(join(dir, 'err.log'), 'w')],
  });
  let exit: string | null = null;
  child.on('exit', (code, signal) => (exit = String(signal ?? code)));
  let peak = 0;
  let done = '';
  while (performance.now() - t0 < 120_000 && exit === null && !done) {
    await new Promise((r) => setTimeout(r, 200));
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      if (m) peak = Math.max(peak, Number(m[1]) / 1024);
    } catch {
      // exited between the checks
    }
    const lines = readFileSync(log, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        try {
          return JSON.parse(l) as Record<string, unknown>;
        } catch {
          return {};
        }
      });
    if (MODE === 'updated') {
      const read = lines.reduce((a, l) => a + (typeof l.read === 'number' ? l.read : 0), 0);
      if (read >= N) done = `read ${read} changed records`;
    } else if (sink.received() > 0) {
      const d = lines.find((l) => l.component === 'digest' && typeof l.count === 'number');
      done = `digest of ${String(d?.count)} records sent`;
    }
  }
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  child.kill('SIGKILL');
  console.log(`${MODE}: ${N} Leads with a ${WIDTH}-character Description, lead-notifier run (no flags)`);
  if (done) console.log(`  ${done} in ${secs} s, peak RSS ${peak.toFixed(0)} MB`);
  else {
    console.log(
      `  FAILED after ${secs} s (daemon exit: ${exit ?? 'still running'}), peak RSS ${peak.toFixed(0)} MB`,
    );
    console.log(readFileSync(join(dir, 'err.log'), 'utf8').split('\n').slice(0, 8).join('\n'));
    process.exitCode = 1;
  }
} finally {
  await emu.close();
  await sink.close();
  rmSync(dir, { recursive: true, force: true });
}
