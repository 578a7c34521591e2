// Webhook drain rate: N queued rows through the pipeline (SQLite outbox -> dispatcher -> HTTP
// channel, signed) into a local node:http receiver, against plain undici posting the same bodies
// to the same receiver with the same concurrency. Both measured in this run, alternating order,
// median of ROUNDS. Target: ratio >= 0.9.
// Run: node bench/webhook.ts [N=5000] [ROUNDS=3] [CONCURRENCY=8] [DELAY_MS=0]
// DELAY_MS: the receiver answers each request that long after reading it (a real receiver's latency).
//
// The receiver runs in a worker thread so its CPU does not share the client's event loop.
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import pino from 'pino';
import { Agent, request } from 'undici';
import { deliverySchema } from '../src/config/schema.ts';
import { Dispatcher } from '../src/delivery/dispatcher.ts';
import { createHttpChannel } from '../src/sinks/http.ts';
import { openStore } from '../src/store/index.ts';
import type { NewOutboxRow } from '../src/store/index.ts';

if (!isMainThread) {
  let received = 0;
  const delayMs = Number(workerData ?? 0);
  const server = http.createServer((req, res) => {
    req.on('data', () => undefined);
    req.on('end', () => {
      received++;
      const answer = () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"ok":true}');
      };
      if (delayMs > 0) setTimeout(answer, delayMs);
      else answer();
    });
  });
  server.keepAliveTimeout = 30_000;
  server.listen(0, '127.0.0.1', () => {
    parentPort!.postMessage({ port: (server.address() as { port: number }).port });
  });
  parentPort!.on('message', (m: string) => {
    if (m === 'count') parentPort!.postMessage({ received });
    if (m === 'close') server.close(() => process.exit(0));
  });
} else {
  await main();
}

function body(i: number): string {
  const recordId = `00Q${String(i).padStart(15, '0')}`;
  return JSON.stringify({
    Id: recordId,
    FirstName: 'Ada',
    LastName: `Lovelace ${i}`,
    Company: 'Analytical Engines',
    Email: `ada${i}@example.com`,
    LeadSource: 'Web',
    CreatedDate: '2026-01-01T00:00:00.000Z',
  });
}

async function main(): Promise<void> {
  const N = Number(process.argv[2] ?? 5_000);
  const ROUNDS = Number(process.argv[3] ?? 3);
  const CONCURRENCY = Number(process.argv[4] ?? 8);
  const DELAY_MS = Number(process.argv[5] ?? 0);
  const worker = new Worker(new URL(import.meta.url), { workerData: DELAY_MS });
  const port = await new Promise<number>((resolve) =>
    worker.once('message', (m: { port: number }) => resolve(m.port)),
  );
  const count = () =>
    new Promise<number>((resolve) => {
      worker.once('message', (m: { received: number }) => resolve(m.received));
      worker.postMessage('count');
    });
  const url = `http://127.0.0.1:${port}/hook`;
  const bodies = Array.from({ length: N }, (_, i) => body(i));
  const logger = pino({ level: 'info' }, pino.destination({ dest: '/dev/null', sync: false }));

  async function baseline(): Promise<number> {
    const agent = new Agent({ connections: CONCURRENCY, pipelining: 1 });
    const before = await count();
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < N) {
          const i = next++;
          const res = await request(url, {
            method: 'POST',
            dispatcher: agent,
            headers: { 'content-type': 'application/json', 'idempotency-key': `bench.${i}` },
            body: bodies[i],
          });
          await res.body.text();
          if (res.statusCode !== 200) throw new Error(`baseline: ${res.statusCode}`);
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    await agent.close();
    if ((await count()) - before !== N) throw new Error('baseline: receiver count mismatch');
    return N / seconds;
  }

  async function pipeline(): Promise<number> {
    const dir = mkdtempSync(join(tmpdir(), 'ln-bench-hook-'));
    try {
      const store = await openStore(`sqlite:${join(dir, 'outbox.db')}`, { exclusive: true });
      await store.migrate();
      for (let i = 0; i < N; i += 1000) {
        const rows: NewOutboxRow[] = bodies.slice(i, i + 1000).map((b, k) => {
          const recordId = `00Q${String(i + k).padStart(15, '0')}`;
          return {
            rule: 'bench',
            object: 'Lead',
            recordId,
            recordCreatedDate: '2026-01-01T00:00:00.000Z',
            channel: 'webhook',
            state: 'pending',
            message: {
              channel: 'webhook',
              rule: 'bench',
              idempotencyKey: `bench.${recordId}`,
              contentType: 'application/json',
              body: b,
            },
          };
        });
        await store.commitBatch('bench', rows, {
          floor: '2026-01-01T00:00:00Z',
          watermark: '2026-01-02T00:00:00Z',
        });
      }
      const sink = createHttpChannel({
        channel: 'webhook',
        targets: new Map([['bench', { url, headers: {}, secret: 'bench-secret', timeoutMs: 10_000 }]]),
        concurrency: CONCURRENCY,
        userAgent: 'lead-notifier/bench',
      });
      let done = 0;
      let resolveAll: () => void = () => {};
      const allDone = new Promise<void>((r) => (resolveAll = r));
      const dispatcher = new Dispatcher({
        store,
        sink,
        channel: 'webhook',
        delivery: deliverySchema.parse({}),
        concurrency: CONCURRENCY,
        leaseMs: 40_000,
        owner: 'bench',
        logger,
        onEvent: (e) => {
          if (e.type === 'outcome' && ++done === N) resolveAll();
        },
      });
      const before = await count();
      const t0 = performance.now();
      dispatcher.start();
      await allDone;
      // the clock stops when the last outcome is durably written
      await dispatcher.stop(30_000);
      const seconds = (performance.now() - t0) / 1000;
      const counts = await store.counts();
      await sink.close();
      await store.close();
      if (counts.total.sent !== N) throw new Error(`pipeline: ${counts.total.sent} of ${N} rows sent`);
      if ((await count()) - before !== N) throw new Error('pipeline: receiver count mismatch');
      return N / seconds;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  const rates = { baseline: [] as number[], pipeline: [] as number[] };
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? (['baseline', 'pipeline'] as const) : (['pipeline', 'baseline'] as const);
    for (const which of order) {
      const rate = which === 'baseline' ? await baseline() : await pipeline();
      rates[which].push(rate);
      console.log(`round ${round + 1} ${which.padEnd(8)} ${rate.toFixed(0)} requests/s`);
    }
  }
  worker.postMessage('close');
  await new Promise((r) => worker.once('exit', r));
  const base = median(rates.baseline);
  const pipe = median(rates.pipeline);
  const ratio = pipe / base;
  console.log(
    `\nN=${N}, concurrency=${CONCURRENCY}, receiver delay ${DELAY_MS} ms, median of ${ROUNDS}:\n` +
      `  plain undici (same bodies, same connections)   ${base.toFixed(0)} requests/s\n` +
      `  outbox -> dispatcher -> HTTP channel (signed)  ${pipe.toFixed(0)} requests/s\n` +
      `  ratio                                          ${ratio.toFixed(3)} (target >= 0.9) ${ratio >= 0.9 ? 'OK' : 'BELOW TARGET'}`,
  );
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
