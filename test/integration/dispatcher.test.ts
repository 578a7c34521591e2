import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { deliverySchema, smtpSchema, type DeliveryConfig } from '../../src/config/schema.ts';
import { Dispatcher, type DispatchEvent } from '../../src/delivery/dispatcher.ts';
import { backoffDelay } from '../../src/delivery/outcomes.ts';
import { createSmtpSink, type SmtpSink } from '../../src/sinks/index.ts';
import { openStore } from '../../src/store/index.ts';
import { StoreUnavailableError } from '../../src/store/errors.ts';
import type { NewOutboxRow, OutboxRow, Store } from '../../src/store/index.ts';
import { dropSchemas, randomSchema, withSchema } from '../helpers/postgres.ts';
import {
  smtpError,
  startCaptureServer,
  type CaptureServer,
  type CaptureServerOptions,
} from '../helpers/smtp-server.ts';
import { cleanupsAfterEach } from '../helpers/cleanups.ts';
import { asEmail } from '../../src/types.ts';

const cleanups = cleanupsAfterEach();

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const silent = pino({ level: 'silent' });

async function waitUntil(
  what: string,
  fn: () => boolean | Promise<boolean>,
  timeoutMs = 8000,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function newStore(): Promise<{ store: Store; path: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'dispatcher-'));
  const path = join(dir, 'outbox.db');
  const store = await openStore(`sqlite:${path}`);
  await store.migrate();
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  cleanups.push(() => store.close());
  return { store, path };
}

function rows(n: number, rule = 'new-leads', from = 0): NewOutboxRow[] {
  return Array.from({ length: n }, (_, k) => {
    const i = from + k;
    const recordId = `00Q${String(i).padStart(15, '0')}`;
    return {
      rule,
      object: 'Lead',
      recordId,
      recordCreatedDate: '2026-01-01T00:00:00.000Z',
      state: 'pending' as const,
      message: {
        messageId: `<${rule}.${recordId}@notifier.test>`,
        from: 'leads@example.com',
        to: ['owner@example.com'],
        cc: [],
        bcc: [],
        subject: `Lead ${i}`,
        text: `lead ${i}`,
        headers: {},
        attachments: [],
      },
    };
  });
}

async function enqueue(store: Store, list: NewOutboxRow[]): Promise<void> {
  const t = new Date().toISOString();
  await store.commitBatch(list[0]!.rule, list, { floor: '2026-01-01T00:00:00.000Z', watermark: t });
}

interface Rig {
  server: CaptureServer;
  store: Store;
  sink: SmtpSink;
  dispatcher: Dispatcher;
  events: DispatchEvent[];
  all(): Promise<OutboxRow[]>;
}

async function rig(
  opts: {
    server?: CaptureServerOptions;
    smtp?: Record<string, unknown>;
    delivery?: Partial<DeliveryConfig>;
    store?: Store;
    concurrency?: number;
    leaseMs?: number;
    recoverEveryMs?: number;
    logger?: pino.Logger;
    /** nodemailer on the test's thread, as the daemon runs it by default (else a worker thread) */
    inProcess?: boolean;
  } = {},
): Promise<Rig> {
  const server = await startCaptureServer(opts.server);
  cleanups.push(() => server.close());
  const store = opts.store ?? (await newStore()).store;
  const smtp = smtpSchema.parse({ host: server.host, port: server.port, ...opts.smtp });
  const sink = createSmtpSink(smtp, { baseDir: process.cwd(), inProcess: opts.inProcess ?? false });
  cleanups.push(() => sink.close());
  const events: DispatchEvent[] = [];
  const delivery = deliverySchema.parse({
    backoffBaseMs: 20,
    backoffMaxMs: 60,
    circuitRetryMs: 100,
    ...opts.delivery,
  });
  const dispatcher = new Dispatcher({
    store,
    sink,
    delivery,
    concurrency: opts.concurrency ?? smtp.pool.maxConnections,
    leaseMs: opts.leaseMs ?? 30_000,
    owner: `test-${Math.random().toString(36).slice(2)}`,
    logger: opts.logger ?? silent,
    onEvent: (e) => events.push(e),
    pollIntervalMs: 50,
    ...(opts.recoverEveryMs ? { recoverEveryMs: opts.recoverEveryMs } : {}),
  });
  cleanups.push(() => dispatcher.stop(2000));
  return {
    server,
    store,
    sink,
    dispatcher,
    events,
    all: () => store.list({ limit: 10_000 }),
  };
}

