// The HTTP channels (webhook, Slack, Teams) through the real dispatcher and store into real
// node:http receivers on loopback: signatures, every outcome class, Retry-After, timeouts and
// resets after the request went out, the circuit, and channels independent of each other.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { deliverySchema, smtpSchema, type DeliveryConfig } from '../../src/config/index.ts';
import { Dispatcher, isServerUnreachable, type DispatchEvent } from '../../src/delivery/dispatcher.ts';
import { SendError } from '../../src/sinks/types.ts';
import {
  createHttpChannel,
  parseRetryAfter,
  REPLY_BODY_LIMIT,
  type HttpTarget,
} from '../../src/sinks/http.ts';
import { createSmtpSink } from '../../src/sinks/index.ts';
import { openStore, type NewOutboxRow, type OutboxRow, type Store } from '../../src/store/index.ts';
import type { ChannelName, HttpChannelName, HttpSendResult, RenderedMessage } from '../../src/types.ts';
import { cleanupsAfterEach } from '../helpers/cleanups.ts';
import { startReceiver, type Receiver } from '../helpers/http-receiver.ts';
import { startCaptureServer } from '../helpers/smtp-server.ts';

const cleanups = cleanupsAfterEach();
const silent = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const SECRET = 'whsec-test-0123456789';

