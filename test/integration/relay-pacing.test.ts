// Pacing against a relay that enforces a rate limit the way Exchange Online and Gmail do: past N
// messages in a sliding window it answers MAIL FROM with `421 4.7.0 Rate limit exceeded`. Real
// smtp-server on loopback, real nodemailer (worker thread), real SQLite file / PostgreSQL store.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { deliverySchema, sendLimits, smtpSchema } from '../../src/config/index.ts';
import { Dispatcher, type DispatchEvent } from '../../src/delivery/dispatcher.ts';
import { Pacer } from '../../src/delivery/pacer.ts';
import { createSmtpSink } from '../../src/sinks/index.ts';
import { openStore } from '../../src/store/index.ts';
import type { NewOutboxRow, Store } from '../../src/store/index.ts';
import { dropSchemas, randomSchema, withSchema } from '../helpers/postgres.ts';
import { smtpError, startCaptureServer, type CaptureServer } from '../helpers/smtp-server.ts';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const silent = pino({ level: 'silent' });

async function waitUntil(
  what: string,
  fn: () => Promise<boolean>,
  timeoutMs: number,
  state?: () => Promise<string>,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > until)
      throw new Error(`timed out waiting for ${what}${state ? ` (${await state()})` : ''}`);
    await sleep(20);
  }
}

/**
 * How long a paced drain of 25 may take. Unthrottled it takes about 5 s. The relay's window is
 * time-scaled 1:20 but a new connection's set-up is not: under CI load the first MAIL FROM on a
 * fresh pooled connection can come more than the 5% margin (158 ms of a 3 s window) after its
 * send was paced, and the relay then throttles one send a window later. That is the case the
 * pacer handles (the row goes back without an attempt, sending pauses 1 s, doubling while it
 * continues, at half pace, recovering): every assertion below still holds, it only takes longer.
 */
const PACED_DRAIN_MS = 25_000;
const PACED_TEST = { timeout: PACED_DRAIN_MS + 15_000 };

/** A relay that takes `limit` messages per sliding `windowMs` and throttles the rest at MAIL FROM. */
async function limitedRelay(limit: number, windowMs: number) {
  const accepted: number[] = [];
  let throttled = 0;
  const server: CaptureServer = await startCaptureServer({
    onMail: () => {
      const now = Date.now();
      while (accepted.length && accepted[0]! <= now - windowMs) accepted.shift();
      if (accepted.length >= limit) {
        throttled++;
        throw smtpError(421, '4.7.0 Rate limit exceeded');
      }
      accepted.push(now);
    },
  });
  cleanups.push(() => server.close());
  return { server, throttled: () => throttled };
}

function rows(n: number, from = 0): NewOutboxRow[] {
  return Array.from({ length: n }, (_, k) => {
    const recordId = `00Q${String(from + k).padStart(15, '0')}`;
    return {
      rule: 'new-leads',
      object: 'Lead',
      recordId,
      recordCreatedDate: '2026-01-01T00:00:00.000Z',
      state: 'pending' as const,
      message: {
        messageId: `<new-leads.${recordId}@notifier.test>`,
        from: 'leads@example.com',
        to: ['owner@example.com'],
        cc: [],
        bcc: [],
        subject: `Lead ${from + k}`,
        text: 'x',
        headers: {},
        attachments: [],
      },
    };
  });
}

async function sqliteStore(): Promise<Store> {
  const dir = mkdtempSync(join(tmpdir(), 'pacing-'));
  const store = await openStore(`sqlite:${join(dir, 'outbox.db')}`);
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  cleanups.push(() => store.close());
  return store;
}

