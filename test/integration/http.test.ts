// The HTTP endpoints around a real App: org emulator over HTTP, a real SMTP server on loopback, a
// SQLite file. Probes, metrics, hostile clients, and secrets kept out of every response.
import { connect } from 'node:net';
import type { DatabaseSync } from 'node:sqlite';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { App } from '../../src/app/app.ts';
import { loadConfig, secretsOf } from '../../src/config/index.ts';
import { Metrics } from '../../src/http/metrics.ts';
import { startHttpServer } from '../../src/http/server.ts';
import type { HttpServer } from '../../src/http/server.ts';
import type { ReadinessReport } from '../../src/http/readiness.ts';
import { createLogger } from '../../src/util/log.ts';
import { waitFor } from '../helpers/process.ts';
import { leadFields, startStack } from '../helpers/stack.ts';
import type { Stack } from '../helpers/stack.ts';

const SMTP_USER = 'notifier';
const SMTP_PASS = 'smtp-pass-Zq81xK';
const CLIENT_SECRET = 'emulator-secret';

interface Running {
  stack: Stack;
  app: App;
  http: HttpServer;
  metrics: Metrics;
  logLines: string[];
  /** every response body read through get(), for the secret check */
  bodies: string[];
  get(path: string, init?: RequestInit): Promise<{ status: number; body: string; headers: Headers }>;
  close(): Promise<void>;
}

async function startRunning(
  opts: Parameters<typeof startStack>[0] = {},
  httpOpts: Partial<Parameters<typeof startHttpServer>[0]> = {},
  /** edit the config (emulator URL and SMTP port known by now) before it is loaded */
  edit: (config: { salesforce: { auth: Record<string, unknown> } }) => void = () => undefined,
): Promise<Running> {
  const stack = await startStack({
    ...opts,
    smtp: { auth: { user: SMTP_USER, pass: SMTP_PASS }, ...opts.smtp },
  });
  const smtpCfg = stack.config.smtp as Record<string, unknown>;
  stack.config.smtp = { ...smtpCfg, auth: { user: SMTP_USER, pass: SMTP_PASS } };
  edit(stack.config as { salesforce: { auth: Record<string, unknown> } });
  stack.writeConfig(stack.config);
  const config = await loadConfig(stack.configPath);
  const logLines: string[] = [];
  const logger = createLogger({
    level: 'info',
    format: 'json',
    destination: new Writable({
      write(chunk: Buffer, _enc, cb) {
        logLines.push(...chunk.toString().split('\n').filter(Boolean));
        cb();
      },
    }),
  });
  const metrics = new Metrics({ rules: config.rules.map((r) => r.name) });
  const app = new App(config, { logger, events: metrics.events });
  const http = await startHttpServer({
    app,
    host: '127.0.0.1',
    port: 0,
    logger,
    metrics,
    secrets: secretsOf(config),
    headersTimeoutMs: 500,
    requestTimeoutMs: 1000,
    ...httpOpts,
  });
  await app.start();
  const bodies: string[] = [];
  let closed = false;
  return {
    stack,
    app,
    http,
    metrics,
    logLines,
    bodies,
    async get(path, init) {
      const res = await fetch(http.url + path, init);
      const body = await res.text();
      bodies.push(body);
      return { status: res.status, body, headers: res.headers };
    },
    async close() {
      if (closed) return;
      closed = true;
      await app.stop(1000);
      await http.close(100);
      await stack.close();
    },
  };
}

/** A raw request on a fresh TCP connection; resolves with what came back when the server hung up. */
function rawRequest(
  port: number,
  data: string | Buffer,
  opts: { holdOpenMs?: number } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`server did not hang up; got ${JSON.stringify(got.slice(0, 200))}`));
    }, opts.holdOpenMs ?? 5000);
    s.setEncoding('utf8');
    s.on('data', (d: string) => (got += d));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    s.write(data);
  });
}

type ReadyBody = ReadinessReport & {
  components: Record<string, { ok: boolean; state: string; reason: string | null }>;
};

