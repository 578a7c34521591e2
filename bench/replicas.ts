// Backlog drain rate with 1, 2 and 3 `lead-notifier run` replicas sharing one PostgreSQL store,
// into Postfix's smtp-sink (a fast SMTP server that accepts and discards). One run measures all
// three, so the table's ratios are against the single replica of the same run, same machine.
// Run: node bench/replicas.ts [N=3000]   (needs TEST_DATABASE_URL or DATABASE_URL, and smtp-sink)
//
// The replicas start idle; the backlog is then committed in one transaction, and the clock runs
// until every row is `sent`. Dispatch is shared (FOR UPDATE SKIP LOCKED), so the rate should grow
// with replicas until the CPU or the SMTP server is the limit (this machine's core count shows).
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { stringify } from 'yaml';
import { startEmulator } from '../src/emulator/index.ts';
import { openStore } from '../src/store/index.ts';
import type { NewOutboxRow } from '../src/store/index.ts';

const N = Number(process.argv[2] ?? 3000);
const DB = process.env.TEST_DATABASE_URL ?? process.env.DATABASE_URL;
if (!DB)
  throw new Error('set TEST_DATABASE_URL (or DATABASE_URL) to a PostgreSQL the bench may create schemas in');
const CLI = fileURLToPath(new URL('../bin/lead-notifier.js', import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

function row(i: number): NewOutboxRow {
  const recordId = `00Q${String(i).padStart(15, '0')}`;
  return {
    rule: 'bench',
    object: 'Lead',
    recordId,
    recordCreatedDate: new Date().toISOString(),
    state: 'pending',
    message: {
      messageId: `<bench.${recordId}@notifier.test>`,
      from: 'Lead desk <leads@example.com>',
      to: ['owner@example.com', 'sales@example.com'],
      cc: [],
      bcc: [],
      subject: `New lead: Ada Lovelace ${i} (Analytical Engines)`,
      text: `A new lead arrived.\n\nName: Ada Lovelace ${i}\nCompany: Analytical Engines\n`,
      html: `<p>A new lead arrived.</p><ul><li>Name: Ada Lovelace ${i}</li></ul>`,
      headers: {},
      attachments: [],
    },
  };
}

function withSchema(url: string, schema: string): string {
  const u = new URL(url);
  u.searchParams.set('schema', schema);
  return u.toString();
}

async function drain(replicas: number, smtpPort: number, emulatorUrl: string): Promise<number> {
  const schema = `bench_replicas_${process.pid}_${replicas}`;
  const store = withSchema(DB!, schema);
  const dir = mkdtempSync(join(tmpdir(), 'ln-bench-rep-'));
  const configPath = join(dir, 'notifier.yaml');
  writeFileSync(
    configPath,
    stringify({
      salesforce: {
        loginUrl: emulatorUrl,
        auth: { flow: 'client_credentials', clientId: 'emulator-client', clientSecret: 'emulator-secret' },
      },
      smtp: { host: '127.0.0.1', port: smtpPort, ignoreTLS: true, pool: { maxConnections: 5 } },
      store,
      http: { enabled: false },
      log: { level: 'warn' },
      rules: [
        {
          name: 'bench',
          object: 'Lead',
          schedule: '*/30 * * * * *',
          email: { from: 'leads@example.com', to: 'sales@example.com', subject: 'x', text: 'x' },
        },
      ],
    }),
  );
  const procs: ChildProcess[] = [];
  const db = await openStore(store);
  try {
    for (let i = 0; i < replicas; i++) {
      const p = spawn(process.execPath, [CLI, 'run', '-c', configPath], {
        stdio: ['ignore', 'ignore', 'inherit'],
        env: {
          ...process.env,
          LOG_FORMAT: 'json',
          http_proxy: '',
          https_proxy: '',
          HTTP_PROXY: '',
          HTTPS_PROXY: '',
        },
      });
      procs.push(p);
    }
    // every replica up: it heartbeats into the store
    for (;;) {
      const alive = (await db.listReplicas()).filter((r) => Date.parse(r.expiresAt) > Date.now());
      if (alive.length >= replicas) break;
      await sleep(100);
    }
    await sleep(1500); // let the first polls and lease rounds settle
    const rows = Array.from({ length: N }, (_, i) => row(i));
    const started = performance.now();
    await db.commitBatch('bench', rows, {
      floor: new Date(0).toISOString(),
      watermark: new Date(0).toISOString(),
    });
    for (;;) {
      const t = (await db.counts()).total;
      if (t.sent + t.dead + t.unknown >= N) {
        if (t.dead + t.unknown > 0) throw new Error(`${t.dead} dead, ${t.unknown} unknown rows`);
        break;
      }
      await sleep(50);
    }
    return N / ((performance.now() - started) / 1000);
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await Promise.all(
      procs.map((p) => new Promise((r) => (p.exitCode !== null ? r(null) : p.on('exit', r)))),
    );
    await db.close();
    const c = new pg.Client({ connectionString: DB });
    await c.connect();
    await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await c.end();
    rmSync(dir, { recursive: true, force: true });
  }
}

const smtpPort = await freePort();
// -u nobody: smtp-sink drops root privileges; backlog 256 connections
const sink = spawn('smtp-sink', ['-u', 'nobody', `127.0.0.1:${smtpPort}`, '256'], { stdio: 'ignore' });
await sleep(300);
const emulator = await startEmulator({ port: 0 });
try {
  const rates: number[] = [];
  for (const n of [1, 2, 3]) rates.push(await drain(n, smtpPort, emulator.url));
  console.log(`backlog of ${N} rows into smtp-sink, PostgreSQL store, ${cpus().length} CPUs`);
  console.log('| replicas | messages/s | ratio to 1 replica |');
  console.log('| -------: | ---------: | -----------------: |');
  rates.forEach((r, i) => console.log(`| ${i + 1} | ${r.toFixed(0)} | ${(r / rates[0]!).toFixed(2)} |`));
} finally {
  await emulator.close();
  sink.kill('SIGTERM');
}
