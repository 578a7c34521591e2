// Delivery throughput: the pipeline (SQLite outbox -> dispatcher -> SMTP sink) against plain pooled
// nodemailer sending the same messages to the same loopback server with the same maxConnections.
// Both are measured in this run, alternating order, best of ROUNDS. Target: ratio >= 0.9.
// Run: node bench/throughput.ts [N=10000] [ROUNDS=2] [only=pipeline|baseline]  (only: for profiling)
//
// The SMTP server runs in a worker thread so its CPU does not share the client's event loop; its
// handler only drains the message (a "fast" server), which makes client overhead as visible as it
// can be.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMainThread, parentPort, Worker } from 'node:worker_threads';
import nodemailer from 'nodemailer';
import pino from 'pino';
import { SMTPServer } from 'smtp-server';
import { deliverySchema, smtpSchema } from '../src/config/schema.ts';
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
  const ROUNDS = Number(process.argv[3] ?? 2);
  const only = process.argv[4];
  const MAX_CONNECTIONS = 5;

  const worker = new Worker(new URL(import.meta.url));
  const port = await new Promise<number>((resolve) =>
    worker.once('message', (m: { port: number }) => resolve(m.port)),
  );
  const serverCount = () =>
    new Promise<number>((resolve) => {
      worker.once('message', (m: { received: number }) => resolve(m.received));
      worker.postMessage('count');
    });

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
      const store = await openStore(`sqlite:${join(dir, 'outbox.db')}`, { exclusive: true });
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
      const sink = createSmtpSink(smtp, { baseDir: dir, logger });
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

  const best = { baseline: 0, pipeline: 0 };
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? (['baseline', 'pipeline'] as const) : (['pipeline', 'baseline'] as const);
    for (const which of order) {
      if (only && which !== only) continue;
      const rate = which === 'baseline' ? await baseline() : await pipeline();
      best[which] = Math.max(best[which], rate);
      console.log(`round ${round + 1} ${which.padEnd(8)} ${rate.toFixed(0)} msgs/s`);
    }
  }
  const ratio = best.pipeline / best.baseline;
  console.log(
    `\nN=${N}, maxConnections=${MAX_CONNECTIONS}, best of ${ROUNDS}:\n` +
      `  plain pooled nodemailer   ${best.baseline.toFixed(0)} msgs/s\n` +
      `  outbox -> dispatcher      ${best.pipeline.toFixed(0)} msgs/s\n` +
      `  ratio                     ${ratio.toFixed(3)} (target >= 0.9) ${ratio >= 0.9 ? 'OK' : 'BELOW TARGET'}`,
  );
  worker.postMessage('close');
  await new Promise((r) => worker.once('exit', r));
}
