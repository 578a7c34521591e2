// Delivery throughput: the pipeline (SQLite outbox -> dispatcher -> SMTP sink) against plain pooled
// nodemailer sending the same messages to the same loopback server with the same maxConnections.
// Both are measured in this run, alternating order, median of ROUNDS. Target: ratio >= 0.9 into
// Postfix's smtp-sink (a fast real server: it counts messages and stores nothing); the same figures
// into the `smtp-server` package (which tops out near 800 msgs/s here, so both sides wait on it)
// are printed beside them.
// Run: node bench/throughput.ts [N=10000] [ROUNDS=3] [only=pipeline|baseline] [server=all|smtp-sink|smtp-server]
//
// The smtp-server peer runs in a worker thread so its CPU does not share the client's event loop.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMainThread, parentPort, Worker } from 'node:worker_threads';
import nodemailer from 'nodemailer';
import pino from 'pino';
import { SMTPServer } from 'smtp-server';
import { deliverySchema, smtpSchema } from '../src/config/schema.ts';
import { havePostfixSink, startPostfixSink } from './helpers/postfix-sink.ts';
import { Dispatcher } from '../src/delivery/dispatcher.ts';
import { createSmtpSink, toMailOptions } from '../src/sinks/index.ts';
import { openStore } from '../src/store/index.ts';
import type { NewOutboxRow } from '../src/store/index.ts';
import type { RenderedMessage } from '../src/types.ts';

if (!isMainThread) {
  let received = 0;
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    disableReverseLookup: true,
    logger: false,
    onData(stream, _session, cb) {
      stream.on('data', () => undefined);
      stream.on('end', () => {
        received++;
        cb();
      });
    },
  });
  server.listen(0, '127.0.0.1', () => {
    parentPort!.postMessage({ port: (server.server.address() as { port: number }).port });
  });
  parentPort!.on('message', (m: string) => {
    if (m === 'count') parentPort!.postMessage({ received });
    if (m === 'close') server.close(() => process.exit(0));
  });
} else {
  await main();
}

function message(i: number): RenderedMessage {
  const recordId = `00Q${String(i).padStart(15, '0')}`;
  return {
    messageId: `<bench.${recordId}@notifier.test>`,
    from: 'Lead desk <leads@example.com>',
    to: ['owner@example.com', 'sales@example.com'],
    cc: [],
    bcc: [],
    subject: `New lead: Ada Lovelace ${i} (Analytical Engines)`,
    text: `A new lead arrived.\n\nName: Ada Lovelace ${i}\nCompany: Analytical Engines\nSource: Web\n`,
    html: `<p>A new lead arrived.</p><ul><li>Name: Ada Lovelace ${i}</li><li>Company: Analytical Engines</li></ul>`,
    headers: { Importance: 'high', 'X-Priority': '1 (Highest)' },
    attachments: [
      {
        filename: 'lead.json',
        contentType: 'application/json',
        content: JSON.stringify({ Id: recordId, i }),
      },
    ],
  };
}

async function main(): Promise<void> {
  const N = Number(process.argv[2] ?? 10_000);
  const ROUNDS = Number(process.argv[3] ?? 3);
  const only = process.argv[4] && process.argv[4] !== 'all' ? process.argv[4] : undefined;
  const servers = (process.argv[5] ?? 'all') === 'all' ? ['smtp-sink', 'smtp-server'] : [process.argv[5]!];
  const MAX_CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 5);
  const summary: string[] = [];
  for (const server of servers) {
    if (server === 'smtp-sink' && !havePostfixSink()) {
      summary.push(`  ${server}: skipped (/usr/sbin/smtp-sink missing: apt-get install postfix)`);
      continue;
    }
    summary.push(await measureInto(server as 'smtp-sink' | 'smtp-server', N, ROUNDS, only, MAX_CONNECTIONS));
  }
  console.log(`\nN=${N}, maxConnections=${MAX_CONNECTIONS}, median of ${ROUNDS}:\n${summary.join('\n')}`);
}

