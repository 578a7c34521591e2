// The Send API end to end: the real worker (createWorker: HTTP server, App, dispatcher, SQLite
// file) against the org emulator and a real smtp-server on loopback, driven by real HTTP clients
// (fetch, undici). Every status, idempotency across a restart, ?wait=true, 1,000 requests from 20
// clients arriving exactly once, the OpenAPI document against the zod schemas.
import { Readable } from 'node:stream';
import { Writable } from 'node:stream';
import { Pool, request as undiciRequest } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createWorker } from '../../src/app/worker.ts';
import type { Worker } from '../../src/app/worker.ts';
import { loadConfig } from '../../src/config/index.ts';
import { componentSchemas, sendEmailSchema } from '../../src/http/send-api-schema.ts';
import { createLogger } from '../../src/util/log.ts';
import { smtpError } from '../helpers/smtp-server.ts';
import type { CaptureServerOptions } from '../helpers/smtp-server.ts';
import { dropSchemas, randomSchema, startTestPostgres, withSchema } from '../helpers/postgres.ts';
import { startStack } from '../helpers/stack.ts';
import type { Stack } from '../helpers/stack.ts';

const TOKEN_A = 'tok-A-7f3b9c1d2e4f5a6b7c8d';
const TOKEN_B = 'tok-B-0a1b2c3d4e5f6a7b8c9d';
const TOKEN_SLOW = 'tok-S-99887766554433221100';

interface Daemon {
  stack: Stack;
  worker: Worker;
  url: string;
  logLines: string[];
  post(
    body: unknown,
    opts?: { token?: string | null; query?: string; headers?: Record<string, string> },
  ): Promise<Reply>;
  get(path: string, token?: string | null): Promise<Reply>;
  stop(): Promise<void>;
}

interface Reply {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
  text: string;
}

const running: { stack?: Stack; workers: Worker[] } = { workers: [] };

afterEach(async () => {
  for (const w of running.workers.splice(0)) await w.stop().catch(() => undefined);
  await running.stack?.close();
  running.stack = undefined;
});

function sendApiConfig(extra: Record<string, unknown> = {}) {
  return {
    tokens: [
      {
        name: 'crm',
        token: TOKEN_A,
        allowFrom: ['*@example.com'],
        allowRecipients: ['*@example.com', '*@*.example.org'],
        defaultFrom: 'Lead desk <leads@example.com>',
      },
      { name: 'billing', token: TOKEN_B, defaultFrom: 'billing@example.com' },
      { name: 'slow', token: TOKEN_SLOW, defaultFrom: 'x@example.com', rate: { requests: 3, per: '1h' } },
    ],
    waitTimeoutMs: 10_000,
    maxBodyBytes: 64 * 1024,
    ...extra,
  };
}

async function startDaemon(
  opts: {
    stack?: Stack;
    smtp?: CaptureServerOptions;
    api?: Record<string, unknown>;
    /** store URL; default the stack's SQLite file */
    store?: string;
  } = {},
): Promise<Daemon> {
  const stack =
    opts.stack ??
    (await startStack({
      ...(opts.smtp ? { smtp: opts.smtp } : {}),
      config: {
        http: { host: '127.0.0.1', port: 0, sendApi: sendApiConfig(opts.api) },
        ...(opts.store ? { store: opts.store } : {}),
      },
    }));
  running.stack = stack;
  const config = await loadConfig(stack.configPath);
  const logLines: string[] = [];
  const logger = createLogger({
    level: 'info',
    format: 'json',
    secrets: [TOKEN_A, TOKEN_B, TOKEN_SLOW],
    destination: new Writable({
      write(chunk: Buffer, _enc, cb) {
        logLines.push(...chunk.toString().split('\n').filter(Boolean));
        cb();
      },
    }),
  });
  const worker = await createWorker(config, { logger });
  running.workers.push(worker);
  await worker.start();
  const url = worker.http!.url;
  const parse = async (res: Response): Promise<Reply> => {
    const text = await res.text();
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      /* not JSON: the test looks at text */
    }
    return { status: res.status, headers: res.headers, body, text };
  };
  return {
    stack,
    worker,
    url,
    logLines,
    async post(body, o = {}) {
      const token = o.token === undefined ? TOKEN_A : o.token;
      const res = await fetch(`${url}/v1/send${o.query ?? ''}`, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          ...(token ? { Authorization: `Bearer ${token}` } : {}),
          ...o.headers,
        },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });
      return parse(res);
    },
    async get(path, token = TOKEN_A) {
      const res = await fetch(url + path, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
      return parse(res);
    },
    async stop() {
      await worker.stop();
      running.workers.splice(running.workers.indexOf(worker), 1);
    },
  };
}