async function waitUntil(
  what: string,
  fn: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function newStore(): Promise<Store> {
  const dir = mkdtempSync(join(tmpdir(), 'http-channel-'));
  const store = await openStore(`sqlite:${join(dir, 'outbox.db')}`);
  await store.migrate();
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  cleanups.push(() => store.close());
  return store;
}

const recordId = (i: number) => `00Q${String(i).padStart(15, '0')}`;

function hookRows(n: number, channel: HttpChannelName = 'webhook', rule = 'web'): NewOutboxRow[] {
  return Array.from({ length: n }, (_, i) => ({
    rule,
    object: 'Lead',
    recordId: recordId(i),
    recordCreatedDate: '2026-01-01T00:00:00.000Z',
    channel,
    state: 'pending' as const,
    message: {
      channel,
      rule,
      idempotencyKey: `${rule}.${recordId(i)}`,
      contentType: 'application/json',
      body: JSON.stringify({ Id: recordId(i), n: i }),
    },
  }));
}

function emailRow(i: number, rule = 'web'): NewOutboxRow {
  const message: RenderedMessage = {
    messageId: `<${rule}.${recordId(i)}@notifier.test>`,
    from: 'leads@example.com',
    to: ['owner@example.com'],
    cc: [],
    bcc: [],
    subject: `Lead ${i}`,
    text: `lead ${i}`,
    headers: {},
    attachments: [],
  };
  return { ...hookRows(1)[0]!, recordId: recordId(i), channel: 'email', message };
}

async function enqueue(store: Store, list: NewOutboxRow[]): Promise<void> {
  await store.commitBatch(list[0]!.rule, list, {
    floor: '2026-01-01T00:00:00.000Z',
    watermark: new Date().toISOString(),
  });
}

interface Rig {
  store: Store;
  receiver: Receiver;
  dispatcher: Dispatcher;
  events: DispatchEvent[];
  rows(channel?: ChannelName): Promise<OutboxRow[]>;
}

async function rig(
  opts: {
    store?: Store;
    target?: Partial<HttpTarget>;
    delivery?: Partial<DeliveryConfig>;
    channel?: HttpChannelName;
    resend?: boolean;
    concurrency?: number;
    receiver?: Receiver;
  } = {},
): Promise<Rig> {
  const store = opts.store ?? (await newStore());
  const receiver = opts.receiver ?? (await startReceiver({ secret: SECRET }));
  if (!opts.receiver) cleanups.push(() => receiver.close());
  const channel = opts.channel ?? 'webhook';
  const sink = createHttpChannel({
    channel,
    targets: new Map([
      [
        'web',
        {
          url: receiver.url,
          headers: { Authorization: 'Bearer hook-token-1' },
          secret: SECRET,
          timeoutMs: 2_000,
          ...opts.target,
        },
      ],
    ]),
    concurrency: opts.concurrency ?? 4,
    userAgent: 'lead-notifier/9.9.9',
    ...(opts.resend ? { resendRules: new Set(['web']) } : {}),
  });
  cleanups.push(() => sink.close());
  const events: DispatchEvent[] = [];
  const dispatcher = new Dispatcher({
    store,
    sink,
    channel,
    delivery: deliverySchema.parse({
      backoffBaseMs: 20,
      backoffMaxMs: 60,
      circuitRetryMs: 150,
      ...opts.delivery,
    }),
    concurrency: opts.concurrency ?? 4,
    leaseMs: 30_000,
    owner: `test-${channel}-${Math.random().toString(36).slice(2)}`,
    logger: silent,
    onEvent: (e) => events.push(e),
    pollIntervalMs: 50,
  });
  cleanups.push(() => dispatcher.stop(5_000));
  return {
    store,
    receiver,
    dispatcher,
    events,
    rows: async (c?: ChannelName) =>
      (await store.list({ limit: 10_000, ...(c ? { channel: c } : {}) })).sort((a, b) => a.id - b.id),
  };
}

const settled = (rows: OutboxRow[]) => rows.every((r) => !['pending', 'sending', 'failed'].includes(r.state));

describe('HTTP channel', () => {
  it('2xx: sent once per row, signed, with Idempotency-Key, User-Agent and config headers; the reply kept, bounded', async () => {
    const r = await rig();
    r.receiver.respond = (_req, n) => ({
      status: n === 1 ? 201 : 200,
      body: n === 1 ? 'x'.repeat(10_000) : '{"ok":true}',
    });
    await enqueue(r.store, hookRows(20));
    r.dispatcher.start();
    await waitUntil('all sent', async () => (await r.rows()).every((x) => x.state === 'sent'));
    expect(r.receiver.requests).toHaveLength(20);
    for (const req of r.receiver.requests) {
      expect(req.signatureOk).toBe(true);
      expect(req.method).toBe('POST');
      expect(req.headers['content-type']).toBe('application/json');
      expect(req.headers['user-agent']).toBe('lead-notifier/9.9.9');
      expect(req.headers.authorization).toBe('Bearer hook-token-1');
      expect(req.headers['idempotency-key']).toBe(`web.${(JSON.parse(req.body) as { Id: string }).Id}`);
      expect(req.headers['x-lead-notifier-signature']).toMatch(/^sha256=[0-9a-f]{64}$/);
    }
    expect(new Set(r.receiver.requests.map((q) => q.headers['idempotency-key'])).size).toBe(20);
    const rows = await r.rows();
    expect(rows.every((x) => x.attempts === 1)).toBe(true);
    const big = rows.find((x) => (x.result as HttpSendResult).status === 201)!;
    const result = big.result as HttpSendResult;
    expect(result.body.length).toBeLessThanOrEqual(REPLY_BODY_LIMIT + ' [truncated]'.length);
    expect(result.body).toMatch(/\[truncated\]$/);
    expect(result.response).toMatch(/^201 Created: x+ \[truncated\]$/);
    expect((rows.find((x) => x !== big)!.result as HttpSendResult).body).toBe('{"ok":true}');
  });

  it('a forged or stale signature fails the receiver check (the check the README gives)', async () => {
    const { verifySignature } = await import('../helpers/http-receiver.ts');
    const body = '{"a":1}';
    const now = Math.floor(Date.now() / 1000);
    const { signBody } = await import('../../src/sinks/http.ts');
    const headers = (ts: number, secret = SECRET) => ({
      'x-lead-notifier-timestamp': String(ts),
      'x-lead-notifier-signature': signBody(secret, ts, body),
    });
    expect(verifySignature(SECRET, headers(now), body)).toBe(true);
    expect(verifySignature(SECRET, headers(now, 'other-secret'), body)).toBe(false);
    expect(verifySignature(SECRET, headers(now), '{"a":2}')).toBe(false);
    expect(verifySignature(SECRET, headers(now - 301), body)).toBe(false);
  });

  it('429 with Retry-After: the next attempt waits at least that long (not the shorter backoff), then sends once', async () => {
    const r = await rig();
    r.receiver.respond = (_req, n) =>
      n === 1 ? { status: 429, headers: { 'Retry-After': '2' }, body: 'slow down' } : { status: 200 };
    await enqueue(r.store, hookRows(1));
    r.dispatcher.start();
    await waitUntil('failed once', async () => (await r.rows())[0]!.state === 'failed');
    const failed = (await r.rows())[0]!;
    expect(failed.lastError).toContain('429');
    expect(failed.lastError).toContain('slow down');
    expect(failed.lastErrorCode).toBe('EHTTP');
    // backoff alone (base 20 ms, max 60 ms) would be due almost at once
    expect(Date.parse(failed.nextAttemptAt!) - Date.parse(failed.updatedAt)).toBeGreaterThanOrEqual(1_900);
    await waitUntil('sent', async () => (await r.rows())[0]!.state === 'sent', 10_000);
    expect(r.receiver.requests).toHaveLength(2);
    expect(r.receiver.requests[1]!.at - r.receiver.requests[0]!.at).toBeGreaterThanOrEqual(1_900);
    // each attempt signed afresh, and both verify
    expect(r.receiver.requests.every((q) => q.signatureOk)).toBe(true);
  });

  it('a connect timeout and nothing listening count as unreachable (the circuit), a 5xx or a reset do not', () => {
    const err = (init: ConstructorParameters<typeof SendError>[1]) => new SendError('x', init);
    expect(isServerUnreachable(err({ kind: 'retry', code: 'EHTTPTIMEOUT', command: 'CONN' }))).toBe(true);
    expect(
      isServerUnreachable(err({ kind: 'retry', code: 'EHTTPCONNECTION', originalCode: 'ECONNREFUSED' })),
    ).toBe(true);
    expect(isServerUnreachable(err({ kind: 'retry', code: 'EHTTPCONNECTION' }))).toBe(false);
    expect(isServerUnreachable(err({ kind: 'retry', code: 'EHTTP', responseCode: 503 }))).toBe(false);
  });

  it('Retry-After as seconds or an HTTP date', () => {
    const now = Date.parse('2026-12-01T10:00:00Z');
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter('Tue, 01 Dec 2026 10:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Tue, 01 Dec 2026 09:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });

  it('500 and 408 retry with backoff; other 4xx and 3xx are dead with the reply kept', async () => {
    const r = await rig();
    const byKey = new Map<string, number>();
    r.receiver.respond = (req) => {
      const id = (JSON.parse(req.body) as { n: number }).n;
      const n = (byKey.get(String(id)) ?? 0) + 1;
      byKey.set(String(id), n);
      if (id === 0) return n === 1 ? { status: 500, body: 'boom' } : { status: 200 };
      if (id === 1) return n === 1 ? { status: 408 } : { status: 204 };
      if (id === 2) return { status: 422, body: '{"error":"missing field"}' };
      return { status: 302, headers: { Location: 'https://elsewhere.example/hook' } };
    };
    await enqueue(r.store, hookRows(4));
    r.dispatcher.start();
    await waitUntil('settled', async () => settled(await r.rows()));
    const [a, b, c, d] = await r.rows();
    expect(a).toMatchObject({ state: 'sent', attempts: 2 });
    expect(b).toMatchObject({ state: 'sent', attempts: 2 });
    expect(c).toMatchObject({ state: 'dead', attempts: 1, lastErrorCode: 'EHTTP' });
    expect(c!.lastError).toContain('422');
    expect(c!.lastError).toContain('missing field');
    expect(d).toMatchObject({ state: 'dead', attempts: 1, lastErrorCode: 'EREDIRECT' });
    expect(d!.lastError).toContain('Location: https://elsewhere.example/hook');
    // the redirect was not followed: the receiver saw exactly one request for it
    expect(r.receiver.requests.filter((q) => q.body.includes('"n":3'))).toHaveLength(1);
  });

  it('a reply slower than timeoutMs after the request was written: unknown, not sent again', async () => {
    const r = await rig({ target: { timeoutMs: 300 } });
    r.receiver.respond = () => ({ delayMs: 2_000 });
    await enqueue(r.store, hookRows(1));
    r.dispatcher.start();
    await waitUntil('unknown', async () => (await r.rows())[0]!.state === 'unknown');
    const row = (await r.rows())[0]!;
    expect(row.lastErrorCode).toBe('EUNCERTAIN');
    expect(row.lastError).toContain('may have been received');
    await sleep(500);
    expect(r.receiver.requests).toHaveLength(1);
  });

  it('a reset after the request was read: unknown; with onUncertain: resend it is sent again', async () => {
    const r = await rig();
    r.receiver.respond = () => ({ reset: true });
    await enqueue(r.store, hookRows(1));
    r.dispatcher.start();
    await waitUntil('unknown', async () => (await r.rows())[0]!.state === 'unknown');
    expect((await r.rows())[0]!.lastErrorCode).toBe('EUNCERTAIN');

    const again = await rig({ resend: true });
    again.receiver.respond = (_req, n) => (n === 1 ? { reset: true } : { status: 200 });
    await enqueue(again.store, hookRows(1));
    again.dispatcher.start();
    await waitUntil('sent', async () => (await again.rows())[0]!.state === 'sent');
    expect(again.receiver.requests).toHaveLength(2);
    // the same key on both attempts: a receiver that honours it acts once
    expect(new Set(again.receiver.requests.map((q) => q.headers['idempotency-key'])).size).toBe(1);
  });

  it('401/403 opens the channel circuit: rows stay pending, attempts unspent, until a probe succeeds', async () => {
    const r = await rig();
    let refuse = true;
    r.receiver.respond = () => (refuse ? { status: 401, body: 'bad token' } : { status: 200 });
    await enqueue(r.store, hookRows(3));
    r.dispatcher.start();
    await waitUntil('circuit open', () => r.dispatcher.circuit === 'open');
    expect(r.events).toContainEqual(
      expect.objectContaining({ type: 'circuit', state: 'open', channel: 'webhook' }),
    );
    await sleep(100);
    const held = await r.rows();
    expect(held.every((x) => x.state === 'pending' || x.state === 'sending')).toBe(true);
    refuse = false;
    await waitUntil('all sent', async () => (await r.rows()).every((x) => x.state === 'sent'));
    expect(r.dispatcher.circuit).toBe('closed');
    expect((await r.rows()).every((x) => x.attempts === 1)).toBe(true);
  });

  it('nothing listening: the circuit opens (unreachable), no attempt is spent; sends once it listens', async () => {
    const probe = createServer();
    await new Promise<void>((res) => probe.listen(0, '127.0.0.1', res));
    const port = (probe.address() as import('node:net').AddressInfo).port;
    await new Promise<void>((res) => probe.close(() => res()));
    const r = await rig({ target: { url: `http://127.0.0.1:${port}/hook` } });
    await enqueue(r.store, hookRows(2));
    r.dispatcher.start();
    await waitUntil('circuit open', () => r.dispatcher.circuit === 'open');
    const rows = await r.rows();
    expect(rows.every((x) => x.state === 'pending' && x.attempts === 0)).toBe(true);
    expect(rows.some((x) => x.lastErrorCode === 'EHTTPCONNECTION')).toBe(true);
    // a receiver appears on that port: the probe connects and the rows go out
    const late = (await import('node:http')).createServer((req, res) => {
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    await new Promise<void>((res) => late.listen(port, '127.0.0.1', res));
    cleanups.push(() => new Promise<void>((res) => late.close(() => res())));
    await waitUntil('sent', async () => (await r.rows()).every((x) => x.state === 'sent'));
  });

  it('channels are independent: Slack down, the email goes once; Slack delivered later, once', async () => {
    const store = await newStore();
    const smtp = await startCaptureServer();
    cleanups.push(() => smtp.close());
    const sink = createSmtpSink(smtpSchema.parse({ host: smtp.host, port: smtp.port }), {
      baseDir: process.cwd(),
    });
    cleanups.push(() => sink.close());
    const email = new Dispatcher({
      store,
      sink,
      channel: 'email',
      delivery: deliverySchema.parse({ backoffBaseMs: 20, backoffMaxMs: 60, circuitRetryMs: 100 }),
      concurrency: 2,
      leaseMs: 30_000,
      owner: 'test-email',
      logger: silent,
      pollIntervalMs: 50,
    });
    cleanups.push(() => email.stop(5_000));
    const slack = await rig({
      store,
      channel: 'slack',
      delivery: { backoffBaseMs: 50, backoffMaxMs: 100, maxAttempts: 1_000 },
    });
    let slackUp = false;
    slack.receiver.respond = () =>
      slackUp ? { status: 200, body: 'ok' } : { status: 503, body: 'service unavailable' };
    const rows = [0, 1, 2].flatMap((i) => [emailRow(i), { ...hookRows(3, 'slack')[i]! }]);
    await enqueue(store, rows);
    email.start();
    slack.dispatcher.start();
    await waitUntil('emails sent', async () => (await slack.rows('email')).every((x) => x.state === 'sent'));
    expect(smtp.messages).toHaveLength(3);
    await waitUntil('slack failing', () => slack.receiver.requests.length >= 3);
    expect((await slack.rows('slack')).some((x) => x.state !== 'sent')).toBe(true);
    slackUp = true;
    await waitUntil(
      'slack sent',
      async () => (await slack.rows('slack')).every((x) => x.state === 'sent'),
      15_000,
    );
    // each record's Slack message accepted once (one 200 per key), its email sent once, never repeated
    const okKeys = slack.receiver.requests.slice(-3).map((q) => q.headers['idempotency-key']);
    expect(new Set(okKeys).size).toBe(3);
    expect((await slack.rows('slack')).every((x) => x.attempts > 1)).toBe(true);
    await sleep(200);
    expect(smtp.messages).toHaveLength(3);
    expect(new Set(smtp.messages.map((m) => m.messageId)).size).toBe(3);
  });
});