/** Two dispatchers on handles of one store drain 120 rows: each row sent once, both did work. */
async function bothSendEachRowOnce(a: Rig, b: Rig): Promise<void> {
  await enqueue(a.store, rows(120));
  a.dispatcher.start();
  b.dispatcher.start();
  await waitUntil('all sent', async () => (await a.store.counts()).total.sent === 120, 15_000);
  await sleep(100);
  const got = [...a.server.messages, ...b.server.messages].map((m) => m.messageId);
  expect(got).toHaveLength(120);
  expect(new Set(got).size).toBe(120);
  // both did work (otherwise the test proves nothing about concurrent claiming)
  expect(a.server.messages.length).toBeGreaterThan(0);
  expect(b.server.messages.length).toBeGreaterThan(0);
}

describe('dispatcher', () => {
  it('delivers N rows exactly once, results kept', async () => {
    const r = await rig();
    await enqueue(r.store, rows(60));
    r.dispatcher.start();
    await waitUntil('all sent', async () => (await r.store.counts()).total.sent === 60);
    await sleep(100);
    expect(r.server.messages).toHaveLength(60);
    const ids = r.server.messages.map((m) => m.messageId);
    expect(new Set(ids).size).toBe(60);
    const list = await r.all();
    for (const row of list) {
      expect(row.state).toBe('sent');
      expect(row.attempts).toBe(1);
      expect(row.result?.response).toMatch(/^250 /);
      expect(row.result?.accepted).toEqual(['owner@example.com']);
      expect(r.server.byMessageId(asEmail(row.message).messageId)).toHaveLength(1);
    }
    expect(r.dispatcher.inFlight).toBe(0);
  });

  it('group commit: an outcome waits for the other sends in flight, so one commit writes several', async () => {
    const { store } = await newStore();
    // the real store, its cycle() calls counted
    const written: number[] = [];
    const cycle = store.cycle.bind(store);
    store.cycle = (o) => {
      if (o.outcomes?.length) written.push(o.outcomes.length);
      return cycle(o);
    };
    const r = await rig({ store, concurrency: 5, inProcess: true });
    await enqueue(store, rows(300));
    r.dispatcher.start();
    await waitUntil('all sent', async () => (await store.counts()).total.sent === 300, 20_000);
    expect(r.server.messages).toHaveLength(300);
    expect(written.reduce((a, b) => a + b, 0)).toBe(300);
    // five connections on this thread: without the wait nearly every outcome was a commit of its
    // own (290 of 300 here); with it about 60
    expect(written.length).toBeLessThan(300 / 1.5);
  });

  it('never claims more rows than it has send slots', async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((res) => (release = res));
    const r = await rig({ server: { onData: () => held }, smtp: { pool: { maxConnections: 3 } } });
    await enqueue(r.store, rows(10));
    r.dispatcher.start();
    await waitUntil('3 in flight', () => r.dispatcher.inFlight === 3);
    await sleep(150);
    const states = (await r.all()).map((x) => x.state);
    expect(states.filter((s) => s === 'sending')).toHaveLength(3);
    expect(states.filter((s) => s === 'pending')).toHaveLength(7);
    release();
    await waitUntil('all sent', async () => (await r.store.counts()).total.sent === 10);
  });

  it('kick() claims new rows at once instead of at the next poll', async () => {
    const r = await rig();
    r.dispatcher.start();
    await sleep(30);
    // the idle poll is 50 ms in these tests; make it long to see the kick work
    (r.dispatcher as unknown as { pollMs: number }).pollMs = 60_000;
    await sleep(80);
    await enqueue(r.store, rows(2));
    const t0 = Date.now();
    r.dispatcher.kick();
    await waitUntil('sent', async () => (await r.store.counts()).total.sent === 2);
    // the idle poll is 60 s now: anything well under it was the kick (the bound leaves room for a
    // loaded CI machine, where one second was seen to pass before the claim)
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('451 then success: retried with backoff, delivered once', async () => {
    let refusals = 0;
    const r = await rig({
      server: {
        onRcpt: () => {
          if (refusals++ < 2) throw smtpError(451, '4.3.0 greylisted');
        },
      },
    });
    await enqueue(r.store, rows(1));
    r.dispatcher.start();
    await waitUntil('sent', async () => (await r.store.counts()).total.sent === 1);
    const [row] = await r.all();
    expect(row!.attempts).toBe(3);
    expect(r.server.messages).toHaveLength(1);
    const outcomes = r.events.filter((e) => e.type === 'outcome').map((e) => e.outcome);
    expect(outcomes).toEqual(['retry', 'retry', 'sent']);
  });

  it('a retried row waits for its backoff (next_attempt_at in the future)', async () => {
    const r = await rig({
      server: {
        onRcpt: () => {
          throw smtpError(451, '4.3.0 later');
        },
      },
      delivery: { backoffBaseMs: 60_000, backoffMaxMs: 60_000 },
    });
    await enqueue(r.store, rows(1));
    const t0 = Date.now();
    r.dispatcher.start();
    await waitUntil('failed', async () => (await r.store.counts()).total.failed === 1);
    const [row] = await r.all();
    expect(row!.lastError).toMatch(/451/);
    expect(Date.parse(row!.nextAttemptAt!)).toBeGreaterThan(t0);
    expect(Date.parse(row!.nextAttemptAt!)).toBeLessThanOrEqual(Date.now() + 60_000);
    await sleep(200);
    expect((await r.all())[0]!.attempts).toBe(1);
  });

  it('maxAttempts -> dead with the last reply', async () => {
    const r = await rig({
      server: {
        onRcpt: () => {
          throw smtpError(451, '4.3.0 still busy');
        },
      },
      delivery: { maxAttempts: 3 },
    });
    await enqueue(r.store, rows(1));
    r.dispatcher.start();
    await waitUntil('dead', async () => (await r.store.counts()).total.dead === 1);
    const [row] = await r.all();
    expect(row!.attempts).toBe(3);
    expect(row!.lastError).toMatch(/gave up after 3 attempts/);
    expect(row!.lastError).toMatch(/451 4\.3\.0 still busy/);
  });

  it('550 for every recipient -> dead at once, reply kept; 550 for one -> sent with the refusal kept', async () => {
    const r = await rig({
      server: {
        onRcpt: (addr) => {
          if (addr.startsWith('gone')) throw smtpError(550, '5.1.1 no such user');
        },
      },
    });
    const [a, b] = rows(2);
    asEmail(a!.message).to = ['gone@example.com'];
    asEmail(b!.message).to = ['owner@example.com', 'gone2@example.com'];
    await enqueue(r.store, [a!, b!]);
    r.dispatcher.start();
    await waitUntil('settled', async () => {
      const c = (await r.store.counts()).total;
      return c.dead === 1 && c.sent === 1;
    });
    const list = await r.all();
    const dead = list.find((x) => x.state === 'dead')!;
    expect(dead.attempts).toBe(1);
    expect(dead.lastError).toMatch(/550 5\.1\.1 no such user/);
    const sent = list.find((x) => x.state === 'sent')!;
    expect(sent.result?.rejected).toEqual(['gone2@example.com']);
    expect(
      (sent.result as { rejectedReplies?: Record<string, string> }).rejectedReplies?.['gone2@example.com'],
    ).toMatch(/^550/);
  });

  it('a reset after the data -> unknown, never re-sent', async () => {
    const r = await rig({ server: { onData: (ctx) => ctx.destroySocket() } });
    await enqueue(r.store, rows(1));
    r.dispatcher.start();
    await waitUntil('unknown', async () => (await r.store.counts()).total.unknown === 1);
    await sleep(300);
    expect(r.server.stats.dataCommands).toBe(1);
    expect((await r.all())[0]!.lastError).toMatch(/^uncertain ECONNECTION/);
  });

  it('535 opens the circuit: rows stay pending; fixing auth closes it and all go out', async () => {
    const r = await rig({
      server: { auth: { user: 'notifier', pass: 'new-secret' } },
      smtp: { auth: { user: 'notifier', pass: 'old-secret' } },
    });
    await enqueue(r.store, rows(8));
    r.dispatcher.start();
    await waitUntil('circuit open', () => r.dispatcher.circuit === 'open');
    await waitUntil('in-flight released', () => r.dispatcher.inFlight === 0);
    await sleep(350); // a few probe periods
    const list = await r.all();
    expect(list.map((x) => x.state)).toEqual(Array(8).fill('pending'));
    // released attempts do not count
    expect(list.every((x) => x.attempts === 0)).toBe(true);
    expect(list.some((x) => /^auth EAUTH/.test(x.lastError ?? ''))).toBe(true);
    expect(r.server.messages).toHaveLength(0);
    const probesBefore = r.server.stats.authAttempts;
    await sleep(250);
    expect(r.server.stats.authAttempts).toBeGreaterThan(probesBefore); // it keeps probing
    expect(r.server.stats.authAttempts - probesBefore).toBeLessThan(8); // but only by probing

    r.server.setAuth({ user: 'notifier', pass: 'old-secret' });
    await waitUntil('all sent', async () => (await r.store.counts()).total.sent === 8);
    expect(r.dispatcher.circuit).toBe('closed');
    expect(r.server.messages).toHaveLength(8);
    const circuit = r.events.filter((e) => e.type === 'circuit').map((e) => e.state);
    expect(circuit).toEqual(['open', 'closed']);
  });

  it('an unreachable server pauses sending without using up attempts; all go out when it is back', async () => {
    const r = await rig({ delivery: { maxAttempts: 2 } });
    const port = r.server.port;
    await r.server.close();
    await enqueue(r.store, rows(6));
    r.dispatcher.start();
    await waitUntil('circuit open', () => r.dispatcher.circuit === 'open');
    await sleep(400); // several probe periods: far more than maxAttempts tries if attempts counted
    const list = await r.all();
    expect(list.map((x) => x.state)).toEqual(Array(6).fill('pending'));
    expect(list.every((x) => x.attempts === 0)).toBe(true);
    const back = await startCaptureServer({ port });
    cleanups.push(() => back.close());
    await waitUntil('all sent', async () => (await r.store.counts()).total.sent === 6);
    expect(back.messages).toHaveLength(6);
    expect(r.dispatcher.circuit).toBe('closed');
  });

  it('stop() waits for an in-flight send the server holds open, then stops claiming', async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((res) => (release = res));
    const r = await rig({ server: { onData: () => held }, smtp: { pool: { maxConnections: 1 } } });
    await enqueue(r.store, rows(3));
    r.dispatcher.start();
    await waitUntil('in flight', () => r.dispatcher.inFlight === 1);
    const t0 = Date.now();
    setTimeout(release, 300);
    await r.dispatcher.stop(5000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    const states = (await r.all()).map((x) => x.state).sort();
    expect(states).toEqual(['pending', 'pending', 'sent']);
    await sleep(150);
    expect(r.server.messages).toHaveLength(1);
  });

  it('stop(timeout) gives up on a send held too long: the row stays leased', async () => {
    const r = await rig({ server: { onData: () => sleep(1500) }, smtp: { pool: { maxConnections: 1 } } });
    await enqueue(r.store, rows(1));
    r.dispatcher.start();
    await waitUntil('in flight', () => r.dispatcher.inFlight === 1);
    const t0 = Date.now();
    await r.dispatcher.stop(150);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect((await r.all())[0]!.state).toBe('sending');
  });

  it('two dispatchers on one store never send a row twice', async () => {
    const { store, path } = await newStore();
    const a = await rig({ store, smtp: { pool: { maxConnections: 4 } } });
    // the second dispatcher has its own connection to the same SQLite file
    const store2 = await openStore(`sqlite:${path}`);
    cleanups.push(() => store2.close());
    const b = await rig({ store: store2, smtp: { pool: { maxConnections: 4 } } });
    await bothSendEachRowOnce(a, b);
  });

  // PostgreSQL is the store replicas share: two dispatchers, each with its own pool, one schema.
  it.skipIf(!process.env.TEST_DATABASE_URL)(
    'two dispatchers on one PostgreSQL store never send a row twice',
    async () => {
      const base = process.env.TEST_DATABASE_URL!;
      const schema = randomSchema('t_dispatch');
      cleanups.push(() => dropSchemas(base, schema));
      const url = withSchema(base, schema);
      const store1 = await openStore(url);
      cleanups.push(() => store1.close());
      const store2 = await openStore(url);
      cleanups.push(() => store2.close());
      const a = await rig({ store: store1, smtp: { pool: { maxConnections: 4 } } });
      const b = await rig({ store: store2, smtp: { pool: { maxConnections: 4 } } });
      await bothSendEachRowOnce(a, b);
    },
  );

  it("its own row whose send lease ran out while it stalled is reported as its own, not another process's", async () => {
    const logged: Array<{ msg: string; count?: number }> = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => logged.push(JSON.parse(l)) });
    let release: () => void = () => {};
    const held = new Promise<void>((res) => (release = res));
    // the relay holds the message past the row's send lease (300 ms): this process stalls
    const r = await rig({
      server: { onData: () => held },
      smtp: { pool: { maxConnections: 1 } },
      concurrency: 1,
      leaseMs: 300,
      recoverEveryMs: 100,
      logger,
    });
    await enqueue(r.store, rows(1));
    r.dispatcher.start();
    // as the pollers' enqueues do: with every slot busy, only a kick makes it tick
    const kicker = setInterval(() => r.dispatcher.kick(), 50);
    cleanups.push(() => clearInterval(kicker));
    await waitUntil('recovered', async () => (await r.all())[0]!.state === 'unknown');
    release();
    const [row] = await r.all();
    expect(row).toMatchObject({
      state: 'unknown',
      lastErrorCode: 'EABANDONED',
      lastError:
        "this process's send lease expired while it was paused or stalled (the send may have gone out); delivery uncertain",
    });
    expect(logged.map((l) => l.msg)).toContain(
      "this process's own rows: their send lease expired while it was paused or stalled; marked unknown unless their rule says onUncertain: resend",
    );
    expect(logged.some((l) => l.msg.includes('another process'))).toBe(false);
    // the late outcome does not overwrite what was reported
    await waitUntil('delivered', () => r.server.messages.length === 1);
    await sleep(100);
    expect((await r.all())[0]!.state).toBe('unknown');
  });

  it('a cycle that committed but whose reply was lost (connection died at COMMIT): its rows go back and are sent once, none left uncertain', async () => {
    const r = await rig({ concurrency: 3 });
    await enqueue(r.store, rows(12));
    const realCycle = r.store.cycle.bind(r.store);
    let lost = 0;
    r.store.cycle = async (o) => {
      const res = await realCycle(o);
      // the second and third transactions commit, and the dispatcher hears only that the
      // connection died (what a PostgreSQL crash or failover at COMMIT looks like)
      if (++lost === 2 || lost === 3) {
        throw new StoreUnavailableError(
          'PostgreSQL store postgres://db/x',
          'cycle',
          new Error('Connection terminated unexpectedly'),
        );
      }
      return res;
    };
    r.dispatcher.start();
    await waitUntil('all sent', async () => (await r.store.counts()).total.sent === 12, 15_000).catch(
      async (e: unknown) => {
        throw new Error(
          `${String(e)}: ${JSON.stringify((await r.all()).map((x) => [x.id, x.state, x.leaseOwner, x.attempts]))}`,
        );
      },
    );
    const all = await r.all();
    expect(all.every((x) => x.state === 'sent' && x.attempts === 1)).toBe(true);
    await sleep(100);
    const got = r.server.messages.map((m) => m.messageId);
    expect(got).toHaveLength(12);
    expect(new Set(got).size).toBe(12);
  });

  it('a store failure is a logged loop error, not a crash; the loop carries on', async () => {
    const r = await rig();
    await enqueue(r.store, rows(2));
    const realCycle = r.store.cycle.bind(r.store);
    let failures = 0;
    r.store.cycle = async (o) => {
      if (failures++ < 2) throw new Error('database is locked');
      return realCycle(o);
    };
    r.dispatcher.start();
    await waitUntil('sent', async () => (await r.store.counts()).total.sent === 2);
    expect(r.events.filter((e) => e.type === 'loop-error')).toHaveLength(2);
  });
});

describe('backoffDelay', () => {
  it('is full jitter under an exponential cap', () => {
    expect(backoffDelay(1, 100, 10_000, () => 0.999)).toBe(99);
    expect(backoffDelay(3, 100, 10_000, () => 0.5)).toBe(200);
    expect(backoffDelay(30, 100, 10_000, () => 0.999)).toBe(9990);
    expect(backoffDelay(5, 100, 10_000, () => 0)).toBe(0);
  });
});