function dispatcher(
  store: Store,
  server: CaptureServer,
  smtp: Record<string, unknown>,
  events: DispatchEvent[],
) {
  const cfg = smtpSchema.parse({ host: server.host, port: server.port, ...smtp });
  const sink = createSmtpSink(cfg, { baseDir: process.cwd() });
  cleanups.push(() => sink.close());
  const pacer = new Pacer({ limits: sendLimits(cfg), store, logger: silent });
  const d = new Dispatcher({
    store,
    sink,
    // the issue's setting: with 3 attempts, treating throttling as failure dead-letters most rows
    delivery: deliverySchema.parse({ maxAttempts: 3, backoffBaseMs: 20, backoffMaxMs: 60 }),
    concurrency: cfg.pool.maxConnections,
    leaseMs: 30_000,
    owner: `test-${Math.random().toString(36).slice(2)}`,
    logger: silent,
    onEvent: (e) => events.push(e),
    pollIntervalMs: 50,
    pacer,
  });
  cleanups.push(() => d.stop(2000));
  // as App.start() does: the worker thread is up and the relay reached before the first send, so
  // the first sends are not bunched behind the thread's start-up
  const start = async () => {
    await sink.verify();
    d.start();
  };
  return { d, pacer, start };
}

async function enqueue(store: Store, list: NewOutboxRow[]): Promise<void> {
  await store.commitBatch('new-leads', list, {
    floor: '2026-01-01T00:00:00.000Z',
    watermark: new Date().toISOString(),
  });
}

/** messages per second between the first and the last accepted message */
function pace(server: CaptureServer, times: number[]): number {
  expect(times.length).toBe(server.messages.length);
  const span = (times.at(-1)! - times[0]!) / 1000;
  return (times.length - 1) / span;
}

function acceptTimes(server: CaptureServer): number[] {
  const times: number[] = [];
  server.setHandler('onData', () => void times.push(Date.now()));
  return times;
}