const mail = (extra: Record<string, unknown> = {}) => ({
  To: 'sales@example.com',
  Subject: 'Hello from the API',
  Body: 'plain text body',
  ...extra,
});

async function outboxRows(d: Daemon) {
  return d.worker.app.store!.list({ limit: 10_000 });
}

describe('Send API', () => {
  it('202 queues an ordinary outbox row that the dispatcher sends with every connector field', async () => {
    const d = await startDaemon();
    const pdf = Buffer.from('%PDF-1.4 not really').toString('base64');
    const r = await d.post({
      to: 'Sales Team <sales@example.com>; ops@example.com',
      cc: 'boss@sub.example.org',
      bcc: 'audit@example.com, ops@example.com',
      subject: 'Quarterly =?utf-8?B?SGk=?= numbers\r\nBcc: evil@example.net',
      body: '<p>See <img src="cid:logo1"></p>',
      isHtml: true,
      importance: 'High',
      attachments: [
        { contentData: pdf, contentType: 'application/pdf', fileName: 'q3.pdf\r\nX-Evil: 1' },
        { ContentData: 'iVBORw0KGgo=', ContentType: 'image/png', FileName: 'logo.png', ContentId: 'logo1' },
        {
          ContentData: 'a,b\n1,2\n',
          ContentTransferEncoding: 'none',
          FileName: 'data.csv',
          ContentType: 'text/csv',
        },
      ],
    });
    expect(r.status).toBe(202);
    expect(r.body).toEqual({ id: expect.any(String), state: 'pending' });
    const id = r.body.id as string;
    const [m] = await d.stack.smtp.waitFor(1, 15_000);
    expect(m!.envelope.mailFrom).toBe('leads@example.com');
    expect(m!.envelope.rcptTo.sort()).toEqual(
      ['audit@example.com', 'boss@sub.example.org', 'ops@example.com', 'sales@example.com'].sort(),
    );
    expect(m!.messageId).toBe(`<api.crm.${id}@example.com>`);
    // no header injection: the line break is gone, the text stays text, nobody was added
    expect(m!.parsed.subject).toBe('Quarterly =\u200b?utf-8?B?SGk=\u200b?= numbers Bcc: evil@example.net');
    expect(m!.raw.toString()).not.toMatch(/^Bcc:/im);
    expect(m!.raw.toString()).toContain('cid:logo1'); // mailparser inlines it as a data: URI in .html
    expect(m!.raw.toString()).toMatch(/^Importance: high\r$/m);
    expect(m!.raw.toString()).toMatch(/^X-Priority: 1 \(Highest\)\r$/m);
    const files = new Map(m!.parsed.attachments.map((a) => [a.filename, a]));
    expect([...files.keys()].sort()).toEqual(['data.csv', 'logo.png', 'q3.pdf X-Evil: 1']);
    expect(m!.raw.toString()).not.toMatch(/^X-Evil:/im);
    expect(files.get('q3.pdf X-Evil: 1')!.content.toString()).toBe('%PDF-1.4 not really');
    expect(files.get('logo.png')!.contentId).toBe('<logo1>');
    expect(files.get('data.csv')!.content.toString()).toBe('a,b\n1,2\n');
    // the row is an ordinary email row of rule api:crm
    const rows = await outboxRows(d);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ rule: 'api:crm', recordId: id });
    // its state, never its body or recipients
    await expect
      .poll(async () => (await d.get(`/v1/messages/${id}`)).body.state, { timeout: 10_000 })
      .toBe('sent');
    const st = await d.get(`/v1/messages/${id}`);
    expect(st.status).toBe(200);
    expect(st.body).toMatchObject({
      id,
      state: 'sent',
      attempts: 1,
      response: expect.stringMatching(/^250/),
    });
    expect(Object.keys(st.body).sort()).toEqual(
      ['attempts', 'createdAt', 'id', 'nextAttemptAt', 'response', 'sentAt', 'state', 'updatedAt'].sort(),
    );
    expect(st.text).not.toContain('sales@example.com');
    expect(st.text).not.toContain('Quarterly');
  });

  it('400 with field errors for each kind of bad input, never a 500, never a row', async () => {
    const d = await startDaemon();
    const cases: [string, () => Promise<Reply>, string][] = [
      ['malformed JSON', () => d.post('{"To": "a@example.com",'), ''],
      ['not an object', () => d.post('[1, 2]'), ''],
      ['unknown field', () => d.post(mail({ Priority: 'urgent' })), 'Priority'],
      ['wrong type', () => d.post(mail({ IsHtml: 'yes' })), 'IsHtml'],
      ['bad importance', () => d.post(mail({ Importance: 'Urgent' })), 'Importance'],
      ['bad address in a ; list', () => d.post(mail({ To: 'sales@example.com; not an address' })), 'To'],
      [
        'header injection in a list',
        () => d.post(mail({ CC: 'a@example.com\r\nBcc: evil@example.net' })),
        'CC',
      ],
      ['no To', () => d.post({ Subject: 's', Body: 'b' }), 'To'],
      ['empty To', () => d.post(mail({ To: ' ; ' })), 'To'],
      ['empty Subject', () => d.post(mail({ Subject: '' })), 'Subject'],
      [
        'base64 that does not decode',
        () => d.post(mail({ Attachments: [{ ContentData: 'abc$%^', FileName: 'x.bin' }] })),
        'Attachments[0].ContentData',
      ],
      [
        'attachment without FileName',
        () => d.post(mail({ Attachments: [{ ContentData: 'AAAA' }] })),
        'Attachments[0].FileName',
      ],
      [
        'unknown attachment field',
        () => d.post(mail({ Attachments: [{ ContentData: 'AAAA', FileName: 'a', Size: 3 }] })),
        'Attachments[0].Size',
      ],
      ['the same field twice', () => d.post(mail({ subject: 'again' })), 'Subject'],
      ['a From that is two addresses', () => d.post(mail({ From: 'a@example.com, b@example.com' })), 'From'],
      [
        'missing Content-Type',
        async () => {
          const res = await fetch(`${d.url}/v1/send`, {
            method: 'POST',
            headers: { Authorization: `Bearer ${TOKEN_A}` },
            body: new Blob([JSON.stringify(mail())]), // a Blob without a type sends no Content-Type
          });
          return {
            status: res.status,
            headers: res.headers,
            body: (await res.json()) as Record<string, unknown>,
            text: '',
          };
        },
        'Content-Type',
      ],
      [
        'text/plain Content-Type',
        () => d.post(JSON.stringify(mail()), { headers: { 'Content-Type': 'text/plain' } }),
        'Content-Type',
      ],
      [
        'bad Idempotency-Key',
        () => d.post(mail(), { headers: { 'Idempotency-Key': 'has spaces in it' } }),
        'Idempotency-Key',
      ],
    ];
    for (const [what, call, field] of cases) {
      const r = await call();
      expect(r.status, what).toBe(400);
      const errors = r.body.errors as { field: string; message: string }[];
      expect(errors.length, what).toBeGreaterThan(0);
      expect(
        errors.map((e) => e.field),
        what,
      ).toContain(field);
      for (const e of errors) expect(e.message, what).toEqual(expect.any(String));
    }
    expect(await outboxRows(d)).toHaveLength(0);
    const text = await metricsText(d);
    expect(text).toMatch(/send_api_requests_total\{token="crm",route="send",status="400"\} \d+/);
    expect(text).not.toMatch(/status="500"/);
    expect(d.logLines.join('\n')).not.toContain('internal error');
  });

  it('From: required without a defaultFrom; 403 outside allowFrom / allowRecipients', async () => {
    const d = await startDaemon({
      api: {
        tokens: [
          { name: 'crm', token: TOKEN_A, allowFrom: ['*@example.com'], allowRecipients: ['*@example.com'] },
        ],
      },
    });
    const noFrom = await d.post(mail());
    expect(noFrom.status).toBe(400);
    expect(noFrom.body.errors).toEqual([{ field: 'From', message: expect.stringContaining('required') }]);
    const badFrom = await d.post(mail({ From: 'ceo@evil.example.net' }));
    expect(badFrom.status).toBe(403);
    expect(badFrom.body.error).toContain('ceo@evil.example.net');
    const badRcpt = await d.post(mail({ From: 'a@example.com', Bcc: 'leak@elsewhere.example.net' }));
    expect(badRcpt.status).toBe(403);
    expect(badRcpt.body.error).toContain('leak@elsewhere.example.net');
    expect(await outboxRows(d)).toHaveLength(0);
    expect((await d.post(mail({ From: 'a@example.com' }))).status).toBe(202);
  });

  it('401 with WWW-Authenticate for a missing or unknown token; 404 for unknown paths and other tokens\u2019 messages', async () => {
    const d = await startDaemon();
    for (const token of [null, 'wrong-token-of-some-length', `${TOKEN_A}x`]) {
      const r = await d.post(mail(), { token });
      expect(r.status).toBe(401);
      expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/);
    }
    const raw = await fetch(`${d.url}/v1/send`, {
      method: 'POST',
      headers: {
        Authorization: `Basic ${Buffer.from(`x:${TOKEN_A}`).toString('base64')}`,
        'Content-Type': 'application/json',
      },
      body: JSON.stringify(mail()),
    });
    expect(raw.status).toBe(401);
    expect((await d.get('/v1/messages/whatever', null)).status).toBe(401);
    expect((await d.get('/v1/nothing-here')).status).toBe(404);

    const a = await d.post(mail());
    const b = await d.post(mail(), { token: TOKEN_B });
    expect(a.status).toBe(202);
    expect(b.status).toBe(202);
    expect((await d.get(`/v1/messages/${a.body.id as string}`)).status).toBe(200);
    const cross = await d.get(`/v1/messages/${a.body.id as string}`, TOKEN_B);
    expect(cross.status).toBe(404);
    expect(cross.text).not.toContain('sales@example.com');
    expect((await d.get(`/v1/messages/${b.body.id as string}`, TOKEN_B)).status).toBe(200);
    expect((await d.get(`/v1/messages/${b.body.id as string}`)).status).toBe(404);
    expect((await d.get('/v1/messages/no-such-id')).status).toBe(404);
    expect((await d.get('/v1/messages/%E0%A4%A')).status).toBe(404); // malformed escape: still no 500
    // other methods: 405 with Allow
    const put = await fetch(`${d.url}/v1/send`, {
      method: 'PUT',
      headers: { Authorization: `Bearer ${TOKEN_A}` },
    });
    expect(put.status).toBe(405);
    expect(put.headers.get('allow')).toBe('POST');
    await put.text();
  });

  it('413 before the body is read whole: by Content-Length, and by counting a chunked body', async () => {
    const d = await startDaemon();
    const big = JSON.stringify(mail({ Body: 'x'.repeat(200 * 1024) }));
    const r1 = await undiciRequest(`${d.url}/v1/send`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${TOKEN_A}`, 'Content-Type': 'application/json' },
      body: big,
    });
    expect(r1.statusCode).toBe(413);
    expect(r1.headers.connection).toBe('close');
    await r1.body.text();
    // chunked: no Content-Length, 4 MB offered in 16 KB chunks; only what came before the limit is read
    let offered = 0;
    const stream = new Readable({
      read() {
        if (offered >= 4 * 1024 * 1024) return this.push(null);
        offered += 16 * 1024;
        this.push(Buffer.alloc(16 * 1024, 0x61));
      },
    });
    const r2 = await undiciRequest(`${d.url}/v1/send`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${TOKEN_A}`, 'Content-Type': 'application/json' },
      body: stream,
    }).catch((err: unknown) => err);
    // the reply gets out before the socket closes: the rest of the body is never read
    expect(r2).not.toBeInstanceOf(Error);
    expect((r2 as { statusCode: number }).statusCode).toBe(413);
    await (r2 as { body: { text(): Promise<string> } }).body.text();
    await expect
      .poll(() => metricsText(d))
      .toMatch(/lead_notifier_send_api_requests_total\{token="crm",route="send",status="413"\} 2/);
    expect(offered).toBeLessThan(4 * 1024 * 1024);
    expect(await outboxRows(d)).toHaveLength(0);
    // the daemon is fine afterwards
    expect((await d.post(mail())).status).toBe(202);
  });

  it('429 with Retry-After over the token rate, per token', async () => {
    const d = await startDaemon();
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++)
      statuses.push((await d.post(mail({ From: 'x@example.com' }), { token: TOKEN_SLOW })).status);
    expect(statuses).toEqual([202, 202, 202, 429]);
    const r = await d.post(mail(), { token: TOKEN_SLOW });
    expect(r.status).toBe(429);
    const retryAfter = Number(r.headers.get('retry-after'));
    // 3 an hour: the next one in about 20 minutes
    expect(retryAfter).toBeGreaterThan(60);
    expect(retryAfter).toBeLessThanOrEqual(1200);
    // another token is not affected
    expect((await d.post(mail())).status).toBe(202);
  });

  it('409 for a reused Idempotency-Key with another body; the same key and body replays, across a restart', async () => {
    const d = await startDaemon();
    const body = mail({ Subject: 'once only' });
    const key = { 'Idempotency-Key': 'order-4711' };
    const first = await d.post(body, { headers: key });
    expect(first.status).toBe(202);
    // the same JSON value, written differently (key order, spacing): a replay
    const reordered = `{ "Body": "plain text body", "Subject": "once only",   "To": "sales@example.com" }`;
    const again = await d.post(reordered, { headers: key });
    expect(again.status).toBe(202);
    expect(again.body.id).toBe(first.body.id);
    const other = await d.post(mail({ Subject: 'another' }), { headers: key });
    expect(other.status).toBe(409);
    // keys are scoped to the token: the same key with token B is new
    const b = await d.post(body, { token: TOKEN_B, headers: key });
    expect(b.status).toBe(202);
    expect(b.body.id).not.toBe(first.body.id);
    await d.stack.smtp.waitFor(2, 15_000);

    // restart on the same store file
    await d.stop();
    const d2 = await startDaemon({ stack: d.stack });
    const replay = await d2.post(body, { headers: key });
    expect(replay.status).toBe(202);
    expect(replay.body).toEqual({ id: first.body.id, state: 'sent' });
    expect((await d2.post(mail({ Subject: 'another' }), { headers: key })).status).toBe(409);
    const waited = await d2.post(body, { headers: key, query: '?wait=true' });
    expect(waited.status).toBe(200);
    expect(waited.body).toMatchObject({ id: first.body.id, state: 'sent' });
    await new Promise((r) => setTimeout(r, 1500)); // a second send, if any, would have arrived by now
    const onceOnly = d2.stack.smtp.messages.filter((m) => m.parsed.subject === 'once only');
    expect(onceOnly).toHaveLength(2); // one for token crm, one for token billing
    expect((await outboxRows(d2)).filter((r) => r.rule === 'api:crm')).toHaveLength(1);
  });

  it('?wait=true: 200 once the SMTP server accepted it, 502 dead, 504 unknown, 202 when the wait runs out', async () => {
    let mode: 'ok' | 'reject' | 'drop' | 'slow' = 'ok';
    const d = await startDaemon({
      api: { waitTimeoutMs: 1500 },
      smtp: {
        onRcpt: () => {
          if (mode === 'reject') throw smtpError(550, '5.1.1 mailbox unavailable');
        },
        onData: async (ctx) => {
          if (mode === 'drop') {
            ctx.destroySocket();
            return 'drop';
          }
          if (mode === 'slow') await new Promise((r) => setTimeout(r, 3000));
        },
      },
    });
    const sent = await d.post(mail(), { query: '?wait=true' });
    expect(sent.status).toBe(200);
    expect(sent.body).toEqual({
      id: expect.any(String),
      state: 'sent',
      response: expect.stringMatching(/^250/),
    });
    expect(d.stack.smtp.byMessageId(`<api.crm.${sent.body.id as string}@example.com>`)).toHaveLength(1);

    mode = 'reject';
    const dead = await d.post(mail(), { query: '?wait=true' });
    expect(dead.status).toBe(502);
    expect(dead.body).toMatchObject({ state: 'dead', response: expect.stringContaining('550') });

    mode = 'drop';
    const unknown = await d.post(mail(), { query: '?wait=true' });
    expect(unknown.status).toBe(504);
    expect(unknown.body).toMatchObject({ state: 'unknown', response: expect.any(String) });

    mode = 'slow';
    const slow = await d.post(mail(), { query: '?wait=true' });
    expect(slow.status).toBe(202);
    expect(['pending', 'sending']).toContain(slow.body.state);
    mode = 'ok';
    await expect
      .poll(async () => (await d.get(`/v1/messages/${slow.body.id as string}`)).body.state, {
        timeout: 15_000,
      })
      .toBe('sent');

    // metrics per token: names only, never the token's value
    const text = await metricsText(d);
    expect(text).toMatch(/lead_notifier_send_api_requests_total\{token="crm",route="send",status="200"\} 1/);
    expect(text).toMatch(/lead_notifier_send_api_requests_total\{token="crm",route="send",status="502"\} 1/);
    expect(text).toMatch(/lead_notifier_send_api_queued_total\{token="crm"\} 4/);
    expect(text).toMatch(/lead_notifier_send_api_sent_total\{token="crm"\} 2/);
    expect(text).toMatch(/lead_notifier_send_api_dead_total\{token="crm"\} 1/);
    expect(text).toMatch(/lead_notifier_send_api_queued_total\{token="billing"\} 0/);
    for (const t of [TOKEN_A, TOKEN_B, TOKEN_SLOW]) {
      expect(text).not.toContain(t);
      expect(d.logLines.join('\n')).not.toContain(t);
    }
  });

  it('503 when the store is not usable', async () => {
    const d = await startDaemon();
    await d.worker.app.stop(1000); // store closed; HTTP still up, as between drain and close
    const r = await d.post(mail());
    expect(r.status).toBe(503);
    expect((await d.get('/v1/messages/x')).status).toBe(503);
  });

  it('1,000 requests from 20 concurrent keep-alive clients: each accepted once and arriving exactly once', async () => {
    const d = await startDaemon({
      api: {
        tokens: [
          {
            name: 'crm',
            token: TOKEN_A,
            defaultFrom: 'leads@example.com',
            rate: { requests: 100_000, per: '1m' },
          },
        ],
      },
    });
    const pool = new Pool(d.url, { connections: 20, pipelining: 1 });
    try {
      const ids: string[] = [];
      let next = 0;
      const client = async () => {
        while (next < 1000) {
          const i = next++;
          // every tenth request sent twice with its Idempotency-Key: still once
          const headers: Record<string, string> = {
            Authorization: `Bearer ${TOKEN_A}`,
            'Content-Type': 'application/json',
            ...(i % 10 === 0 ? { 'Idempotency-Key': `bulk-${i}` } : {}),
          };
          const body = JSON.stringify(mail({ Subject: `bulk ${i}` }));
          const r = await pool.request({ path: '/v1/send', method: 'POST', headers, body });
          const reply = (await r.body.json()) as { id: string };
          expect(r.statusCode).toBe(202);
          ids.push(reply.id);
          if (i % 10 === 0) {
            const r2 = await pool.request({ path: '/v1/send', method: 'POST', headers, body });
            expect(r2.statusCode).toBe(202);
            expect(((await r2.body.json()) as { id: string }).id).toBe(reply.id);
          }
        }
      };
      await Promise.all(Array.from({ length: 20 }, client));
      expect(new Set(ids).size).toBe(1000);
      const got = await d.stack.smtp.waitFor(1000, 120_000);
      await new Promise((r) => setTimeout(r, 1000));
      expect(d.stack.smtp.messages).toHaveLength(1000);
      const subjects = new Set(got.map((m) => m.parsed.subject));
      expect(subjects.size).toBe(1000);
      const messageIds = new Set(d.stack.smtp.messages.map((m) => m.messageId));
      expect(messageIds).toEqual(new Set(ids.map((id) => `<api.crm.${id}@example.com>`)));
    } finally {
      await pool.close();
    }
  }, 180_000);

  it('GET /v1/openapi.json: an OpenAPI 3.1 document, no token needed, generated from the zod schemas', async () => {
    const d = await startDaemon();
    const r = await d.get('/v1/openapi.json', null);
    expect(r.status).toBe(200);
    const doc = r.body as {
      openapi: string;
      jsonSchemaDialect: string;
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
      components: { schemas: Record<string, Record<string, unknown>> };
    };
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.jsonSchemaDialect).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(Object.keys(doc.paths).sort()).toEqual(['/v1/messages/{id}', '/v1/openapi.json', '/v1/send']);
    for (const s of ['200', '202', '400', '401', '403', '409', '413', '429', '500', '503'])
      expect(Object.keys(doc.paths['/v1/send']!.post!.responses)).toContain(s);
    // exactly what z.toJSONSchema makes of the schemas the server validates with
    expect(doc.components.schemas).toEqual(JSON.parse(JSON.stringify(componentSchemas())));
    const send = doc.components.schemas.SendEmail!;
    expect(send).toEqual(
      JSON.parse(
        JSON.stringify({
          ...z.toJSONSchema(sendEmailSchema, { io: 'input', target: 'draft-2020-12' }),
          $schema: undefined,
        }),
      ),
    );
    expect(send.required).toEqual(['To', 'Subject']);
    expect(send.additionalProperties).toBe(false);
    expect(Object.keys(send.properties as object).sort()).toEqual(
      ['Attachments', 'Bcc', 'Body', 'CC', 'From', 'Importance', 'IsHtml', 'Subject', 'To'].sort(),
    );
    // every $ref points at a component that exists
    const refs = JSON.stringify(doc).match(/"\$ref":"[^"]+"/g) ?? [];
    expect(refs.length).toBeGreaterThan(5);
    for (const ref of refs) {
      const name = /#\/components\/schemas\/(\w+)/.exec(ref)?.[1];
      expect(name && doc.components.schemas[name], ref).toBeTruthy();
    }
  });

  it('PostgreSQL, two replicas: the same Idempotency-Key at both at once is one message', async () => {
    const pgServer = await startTestPostgres();
    const schema = randomSchema('t_send_api');
    try {
      const a = await startDaemon({ store: withSchema(pgServer.url, schema) });
      // a second replica: its own worker (App, dispatcher, HTTP port) on the same database
      const b = await startDaemon({ stack: a.stack });
      expect(b.url).not.toBe(a.url);
      const body = mail({ Subject: 'replicated once' });
      const key = { 'Idempotency-Key': 'shared-key-1' };
      const replies = await Promise.all(
        Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).post(body, { headers: key })),
      );
      expect(replies.map((r) => r.status)).toEqual(Array(10).fill(202));
      expect(new Set(replies.map((r) => r.body.id)).size).toBe(1);
      // without a key, each request is its own message, whichever replica takes it
      const plain = await Promise.all(
        Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).post(mail({ Subject: `plain ${i}` }))),
      );
      expect(plain.map((r) => r.status)).toEqual(Array(10).fill(202));
      // either replica reports the message (the store is shared), to its token only
      const id = replies[0]!.body.id as string;
      expect((await b.get(`/v1/messages/${id}`)).status).toBe(200);
      expect((await a.get(`/v1/messages/${id}`, TOKEN_B)).status).toBe(404);
      await a.stack.smtp.waitFor(11, 30_000);
      await new Promise((r) => setTimeout(r, 1500));
      expect(a.stack.smtp.messages.filter((m) => m.parsed.subject === 'replicated once')).toHaveLength(1);
      expect(a.stack.smtp.messages).toHaveLength(11);
    } finally {
      for (const w of running.workers.splice(0)) await w.stop().catch(() => undefined);
      await dropSchemas(pgServer.url, schema);
      await pgServer.stop();
    }
  }, 60_000);
});

async function metricsText(d: Daemon): Promise<string> {
  const res = await fetch(`${d.url}/metrics`);
  return res.text();
}
