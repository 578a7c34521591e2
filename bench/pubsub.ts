// Stream mode over the Pub/Sub API on loopback, two figures, each against a baseline measured in
// this run:
// 1. latency from a Lead's insert in the emulator to the SMTP server accepting its email, through
//    the whole App (Pub/Sub stream -> enrichment query -> outbox -> dispatcher -> SMTP), against the
//    same App polling every second (mode: poll). Target: p99 under 300 ms.
// 2. change events decoded per second by the client's SchemaCache (Avro + header bitmaps to names),
//    against bare avsc decoding of the same payloads; and events/s received end to end through a
//    PubSubStreamer (gRPC, credits granted back after each "commit", pooled). Target: >= 5,000/s.
// Latency is measured at a modest arrival rate (a lead every 100 ms) after a warm-up; throughput
// is the separate events/s figure.
// Run: node bench/pubsub.ts [LEADS=100] [EVENTS=20000]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { SMTPServer } from 'smtp-server';
import { stringify } from 'yaml';
import { App } from '../src/app/app.ts';
import { Enqueuer } from '../src/app/enqueue.ts';
import { parseConfigText } from '../src/config/index.ts';
import { ruleSchema } from '../src/config/schema.ts';
import { startEmulator } from '../src/emulator/index.ts';
import type { Emulator } from '../src/emulator/index.ts';
import { buildObjectSchema, encodeChange } from '../src/emulator/pubsub/schemas.ts';
import { replayIdBytes } from '../src/emulator/pubsub/server.ts';
import { connectSalesforce, createConnection } from '../src/sources/salesforce/connection.ts';
import { RulePoller } from '../src/sources/salesforce/poller.ts';
import { compileSchema, SchemaCache } from '../src/sources/salesforce/pubsub/avro.ts';
import { PubSubStreamer } from '../src/sources/salesforce/pubsub/streamer.ts';
import { openStore } from '../src/store/index.ts';
import { compileRule } from '../src/templates/index.ts';

for (const k of ['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY']) delete process.env[k];