describe('pacing to a rate-limited relay', () => {
  it(
    'with rateLimit set to the relay limit: drains with zero dead rows, never faster than the limit',
    PACED_TEST,
    async () => {
      // 30 messages a minute, as Exchange Online, time-scaled 1:20 (15 in 3 s) to keep the test short
      const relay = await limitedRelay(15, 3000);
      const times = acceptTimes(relay.server);
      const store = await sqliteStore();
      const events: DispatchEvent[] = [];
      const { start, pacer } = dispatcher(
        store,
        relay.server,
        { rateLimit: { messages: 15, per: '3s' } },
        events,
      );
      await enqueue(store, rows(25));
      await start();
      await waitUntil(
        'drained',
        async () => (await store.counts()).total.sent === 25,
        PACED_DRAIN_MS,
        async () =>
          `${JSON.stringify((await store.counts()).total)}, ${relay.throttled()} throttled replies, pacer ${JSON.stringify(pacer.snapshot())}`,
      );
      const counts = (await store.counts()).total;
      expect(counts).toMatchObject({ sent: 25, dead: 0, failed: 0, pending: 0 });
      expect(new Set(relay.server.messages.map((m) => m.messageId)).size).toBe(25);
      const p = pace(relay.server, times);
      console.log(
        `paced drain: ${p.toFixed(2)} msg/s against a limit of 5/s, ${relay.throttled()} throttled replies`,
      );
      // never above the relay's limit; how near it gets is bench/relay-pace.ts's figure (timing
      // targets do not belong in tests on a shared machine)
      expect(p).toBeLessThanOrEqual(5.1);
      // no attempt was spent on throttling: every row went out on its first counted attempt
      for (const row of await store.list({ limit: 100 })) expect(row.attempts).toBe(1);
    },
  );

  it('without rateLimit (the issue): throttling replies keep rows pending and slow down; zero dead', async () => {
    const relay = await limitedRelay(10, 1000);
    const store = await sqliteStore();
    const events: DispatchEvent[] = [];
    const { d, pacer } = dispatcher(store, relay.server, {}, events);
    await enqueue(store, rows(30));
    d.start();
    await waitUntil('drained', async () => (await store.counts()).total.sent === 30, 20_000);
    const counts = (await store.counts()).total;
    expect(counts).toMatchObject({ sent: 30, dead: 0, failed: 0 });
    expect(relay.throttled()).toBeGreaterThan(0);
    const throttledEvents = events.filter((e) => e.type === 'outcome' && e.failure === 'throttle');
    expect(throttledEvents.length).toBe(relay.throttled());
    expect(throttledEvents.every((e) => e.type === 'outcome' && e.outcome === 'release')).toBe(true);
    expect(pacer.snapshot().throttled).toBe(relay.throttled());
    for (const row of await store.list({ limit: 100 })) expect(row.attempts).toBe(1);
    console.log(`unpaced drain: 30 sent, 0 dead, ${relay.throttled()} throttled replies`);
  });

  it('dailyLimit: stops at the cap, rows stay pending, and the count survives a restart', async () => {
    const server = await startCaptureServer();
    cleanups.push(() => server.close());
    const dir = mkdtempSync(join(tmpdir(), 'pacing-daily-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const url = `sqlite:${join(dir, 'outbox.db')}`;
    const first = await openStore(url);
    const events: DispatchEvent[] = [];
    const a = dispatcher(first, server, { dailyLimit: 5 }, events);
    await enqueue(first, rows(8));
    a.d.start();
    await waitUntil('5 sent', async () => (await first.counts()).total.sent === 5, 5000);
    await sleep(300);
    expect((await first.counts()).total).toMatchObject({ sent: 5, pending: 3, dead: 0 });
    expect(a.pacer.snapshot()).toMatchObject({ dailyCount: 5, dailyLimit: 5 });
    await a.d.stop(2000);
    await first.close();

    // a new process on the same store: the day's count is still 5, nothing more goes out
    const second = await openStore(url);
    cleanups.push(() => second.close());
    const b = dispatcher(second, server, { dailyLimit: 5 }, events);
    b.d.start();
    await sleep(500);
    expect(server.messages).toHaveLength(5);
    expect((await second.readSendPace('smtp'))?.hours.reduce((n, [, c]) => n + c, 0)).toBe(5);
    expect(b.pacer.allowance(5)).toBe(0);
  });

  it(
    'two replicas on PostgreSQL share one bucket: together they stay under the limit',
    PACED_TEST,
    async () => {
      const base = process.env.TEST_DATABASE_URL;
      if (!base) return; // the PostgreSQL run needs the machine's database (store tests start one otherwise)
      const schema = randomSchema('t_pace');
      cleanups.push(() => dropSchemas(base, schema));
      const url = withSchema(base, schema);
      const relay = await limitedRelay(15, 3000);
      const times = acceptTimes(relay.server);
      const s1 = await openStore(url);
      cleanups.push(() => s1.close());
      const s2 = await openStore(url);
      cleanups.push(() => s2.close());
      const e1: DispatchEvent[] = [];
      const e2: DispatchEvent[] = [];
      const r1 = dispatcher(s1, relay.server, { rateLimit: { messages: 15, per: '3s' } }, e1);
      const r2 = dispatcher(s2, relay.server, { rateLimit: { messages: 15, per: '3s' } }, e2);
      await enqueue(s1, rows(25));
      await Promise.all([r1.start(), r2.start()]);
      await waitUntil(
        'drained',
        async () => (await s1.counts()).total.sent === 25,
        PACED_DRAIN_MS,
        async () => `${JSON.stringify((await s1.counts()).total)}, ${relay.throttled()} throttled replies`,
      );
      expect((await s1.counts()).total).toMatchObject({ sent: 25, dead: 0 });
      expect(new Set(relay.server.messages.map((m) => m.messageId)).size).toBe(25);
      const p = pace(relay.server, times);
      console.log(`two replicas: ${p.toFixed(2)} msg/s together against 5/s, ${relay.throttled()} throttled`);
      expect(p).toBeLessThanOrEqual(5.1);
      // both replicas sent (otherwise the test proves nothing about sharing)
      const sentBy = (es: DispatchEvent[]) =>
        es.filter((e) => e.type === 'outcome' && e.outcome === 'sent').length;
      expect(sentBy(e1)).toBeGreaterThan(0);
      expect(sentBy(e2)).toBeGreaterThan(0);
      expect(sentBy(e1) + sentBy(e2)).toBe(25);
    },
  );
});