function metricValue(text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('HTTP endpoints around a running App', () => {
  let r: Running;
  beforeAll(async () => {
    r = await startRunning({}, { smtpRecheckMs: { ok: 300, error: 300 } });
  });
  afterAll(async () => {
    await r?.close();
  });

  it('logs one `http listening` line with the bound URL', () => {
    const lines = r.logLines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((j) => j.msg === 'http listening');
    expect(lines).toHaveLength(1);
    expect(lines[0]!.url).toBe(r.http.url);
    expect(r.http.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(r.http.port).toBeGreaterThan(0);
  });

  it('/healthz answers 200 {"status":"ok"}; HEAD has no body', async () => {
    const res = await r.get('/healthz');
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ status: 'ok' });
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const head = await r.get('/healthz', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
  });

  it('/readyz turns 200 once Salesforce was polled and SMTP verified, with per-rule state and outbox depth', async () => {
    let last = { status: 0, body: '' };
    await waitFor(
      async () => {
        last = await r.get('/readyz');
        return last.status === 200;
      },
      10_000,
      'readiness',
      100,
    ).catch(() => {
      throw new Error(`readyz never 200: ${last.status} ${last.body}`);
    });
    const body = JSON.parse(last.body) as ReadyBody;
    expect(body.status).toBe('ready');
    expect(body.reason).toBeNull();
    expect(body.components.store).toMatchObject({ ok: true, kind: 'sqlite' });
    expect(body.components.salesforce).toMatchObject({ ok: true, state: 'connected' });
    expect(body.components.smtp).toMatchObject({ ok: true, state: 'ok', circuit: 'closed' });
    expect(body.rules).toHaveLength(1);
    expect(body.rules[0]).toMatchObject({ name: 'new-leads', object: 'Lead', lastError: null });
    expect(typeof body.rules[0]!.lastSuccessAt).toBe('string');
    expect(body.rules[0]!.lagSeconds).toBeGreaterThanOrEqual(0);
    expect(body.rules[0]!.lagSeconds).toBeLessThan(5);
    expect(body.outbox).toEqual({ depth: 0, pending: 0, failed: 0, sending: 0 });
  });

  it('/metrics: prom-client text with the documented names; a Lead inserted is counted as seen, enqueued and sent', async () => {
    const lead = r.stack.emu.org.insert('Lead', leadFields(1));
    await r.stack.smtp.waitFor(1, 10_000);
    let text = '';
    await waitFor(
      async () => {
        const res = await r.get('/metrics');
        expect(res.status).toBe(200);
        expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
        text = res.body;
        // outbox depth is cached for ~2 s
        return (
          metricValue(text, 'lead_notifier_notifications_sent_total', '{rule="new-leads"}') === 1 &&
          metricValue(text, 'lead_notifier_outbox_depth', '{state="sent"}') === 1
        );
      },
      10_000,
      'the send in /metrics',
      200,
    ).catch(() => {
      throw new Error(
        `metrics never counted the send:\n${text
          .split('\n')
          .filter((l) => l.includes('lead_notifier_notif'))
          .join('\n')}`,
      );
    });
    expect(lead.Id).toBeTruthy();
    for (const name of [
      'lead_notifier_records_seen_total',
      'lead_notifier_notifications_enqueued_total',
      'lead_notifier_notifications_sent_total',
      'lead_notifier_notifications_retried_total',
      'lead_notifier_notifications_dead_total',
      'lead_notifier_notifications_uncertain_total',
      'lead_notifier_outbox_depth',
      'lead_notifier_poll_duration_seconds',
      'lead_notifier_send_duration_seconds',
      'lead_notifier_salesforce_api_usage_ratio',
      'lead_notifier_salesforce_api_calls_total',
      'lead_notifier_last_successful_poll_timestamp_seconds',
      'lead_notifier_poll_errors_total',
      'lead_notifier_smtp_circuit_open',
      // process defaults, on our own registry with our prefix
      'lead_notifier_process_cpu_seconds_total',
      'lead_notifier_nodejs_eventloop_lag_seconds',
    ]) {
      expect(text, name).toMatch(new RegExp(`^# HELP ${name} \\S`, 'm'));
      expect(text, name).toMatch(new RegExp(`^# TYPE ${name} `, 'm'));
    }
    const rule = '{rule="new-leads"}';
    expect(metricValue(text, 'lead_notifier_records_seen_total', rule)).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, 'lead_notifier_notifications_enqueued_total', rule)).toBe(1);
    expect(metricValue(text, 'lead_notifier_notifications_retried_total', rule)).toBe(0);
    expect(metricValue(text, 'lead_notifier_notifications_dead_total', rule)).toBe(0);
    expect(metricValue(text, 'lead_notifier_send_duration_seconds_count')).toBe(1);
    expect(metricValue(text, 'lead_notifier_poll_duration_seconds_count', rule)).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, 'lead_notifier_salesforce_api_calls_total', rule)).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, 'lead_notifier_smtp_circuit_open')).toBe(0);
    expect(metricValue(text, 'lead_notifier_outbox_depth', '{state="pending"}')).toBe(0);
    const usage = metricValue(text, 'lead_notifier_salesforce_api_usage_ratio')!;
    expect(usage).toBeGreaterThan(0);
    expect(usage).toBeLessThan(1);
    const lastPoll = metricValue(text, 'lead_notifier_last_successful_poll_timestamp_seconds', rule)!;
    expect(Math.abs(lastPoll - Date.now() / 1000)).toBeLessThan(10);
    // HEAD: headers only
    const head = await r.get('/metrics', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
  });

  it('unknown paths 404 JSON; other methods 405 with Allow', async () => {
    const nf = await r.get('/nope?x=1');
    expect(nf.status).toBe(404);
    expect(JSON.parse(nf.body)).toMatchObject({ error: 'not found' });
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS']) {
      const res = await r.get('/readyz', {
        method,
        ...(method === 'POST' ? { body: 'x'.repeat(1000) } : {}),
      });
      expect(res.status, method).toBe(405);
      expect(res.headers.get('allow')).toBe('GET, HEAD');
      expect(JSON.parse(res.body)).toEqual({ error: 'method not allowed' });
    }
    // the query string does not change the route
    expect((await r.get('/healthz?verbose=1')).status).toBe(200);
  });

  it('garbage, huge headers and a slowloris client get an error or a hang-up, and the server keeps serving', async () => {
    const garbage = await rawRequest(
      r.http.port,
      Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x00, 0x0d, 0x0a, 0x0d, 0x0a]),
    );
    expect(garbage).toMatch(/^HTTP\/1\.1 400 /);
    const badLine = await rawRequest(r.http.port, 'GET /healthz HTTP/9.9 garbage\r\n\r\n');
    expect(badLine).toMatch(/^HTTP\/1\.1 (400|505) /);
    const huge = await rawRequest(
      r.http.port,
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`,
    );
    expect(huge).toMatch(/^HTTP\/1\.1 431 /);
    // slowloris: headers never finish; headersTimeout (500 ms here) plus the 1 s check interval
    const started = Date.now();
    const slow = await rawRequest(r.http.port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1', {
      holdOpenMs: 4000,
    });
    expect(Date.now() - started).toBeLessThan(4000);
    expect(slow).not.toContain('200 OK');
    // a client that resets mid-request
    await new Promise<void>((resolve) => {
      const s = connect(r.http.port, '127.0.0.1', () => {
        s.write('GET /readyz HTTP/1.1\r\nHost: x\r\n');
        s.resetAndDestroy();
        resolve();
      });
      s.on('error', () => undefined);
    });
    expect((await r.get('/healthz')).status).toBe(200);
  });

  it('/readyz answers 503 with the reason when SMTP goes away, then when Salesforce queries fail', async () => {
    await waitFor(async () => (await r.get('/readyz')).status === 200, 10_000, 'readiness', 100);
    await r.stack.smtp.close();
    r.stack.smtp.close = async () => undefined; // closed already; stack.close() must not wait on it
    let body = {} as ReadyBody;
    await waitFor(
      async () => {
        const res = await r.get('/readyz');
        body = JSON.parse(res.body) as ReadyBody;
        return res.status === 503;
      },
      10_000,
      'readiness to notice SMTP is gone',
      100,
    );
    expect(body.status).toBe('not ready');
    expect(body.components.smtp.ok).toBe(false);
    expect(body.components.smtp.state).toBe('error');
    expect(body.reason).toMatch(/^smtp: /);
    expect(body.components.salesforce.ok).toBe(true);

    // Salesforce: queries fail, and the server echoes a secret in its error message (a proxy or
    // a misconfigured org can); the reason is shown, the secret is not.
    r.stack.emu.control.addFault({
      method: 'GET',
      path: '/query',
      status: 400,
      errorCode: 'INVALID_FIELD',
      message: `No such column 'x' (client ${CLIENT_SECRET})`,
      count: 1000,
    });
    await waitFor(
      async () => {
        const res = await r.get('/readyz');
        body = JSON.parse(res.body) as ReadyBody;
        return res.status === 503 && body.components.salesforce.ok === false;
      },
      10_000,
      'readiness to notice Salesforce is gone',
      100,
    ).catch((e: unknown) => {
      throw new Error(`${String(e)}\n${JSON.stringify(body)}`);
    });
    expect(body.components.salesforce.reason).toMatch(
      /^rule new-leads: .*No such column 'x' \(client \[redacted\]\)/,
    );
    expect(body.reason).toMatch(/salesforce: rule new-leads: /);
    expect(body.rules[0]!.lastError).toBeTruthy();
    // liveness does not depend on anything
    expect((await r.get('/healthz')).status).toBe(200);
    const text = (await r.get('/metrics')).body;
    expect(metricValue(text, 'lead_notifier_poll_errors_total', '{rule="new-leads"}')).toBeGreaterThanOrEqual(
      1,
    );
  });

  it('no response ever carried a secret (client secret, SMTP password)', () => {
    expect(r.bodies.length).toBeGreaterThan(10);
    for (const b of r.bodies) {
      expect(b).not.toContain(CLIENT_SECRET);
      expect(b).not.toContain(SMTP_PASS);
    }
  });
});

describe('readiness when the store stops taking writes', () => {
  let r: Running | undefined;
  afterAll(async () => {
    await r?.close();
  });

  it('a full disk is a store problem in /readyz and the log, not a Salesforce one, and clears once writes work', async () => {
    r = await startRunning();
    const running = r;
    await waitFor(async () => (await running.get('/readyz')).status === 200, 10_000, 'readiness', 100);
    // SQLite's own "database or disk is full" (SQLITE_FULL), as a full volume gives it: the
    // daemon's connection may not grow the file by another page
    const db = (running.app.store as unknown as { db: DatabaseSync }).db;
    const { page_count } = db.prepare('PRAGMA page_count').get() as { page_count: number };
    db.exec(`PRAGMA max_page_count = ${page_count}`);
    for (let i = 0; i < 200; i++) running.stack.emu.org.insert('Lead', leadFields(i));
    let body = {} as ReadyBody;
    await waitFor(
      async () => {
        const res = await running.get('/readyz');
        body = JSON.parse(res.body) as ReadyBody;
        return res.status === 503;
      },
      15_000,
      'readiness to notice the store',
      100,
    );
    expect(body.components.store.ok).toBe(false);
    expect(body.components.store.reason).toMatch(/^writes failing: .*full/);
    expect(body.reason).toMatch(/^store: writes failing/);
    expect(body.components.salesforce.ok).toBe(true);
    expect(running.logLines.some((l) => l.includes('store write failed'))).toBe(true);
    db.exec('PRAGMA max_page_count = 1073741823');
    await waitFor(async () => (await running.get('/readyz')).status === 200, 15_000, 'readiness again', 100);
    await waitFor(() => running.stack.smtp.messages.length >= 200, 20_000, 'the 200 leads', 100);
  }, 60_000);
});

describe('readiness when Salesforce authentication fails', () => {
  let r: Running | undefined;
  afterAll(async () => {
    await r?.close();
  });

  it('503 with the Salesforce reason and no secret in the body; stopping turns the reason to "stopping"', async () => {
    const badSecret = 'wrong-secret-7Hq2vP';
    r = await startRunning({}, {}, (c) => {
      c.salesforce.auth.clientSecret = badSecret;
    });
    const running = r;
    running.stack.emu.control.expireSessions();
    let res = { status: 0, body: '' };
    let body = {} as ReadyBody;
    await waitFor(
      async () => {
        res = await running.get('/readyz');
        body = JSON.parse(res.body) as ReadyBody;
        return body.components.salesforce.state === 'error';
      },
      10_000,
      'a failed Salesforce login',
      100,
    );
    expect(res.status).toBe(503);
    expect(body.components.salesforce.ok).toBe(false);
    expect(body.reason).toMatch(/salesforce: /);
    expect(res.body).not.toContain(badSecret);
    for (const b of running.bodies) expect(b).not.toContain(SMTP_PASS);

    // stopping: 503 'stopping' at once, whatever the components say
    running.http.markStopping();
    res = await running.get('/readyz');
    expect(res.status).toBe(503);
    expect(JSON.parse(res.body).reason).toBe('stopping');
    expect((await running.get('/healthz')).status).toBe(200);
  });
});

describe('Metrics from App events', () => {
  it('counts dispatch outcomes by kind ("release" is not a retry), the circuit, API usage and render deaths', async () => {
    const m = new Metrics({ rules: ['a'], defaultMetrics: false });
    const base = { id: 1, rule: 'a', recordId: '00Q000000000001AAA', attempts: 1, durationMs: 120 };
    const d = m.events.onDispatch!;
    d({ type: 'outcome', outcome: 'sent', ...base });
    d({ type: 'outcome', outcome: 'retry', failure: 'retry', ...base });
    d({ type: 'outcome', outcome: 'retry', failure: 'retry', ...base, responseCode: 451 });
    d({ type: 'outcome', outcome: 'release', ...base });
    d({ type: 'outcome', outcome: 'dead', failure: 'dead', ...base, responseCode: 550 });
    d({ type: 'outcome', outcome: 'uncertain', failure: 'uncertain', ...base });
    d({ type: 'circuit', state: 'open', reason: '535' });
    m.events.onApiUsage!({ used: 300, limit: 15000 });
    m.events.onPoll!('a', {
      read: 7,
      enqueued: 3,
      sweep: false,
      dead: 1,
      pages: 2,
      apiCalls: 2,
      watermark: '2026-01-01T00:00:00.000Z',
      durationMs: 250,
    });
    m.events.onPollError!('a', new Error('boom'));
    const { body: text, contentType } = await m.text();
    expect(contentType).toMatch(/^text\/plain/);
    const rule = '{rule="a"}';
    expect(metricValue(text, 'lead_notifier_notifications_sent_total', rule)).toBe(1);
    expect(metricValue(text, 'lead_notifier_notifications_retried_total', rule)).toBe(2);
    // one dead by SMTP, one dead at render time
    expect(metricValue(text, 'lead_notifier_notifications_dead_total', rule)).toBe(2);
    expect(metricValue(text, 'lead_notifier_notifications_uncertain_total', rule)).toBe(1);
    // five attempts timed; the release was not an attempt
    expect(metricValue(text, 'lead_notifier_send_duration_seconds_count')).toBe(5);
    expect(metricValue(text, 'lead_notifier_send_duration_seconds_bucket', '{le="0.25"}')).toBe(5);
    expect(metricValue(text, 'lead_notifier_smtp_circuit_open')).toBe(1);
    expect(metricValue(text, 'lead_notifier_salesforce_api_usage_ratio')).toBe(0.02);
    expect(metricValue(text, 'lead_notifier_records_seen_total', rule)).toBe(7);
    expect(metricValue(text, 'lead_notifier_notifications_enqueued_total', rule)).toBe(3);
    expect(metricValue(text, 'lead_notifier_salesforce_api_calls_total', rule)).toBe(2);
    expect(metricValue(text, 'lead_notifier_poll_errors_total', rule)).toBe(1);
    expect(metricValue(text, 'lead_notifier_poll_duration_seconds_sum', rule)).toBe(0.25);
    // our own registry: nothing leaked into prom-client's global one
    const { register } = await import('prom-client');
    expect(register.getSingleMetric('lead_notifier_notifications_sent_total')).toBeUndefined();
    d({ type: 'circuit', state: 'closed' });
    expect(metricValue((await m.text()).body, 'lead_notifier_smtp_circuit_open')).toBe(0);
  });
});