async function measureInto(
  server: 'smtp-sink' | 'smtp-server',
  N: number,
  ROUNDS: number,
  only: string | undefined,
  MAX_CONNECTIONS: number,
): Promise<string> {
  let port: number;
  let serverCount: () => Promise<number>;
  let closeServer: () => Promise<void>;
  if (server === 'smtp-sink') {
    const sink = await startPostfixSink();
    port = sink.port;
    // smtp-sink prints its counter after the reply to the final "." has gone out: give it a moment
    serverCount = async () => {
      await new Promise((r) => setTimeout(r, 100));
      return sink.received();
    };
    closeServer = () => sink.close();
  } else {
    const worker = new Worker(new URL(import.meta.url));
    port = await new Promise<number>((resolve) =>
      worker.once('message', (m: { port: number }) => resolve(m.port)),
    );
    serverCount = () =>
      new Promise<number>((resolve) => {
        worker.once('message', (m: { received: number }) => resolve(m.received));
        worker.postMessage('count');
      });
    closeServer = async () => {
      worker.postMessage('close');
      await new Promise((r) => worker.once('exit', r));
    };
  }

  const messages = Array.from({ length: N }, (_, i) => message(i));
  // the pipeline logs one line per outcome at info, as in production; here into /dev/null
  const logger = pino({ level: 'info' }, pino.destination({ dest: '/dev/null', sync: false }));

  async function baseline(): Promise<number> {
    const transport = nodemailer.createTransport({
      pool: true,
      host: '127.0.0.1',
      port,
      maxConnections: MAX_CONNECTIONS,
      maxMessages: 100,
    });
    const before = await serverCount();
    const t0 = performance.now();
    await Promise.all(messages.map((m) => transport.sendMail(toMailOptions(m))));
    const seconds = (performance.now() - t0) / 1000;
    transport.close();
    if ((await serverCount()) - before !== N) throw new Error('baseline: server count mismatch');
    return N / seconds;
  }

  async function pipeline(): Promise<number> {
    const dir = mkdtempSync(join(tmpdir(), 'ln-bench-tp-'));
    try {
      const store = await openStore(`sqlite:${join(dir, 'outbox.db')}${syncParam()}`, {
        exclusive: true,
      });
      await store.migrate();
      for (let i = 0; i < N; i += 1000) {
        const rows: NewOutboxRow[] = messages.slice(i, i + 1000).map((m, k) => ({
          rule: 'bench',
          object: 'Lead',
          recordId: `00Q${String(i + k).padStart(15, '0')}`,
          recordCreatedDate: '2026-01-01T00:00:00.000Z',
          state: 'pending',
          message: m,
        }));
        await store.commitBatch('bench', rows, {
          floor: '2026-01-01T00:00:00Z',
          watermark: '2026-01-02T00:00:00Z',
        });
      }
      const smtp = smtpSchema.parse({ host: '127.0.0.1', port, pool: { maxConnections: MAX_CONNECTIONS } });
      // as the daemon chooses (app.ts): nodemailer on a worker thread only with synchronous=full
      const sink = createSmtpSink(smtp, {
        baseDir: dir,
        logger,
        inProcess: process.env.BENCH_SYNCHRONOUS !== 'full',
      });
      let done = 0;
      let resolveAll: () => void = () => {};
      const allDone = new Promise<void>((r) => (resolveAll = r));
      const dispatcher = new Dispatcher({
        store,
        sink,
        delivery: deliverySchema.parse({}),
        concurrency: MAX_CONNECTIONS,
        leaseMs: smtp.sendTimeoutMs + 30_000,
        owner: 'bench',
        logger,
        onEvent: (e) => {
          if (e.type === 'outcome' && ++done === N) resolveAll();
        },
      });
      const before = await serverCount();
      const t0 = performance.now();
      dispatcher.start();
      await allDone;
      // the clock stops when the last outcome is durably written, not when the last send returned
      await dispatcher.stop(30_000);
      const seconds = (performance.now() - t0) / 1000;
      const counts = await store.counts();
      await sink.close();
      await store.close();
      if (counts.total.sent !== N) throw new Error(`pipeline: ${counts.total.sent} of ${N} rows sent`);
      if ((await serverCount()) - before !== N) throw new Error('pipeline: server count mismatch');
      return N / seconds;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  const rates = { baseline: [] as number[], pipeline: [] as number[] };
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? (['baseline', 'pipeline'] as const) : (['pipeline', 'baseline'] as const);
    for (const which of order) {
      if (only && which !== only) continue;
      const rate = which === 'baseline' ? await baseline() : await pipeline();
      rates[which].push(rate);
      console.log(`${server} round ${round + 1} ${which.padEnd(8)} ${rate.toFixed(0)} msgs/s`);
    }
  }
  await closeServer();
  const base = median(rates.baseline);
  const pipe = median(rates.pipeline);
  const ratio = pipe / base;
  const verdict = server === 'smtp-sink' ? (ratio >= 0.9 ? 'OK' : 'BELOW TARGET') : 'reference';
  return (
    `  into ${server}:\n` +
    `    plain pooled nodemailer   ${base.toFixed(0)} msgs/s\n` +
    `    outbox -> dispatcher      ${pipe.toFixed(0)} msgs/s\n` +
    `    ratio                     ${ratio.toFixed(3)} (target >= 0.9) ${verdict}`
  );
}

/** BENCH_SYNCHRONOUS=full|normal: the SQLite store's synchronous option (default: the store's) */
function syncParam(): string {
  const s = process.env.BENCH_SYNCHRONOUS;
  return s ? `?synchronous=${s}` : '';
}

function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