const LEADS = Number(process.argv[2] ?? 100);
const EVENTS = Number(process.argv[3] ?? 20_000);
const WARMUP = 10;
const silent = pino({ level: 'silent' });

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function smtpServer(
  onSubject: (id: string) => void,
): Promise<{ port: number; close(): Promise<void> }> {
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    disableReverseLookup: true,
    logger: false,
    onData(stream, _s, cb) {
      let head = '';
      stream.on('data', (c: Buffer) => {
        if (head.length < 8192) head += c.toString('latin1');
      });
      stream.on('end', () => {
        const m = /^Subject: lead (\w{18})/m.exec(head);
        if (m) onSubject(m[1]!);
        cb();
      });
    },
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.server.address() as { port: number }).port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** insert -> SMTP accepted, ms, for LEADS leads one every 100 ms, with the rule in `mode`. */
async function latency(mode: 'stream' | 'poll'): Promise<number[]> {
  const emu = await startEmulator({ port: 0 });
  const dir = mkdtempSync(join(tmpdir(), `ln-bench-pubsub-${mode}-`));
  const inserted = new Map<string, number>();
  const took: number[] = [];
  const smtp = await smtpServer((id) => {
    const t = inserted.get(id);
    if (t !== undefined) took.push(performance.now() - t);
  });
  const cfg = {
    salesforce: {
      loginUrl: emu.url,
      auth: { flow: 'client_credentials', clientId: 'emulator-client', clientSecret: 'emulator-secret' },
      streaming: { api: 'pubsub', endpoint: emu.pubsub.endpoint, tls: false },
    },
    smtp: { host: '127.0.0.1', port: smtp.port, ignoreTLS: true, pool: { maxConnections: 3 } },
    store: `sqlite:${join(dir, 'n.db')}`,
    http: { enabled: false },
    rules: [
      {
        name: 'bench',
        object: 'Lead',
        mode,
        // stream: polls are the hourly safety net only; poll: every second, the fastest cron allows
        schedule: mode === 'stream' ? '0 0 * * * *' : '* * * * * *',
        startFrom: 'now',
        select: ['LastName', 'Company'],
        email: {
          from: 'desk@example.com',
          to: 'sales@example.com',
          subject: 'lead {{Id}}',
          text: '{{Company}}',
        },
      },
    ],
  };
  const app = new App(parseConfigText(stringify(cfg), join(dir, 'notifier.yaml')), { logger: silent });
  try {
    await app.start();
    if (mode === 'stream') await waitOpen(emu);
    else await new Promise((r) => setTimeout(r, 1500));
    // warm-up, not measured: schema fetch, first queries, SMTP pool connections, JIT
    for (let i = 0; i < WARMUP; i++) emu.org.insert('Lead', { LastName: `W${i}`, Company: 'warm-up' });
    await new Promise((r) => setTimeout(r, mode === 'stream' ? 500 : 2500));
    for (let i = 0; i < LEADS; i++) {
      const id = emu.org.insert('Lead', { LastName: `L${i}`, Company: `C${i}` }).Id;
      inserted.set(id, performance.now());
      await new Promise((r) => setTimeout(r, 100));
    }
    const deadline = Date.now() + 30_000;
    while (took.length < LEADS && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (took.length < LEADS) throw new Error(`${mode}: only ${took.length} of ${LEADS} emails arrived`);
    return took.sort((a, b) => a - b);
  } finally {
    await app.stop(2000);
    await smtp.close();
    await emu.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function waitOpen(emu: Emulator): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!emu.pubsub.subscriptions().some((s) => s.open)) {
    if (Date.now() > deadline) throw new Error('no Pub/Sub subscription');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** decode EVENTS payloads (half CREATE, half UPDATE) with our SchemaCache and with bare avsc. */
async function decodeRates(): Promise<{ ours: number; bare: number }> {
  const emu = await startEmulator({ port: 0 });
  try {
    const schema = buildObjectSchema(emu.org, 'Lead')!;
    const records = emu.org.insertMany(
      'Lead',
      Array.from({ length: EVENTS / 2 }, (_, i) => ({
        FirstName: `F${i}`,
        LastName: `L${i}`,
        Company: `C${i}`,
        Status: 'Open',
      })),
    );
    const payloads: Buffer[] = [];
    for (const r of records) {
      payloads.push(encodeChange(emu.org, schema, r, 'CREATE', [], Date.now()).payload);
      payloads.push(encodeChange(emu.org, schema, r, 'UPDATE', ['Status', 'FirstName'], Date.now()).payload);
    }
    const cache = new SchemaCache(async () => schema.schemaJson);
    const bareType = compileSchema(schema.schemaJson).type;
    const replay = replayIdBytes(1);
    let best = { ours: 0, bare: 0 };
    for (let round = 0; round < 3; round++) {
      let t = performance.now();
      for (const p of payloads) await cache.decode(schema.schemaId, p, replay);
      const ours = payloads.length / ((performance.now() - t) / 1000);
      t = performance.now();
      for (const p of payloads) bareType.fromBuffer(p);
      const bare = payloads.length / ((performance.now() - t) / 1000);
      best = { ours: Math.max(best.ours, ours), bare: Math.max(best.bare, bare) };
    }
    return best;
  } finally {
    await emu.close();
  }
}

/** events/s through a PubSubStreamer over gRPC: EVENTS retained events, replayed from EARLIEST-like start. */
async function streamedRate(): Promise<number> {
  const emu = await startEmulator({ port: 0 });
  const dir = mkdtempSync(join(tmpdir(), 'ln-bench-pubsub-rate-'));
  const store = await openStore(`sqlite:${join(dir, 'n.db')}`, { exclusive: true });
  let streamer: PubSubStreamer | undefined;
  try {
    await store.migrate();
    const sf = {
      loginUrl: emu.url,
      apiVersion: '62.0',
      requestTimeoutMs: 60_000,
      auth: {
        flow: 'client_credentials' as const,
        clientId: 'emulator-client',
        clientSecret: 'emulator-secret',
      },
    };
    const conn = createConnection(sf, dir);
    await connectSalesforce(conn, sf, dir);
    const rule = ruleSchema.parse({
      name: 'bench',
      mode: 'stream',
      startFrom: '2020-01-01T00:00:00Z',
      email: { from: 'desk@example.com', to: 'sales@example.com', subject: 'x', text: 'y' },
    });
    const enqueuer = new Enqueuer({ rule, compiled: compileRule(rule, dir), store, logger: silent });
    const poller = new RulePoller({
      rule,
      conn,
      store,
      commit: enqueuer.commit,
      apiVersion: '62.0',
      logger: silent,
    });
    let received = 0;
    streamer = new PubSubStreamer({
      poller,
      conn,
      logger: silent,
      endpoint: emu.pubsub.endpoint,
      tls: false,
      reconcile: async () => undefined,
      reauthenticate: async () => undefined,
      // counts and "commits" at once: this measures transport + decode + the credit round trips
      deliver: async (changes) => {
        received += changes.length;
      },
    });
    await streamer.start();
    await waitOpen(emu);
    // the org publishes EVENTS at once; the clock starts once they are all on the bus
    emu.org.insertMany(
      'Lead',
      Array.from({ length: EVENTS }, (_, i) => ({ LastName: `L${i}`, Company: `C${i}` })),
    );
    const before = received;
    const t = performance.now();
    const deadline = Date.now() + 120_000;
    while (received < EVENTS && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    return (received - before) / ((performance.now() - t) / 1000);
  } finally {
    await streamer?.stop();
    await store.close();
    await emu.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const stream = await latency('stream');
const poll = await latency('poll');
const fmt = (n: number) => `${n.toFixed(1)} ms`;
console.log(`latency insert -> SMTP accepted, ${LEADS} leads, one every 100 ms`);
for (const [name, xs] of [
  ['pubsub stream', stream],
  ['poll every 1 s (baseline)', poll],
] as const) {
  console.log(
    `  ${name.padEnd(26)} p50 ${fmt(percentile(xs, 50))}  p99 ${fmt(percentile(xs, 99))}  max ${fmt(xs.at(-1)!)}`,
  );
}
const p99 = percentile(stream, 99);
console.log(
  `  p99 ratio stream/poll: ${(p99 / percentile(poll, 99)).toFixed(3)}; target p99 < 300 ms: ${p99 < 300 ? 'met' : 'NOT met'}`,
);

const rates = await decodeRates();
console.log(`decode ${EVENTS} change events (half CREATE, half UPDATE with bitmaps), best of 3`);
console.log(`  SchemaCache.decode          ${Math.round(rates.ours)} events/s`);
console.log(`  bare avsc fromBuffer        ${Math.round(rates.bare)} events/s (baseline)`);
console.log(
  `  ratio ours/bare: ${(rates.ours / rates.bare).toFixed(3)}; target >= 5,000/s: ${rates.ours >= 5000 ? 'met' : 'NOT met'}`,
);
const streamed = await streamedRate();
console.log(
  `  through gRPC + decode + credits (PubSubStreamer): ${Math.round(streamed)} events/s; target >= 5,000/s: ${streamed >= 5000 ? 'met' : 'NOT met'}`,
);
process.exit(0);
