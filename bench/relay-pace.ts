// Pace against a rate-limited relay: the dispatcher (SQLite outbox, SMTP sink on its worker thread)
// drains a backlog into a loopback server that answers `421 4.7.0 Rate limit exceeded` past LIMIT
// messages in any WINDOW (a sliding window, as Exchange Online counts). Two runs in this process:
// without smtp.rateLimit (throttling replies alone set the pace) and with rateLimit set to the
// relay's limit. Prints delivered, dead, throttled replies, the drain time and the pace as a ratio
// of the relay's limit (the baseline: what the relay allows at most).
// Run: node bench/relay-pace.ts [ROWS=120] [LIMIT=30] [WINDOW=20s] [MAX_ATTEMPTS=3]
// The measurement is the default: 120 Leads, 30 messages in 20 s, maxAttempts 3.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { SMTPServer } from 'smtp-server';
import { deliverySchema, sendLimits, smtpSchema } from '../src/config/index.ts';
import { Dispatcher } from '../src/delivery/dispatcher.ts';
import { Pacer } from '../src/delivery/pacer.ts';
import { createSmtpSink } from '../src/sinks/index.ts';
import { openStore } from '../src/store/index.ts';
import type { NewOutboxRow } from '../src/store/index.ts';
import { parseDuration } from '../src/util/duration.ts';

const ROWS = Number(process.argv[2] ?? 120);
const LIMIT = Number(process.argv[3] ?? 30);
const WINDOW = process.argv[4] ?? '20s';
const MAX_ATTEMPTS = Number(process.argv[5] ?? 3);
const windowMs = parseDuration(WINDOW);

async function relay() {
  const accepted: number[] = [];
  const deliveredAt: number[] = [];
  let throttled = 0;
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    disableReverseLookup: true,
    logger: false,
    onMailFrom(_a, _s, cb) {
      const now = Date.now();
      while (accepted.length && accepted[0]! <= now - windowMs) accepted.shift();
      if (accepted.length >= LIMIT) {
        throttled++;
        return cb(Object.assign(new Error('4.7.0 Rate limit exceeded'), { responseCode: 421 }));
      }
      accepted.push(now);
      cb();
    },
    onData(stream, _s, cb) {
      stream.resume();
      stream.on('end', () => {
        deliveredAt.push(Date.now());
        cb();
      });
    },
  });
  server.on('error', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.server.address() as { port: number }).port,
    deliveredAt,
    throttled: () => throttled,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

async function run(label: string, rateLimit: { messages: number; per: string } | undefined) {
  const r = await relay();
  const dir = mkdtempSync(join(tmpdir(), 'relay-pace-'));
  const store = await openStore(`sqlite:${join(dir, 'outbox.db')}`);
  const smtp = smtpSchema.parse({ host: '127.0.0.1', port: r.port, ...(rateLimit ? { rateLimit } : {}) });
  const sink = createSmtpSink(smtp, { baseDir: dir });
  const logger = pino({ level: 'silent' });
  const dispatcher = new Dispatcher({
    store,
    sink,
    delivery: deliverySchema.parse({ maxAttempts: MAX_ATTEMPTS }),
    concurrency: smtp.pool.maxConnections,
    leaseMs: 90_000,
    owner: 'bench',
    logger,
    pacer: new Pacer({ limits: sendLimits(smtp), store, logger }),
  });
  const rows: NewOutboxRow[] = Array.from({ length: ROWS }, (_, i) => {
    const recordId = `00Q${String(i).padStart(15, '0')}`;
    return {
      rule: 'bench',
      object: 'Lead',
      recordId,
      recordCreatedDate: new Date().toISOString(),
      state: 'pending',
      message: {
        messageId: `<bench.${recordId}@bench.test>`,
        from: 'leads@example.com',
        to: ['sales@example.com'],
        cc: [],
        bcc: [],
        subject: `Lead ${i}`,
        text: 'x',
        headers: {},
        attachments: [],
      },
    };
  });
  await store.commitBatch('bench', rows, {
    floor: new Date(0).toISOString(),
    watermark: new Date().toISOString(),
  });
  await sink.verify();
  const started = Date.now();
  dispatcher.start();
  for (;;) {
    const t = (await store.counts()).total;
    if (t.sent + t.dead + t.unknown >= ROWS) break;
    await new Promise((res) => setTimeout(res, 200));
  }
  const seconds = (Date.now() - started) / 1000;
  const t = (await store.counts()).total;
  await dispatcher.stop(5000);
  await sink.close();
  await store.close();
  await r.close();
  rmSync(dir, { recursive: true, force: true });
  // the relay's ceiling for this backlog: LIMIT at once, then LIMIT per window
  const floorSeconds = Math.max(0, (ROWS - LIMIT) / LIMIT) * (windowMs / 1000);
  const steady =
    r.deliveredAt.length > LIMIT
      ? (r.deliveredAt.length - 1 - LIMIT) / ((r.deliveredAt.at(-1)! - r.deliveredAt[LIMIT]!) / 1000)
      : NaN;
  const limitPerSecond = LIMIT / (windowMs / 1000);
  console.log(
    `${label}: ${t.sent} delivered, ${t.dead} dead, ${t.unknown} unknown, ${r.throttled()} throttled replies, ` +
      `drained in ${seconds.toFixed(1)} s (relay floor ${floorSeconds.toFixed(1)} s, ratio ${(floorSeconds / seconds).toFixed(2)}); ` +
      `pace after the first ${LIMIT}: ${steady.toFixed(3)}/s = ${(steady / limitPerSecond).toFixed(2)} x the relay limit`,
  );
}

console.log(`relay: ${LIMIT} messages per ${WINDOW} (sliding), backlog ${ROWS}, maxAttempts ${MAX_ATTEMPTS}`);
await run('without rateLimit', undefined);
await run(`rateLimit { messages: ${LIMIT}, per: ${WINDOW} }`, { messages: LIMIT, per: WINDOW });
