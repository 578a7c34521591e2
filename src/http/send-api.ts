// The Send API: the SMTP connector's Send Email as an HTTP action, served by us (DESIGN.md "Send
// Email as an HTTP action"). POST /v1/send turns a JSON body into an ordinary outbox row (rule
// api:<token name>) that the dispatcher sends like any other; GET /v1/messages/{id} reports its
// state; GET /v1/openapi.json describes it all (send-api-schema.ts). Mounted by http/server.ts.
// Reading and checking the body, and building the message: send-api-input.ts.
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { SendApiConfig, SendApiTokenConfig } from '../config/index.ts';
import type { DispatchEvent } from '../delivery/dispatcher.ts';
import { isStoreFailure, StoreClosedError } from '../store/index.ts';
import type { OutboxRow, SendApiOutcome, SendApiRequest, Store } from '../store/index.ts';
import { compileAllowList, parseMailboxes } from '../templates/recipients.ts';
import type { Mailbox } from '../templates/recipients.ts';
import { parseDuration } from '../util/duration.ts';
import { coerceError } from '../util/errors.ts';
import type { Metrics } from './metrics.ts';
import {
  badRequest,
  buildMessage,
  canonicalJson,
  readJson,
  Refusal,
  unreadBody,
  validate,
} from './send-api-input.ts';
import type { Token } from './send-api-input.ts';
import { openApiDocument } from './send-api-schema.ts';

/** What the Send API needs of the App: the store once open, and a way to wake the dispatcher. */
export interface SendApiApp {
  readonly store: Store | undefined;
  readonly isStopping: boolean;
  readonly dispatcher: { kick(): void } | undefined;
}

export type JsonReply = (
  res: ServerResponse,
  status: number,
  value: unknown,
  extra?: Record<string, string>,
) => void;

export interface SendApiOptions {
  config: SendApiConfig;
  app: SendApiApp;
  logger: Logger;
  metrics?: Metrics;
  /** the program's version, for the OpenAPI document */
  version: string;
  /** largest group commit (default 256 requests) */
  maxBatch?: number;
}

export interface SendApi {
  readonly paths: string[];
  /** true for the paths this module answers (everything under /v1/) */
  handles(path: string): boolean;
  handle(req: IncomingMessage, res: ServerResponse, url: URL, json: JsonReply): Promise<void>;
  /** dispatcher outcomes: lets ?wait=true answer as soon as the outcome is written */
  onDispatch(e: DispatchEvent): void;
  /** ends every ?wait=true wait now (answered 202) */
  close(): void;
}

/** The row states that end a ?wait=true, and the status each is answered with. */
const FINAL_STATUS: Partial<Record<OutboxRow['state'], number>> = { sent: 200, dead: 502, unknown: 504 };

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;
const PATHS = ['/v1/send', '/v1/messages/{id}', '/v1/openapi.json'];
const UNAUTHENTICATED = '-'; // the metrics label of requests without a known token (names cannot be '-')

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest();

export function createSendApi(o: SendApiOptions): SendApi {
  const log = o.logger.child({ component: 'send-api' });
  const tokens = o.config.tokens.map(compileToken);
  const openApi = JSON.stringify(openApiDocument(o.version));
  const batcher = new SendBatcher(() => o.app.store, o.maxBatch ?? 256);
  const waiters = new Waiters();
  o.metrics?.initSendApiTokens(tokens.map((t) => t.config.name));

  /** Constant time in the presented token: every configured digest is compared, no early exit. */
  const authenticate = (req: IncomingMessage): Token | undefined => {
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.headers.authorization ?? '');
    if (!m) return undefined;
    const presented = sha256(m[1]!);
    let found: Token | undefined;
    for (const t of tokens) if (timingSafeEqual(presented, t.digest) && !found) found = t;
    return found;
  };

  const count = (token: string, route: string, status: number) =>
    o.metrics?.sendApiRequests.inc({ token, route, status });

  const storeOrRefuse = (): Store => {
    const store = o.app.store;
    if (!store || o.app.isStopping) throw new Refusal(503, { error: 'the store is not available' });
    return store;
  };

  async function send(req: IncomingMessage, token: Token, url: URL): Promise<[number, unknown]> {
    storeOrRefuse();
    const raw = await readJson(req, o.config.maxBodyBytes);
    const input = validate(raw);
    const keyHeader = req.headers['idempotency-key'];
    const key = typeof keyHeader === 'string' ? keyHeader : undefined;
    if (key !== undefined && !IDEMPOTENCY_KEY.test(key))
      throw badRequest([
        { field: 'Idempotency-Key', message: 'must be 1 to 255 printable ASCII characters' },
      ]);
    // a key names the message: the same key always gives the same id (and the outbox row's key)
    const id = key === undefined ? randomUUID() : keyId(token.config.name, key);
    const message = buildMessage(input, token, id);
    const request: SendApiRequest = {
      id,
      token: token.config.name,
      idempotencyKey: key ?? null,
      // only a key is ever compared with a later body: without one, no hash is worth its cost
      bodyHash: key === undefined ? '-' : sha256(canonicalJson(raw)).toString('hex'),
      row: {
        rule: `api:${token.config.name}`,
        object: 'SendApi',
        recordId: id,
        recordCreatedDate: new Date().toISOString(),
        message,
        state: 'pending',
      },
    };
    const outcome = await batcher.add(request);
    if (outcome.kind === 'conflict')
      throw new Refusal(409, { error: 'this Idempotency-Key was used with another body' });
    if (outcome.kind === 'created') {
      o.metrics?.sendApiQueued.inc({ token: token.config.name });
      o.app.dispatcher?.kick();
    }
    const wait = url.searchParams.get('wait');
    if (wait === 'true' || wait === '1') {
      const row = await waitForFinal(outcome.outboxId, o.config.waitTimeoutMs);
      const status = row ? FINAL_STATUS[row.state] : undefined;
      if (row && status !== undefined) {
        const response = row.state === 'sent' ? (row.result?.response ?? null) : row.lastError;
        return [status, { id: outcome.id, state: row.state, response }];
      }
      return [202, { id: outcome.id, state: row?.state ?? 'pending' }];
    }
    // a replay answers as the first request did: its id, and the state it has now
    const state =
      outcome.kind === 'replay'
        ? ((await storeOrRefuse().get(outcome.outboxId))?.state ?? 'pending')
        : 'pending';
    return [202, { id: outcome.id, state }];
  }

  /** the row once it is sent, dead or unknown, or as it is when the time is up */
  async function waitForFinal(outboxId: number, timeoutMs: number): Promise<OutboxRow | null> {
    const deadline = Date.now() + timeoutMs;
    let pause = 50;
    let row: OutboxRow | null = null;
    for (;;) {
      try {
        row = await storeOrRefuse().get(outboxId);
      } catch (err) {
        // accepted and committed already: a store that goes away now (shutdown) ends the wait, 202
        log.debug({ err: coerceError(err) }, 'send API: wait ended by the store');
        return row;
      }
      if (!row || FINAL_STATUS[row.state] !== undefined) return row;
      const left = deadline - Date.now();
      if (left <= 0 || waiters.closed) return row;
      // an outcome event for this row: its write follows within a dispatcher tick, look again soon
      const nudged = await waiters.wait(outboxId, Math.min(left, pause));
      pause = nudged ? 5 : Math.min(250, pause * 2);
    }
  }

  async function message(token: Token, rawId: string): Promise<[number, unknown]> {
    let id: string;
    try {
      id = decodeURIComponent(rawId);
    } catch {
      return [404, { error: 'no such message' }]; // malformed %-escapes name no message
    }
    const m = await storeOrRefuse().getSendApiMessage(token.config.name, id);
    if (!m || !m.row) return [404, { error: 'no such message' }];
    const r = m.row;
    return [
      200,
      {
        id: m.id,
        state: r.state,
        attempts: r.attempts,
        response: r.state === 'sent' ? (r.result?.response ?? null) : r.lastError,
        createdAt: m.createdAt,
        updatedAt: r.updatedAt,
        sentAt: r.sentAt,
        nextAttemptAt: r.nextAttemptAt,
      },
    ];
  }

  return {
    paths: PATHS,
    handles: (path) => path.startsWith('/v1/'),
    onDispatch(e) {
      if (e.type !== 'outcome') return;
      if (e.outcome === 'sent' || e.outcome === 'dead' || e.outcome === 'uncertain') waiters.nudge(e.id);
    },
    close() {
      waiters.close();
    },
    async handle(req, res, url, json) {
      const path = url.pathname;
      const method = req.method ?? 'GET';
      let label = UNAUTHENTICATED;
      const route = path === '/v1/send' ? 'send' : path.startsWith('/v1/messages/') ? 'messages' : 'other';
      try {
        if (path === '/v1/openapi.json') {
          if (method !== 'GET' && method !== 'HEAD') throw methodNotAllowed('GET, HEAD');
          res.writeHead(200, {
            'Content-Type': 'application/json; charset=utf-8',
            'Content-Length': Buffer.byteLength(openApi),
            'Cache-Control': 'no-store',
            'X-Content-Type-Options': 'nosniff',
            ...unreadBody(req),
          });
          res.end(openApi);
          return;
        }
        const messageId = /^\/v1\/messages\/([^/]+)$/.exec(path)?.[1];
        if (path !== '/v1/send' && messageId === undefined)
          throw new Refusal(404, { error: 'not found', paths: PATHS });
        const allow = path === '/v1/send' ? 'POST' : 'GET, HEAD';
        if (!allow.split(', ').includes(method)) throw methodNotAllowed(allow);
        const token = authenticate(req);
        if (!token) {
          throw new Refusal(
            401,
            { error: 'missing or unknown bearer token' },
            { 'WWW-Authenticate': 'Bearer realm="lead-notifier"' },
          );
        }
        label = token.config.name;
        const retryAfter = takeRate(token.bucket);
        if (retryAfter > 0) {
          throw new Refusal(
            429,
            { error: 'over the rate of this token' },
            { 'Retry-After': String(retryAfter) },
          );
        }
        let status: number;
        let body: unknown;
        if (messageId !== undefined) [status, body] = await message(token, messageId);
        else [status, body] = await send(req, token, url);
        count(label, route, status);
        json(res, status, body, unreadBody(req));
      } catch (err) {
        if (err instanceof Refusal) {
          count(label, route, err.status);
          json(res, err.status, err.body, { ...err.headers, ...unreadBody(req) });
          return;
        }
        if (isStoreFailure(err) || err instanceof StoreClosedError) {
          log.warn({ err: coerceError(err), path }, 'send API: store not usable');
          count(label, route, 503);
          json(res, 503, { error: 'the store is not available' }, unreadBody(req));
          return;
        }
        // never the cause in the reply: it may quote what the client sent, or worse
        const errorId = randomUUID();
        log.error({ err: coerceError(err), errorId, path }, 'send API: internal error');
        count(label, route, 500);
        if (!res.headersSent) json(res, 500, { errorId });
        else res.destroy();
      }
    },
  };

  function methodNotAllowed(allow: string): Refusal {
    return new Refusal(405, { error: 'method not allowed' }, { Allow: allow });
  }

  /** the ONE place a token's config becomes its checks (allow-lists compiled, defaultFrom parsed) */
  function compileToken(t: SendApiTokenConfig, i: number): Token {
    const at = `http.sendApi.tokens[${i}]`;
    const compile = (patterns: string[] | undefined, key: string) => {
      try {
        return compileAllowList(patterns);
      } catch (err) {
        throw new Error(`${at}.${key}: ${coerceError(err).message.replace(/^allowRecipients/, '')}`, {
          cause: err,
        });
      }
    };
    const allowFrom = compile(t.allowFrom, 'allowFrom');
    let defaultFrom: Mailbox | undefined;
    if (t.defaultFrom !== undefined) {
      const boxes = parseMailboxes(t.defaultFrom);
      if (boxes.length !== 1) throw new Error(`${at}.defaultFrom: must be exactly one address`);
      defaultFrom = boxes[0]!;
      if (!allowFrom(defaultFrom.address))
        throw new Error(`${at}.defaultFrom: ${defaultFrom.address} is not allowed by the token's allowFrom`);
    }
    const perMs = parseDuration(t.rate.per);
    return {
      config: t,
      digest: sha256(t.token),
      allowFrom,
      allowRecipient: compile(t.allowRecipients, 'allowRecipients'),
      defaultFrom,
      bucket: { tokens: t.rate.requests, at: Date.now(), capacity: t.rate.requests, perMs },
    };
  }
}

/**
 * A token bucket of `capacity` requests refilled over `perMs`. Returns 0 when a request may go
 * now (and takes it), else the whole seconds until one may (Retry-After).
 */
function takeRate(b: Token['bucket']): number {
  const now = Date.now();
  const rate = b.capacity / b.perMs;
  b.tokens = Math.min(b.capacity, b.tokens + (now - b.at) * rate);
  b.at = now;
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return 0;
  }
  return Math.max(1, Math.ceil((1 - b.tokens) / rate / 1000));
}

/** the public id of a token's Idempotency-Key: a UUID-shaped sha256, the same on every replica */
function keyId(token: string, key: string): string {
  const h = createHash('sha256').update(`${token}\n${key}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/**
 * Groups concurrent requests into one store transaction: requests arriving while a commit runs (or
 * in the same turn of the event loop) go together in the next. Each caller is answered only after
 * its commit, so a 202 is always durable.
 */
class SendBatcher {
  private queue: {
    request: SendApiRequest;
    resolve: (o: SendApiOutcome) => void;
    reject: (e: unknown) => void;
  }[] = [];
  private scheduled = false;
  private running = false;

  private readonly store: () => Store | undefined;
  private readonly maxBatch: number;

  constructor(store: () => Store | undefined, maxBatch: number) {
    this.store = store;
    this.maxBatch = maxBatch;
  }

  add(request: SendApiRequest): Promise<SendApiOutcome> {
    return new Promise((resolve, reject) => {
      this.queue.push({ request, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.running) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.running = true;
    const batch = this.queue.splice(0, this.maxBatch);
    try {
      const store = this.store();
      if (!store) throw new StoreClosedError('the', 'enqueueSendRequests');
      const outcomes = await store.enqueueSendRequests(batch.map((b) => b.request));
      batch.forEach((b, i) => b.resolve(outcomes[i]!));
    } catch (err) {
      for (const b of batch) b.reject(err);
    } finally {
      this.running = false;
      if (this.queue.length > 0) this.schedule();
    }
  }
}

/** ?wait=true callers by outbox id, woken when the dispatcher reports a final outcome */
class Waiters {
  private readonly byId = new Map<number, Set<(nudged: boolean) => void>>();
  closed = false;

  /** resolves true when nudged, false after ms */
  wait(id: number, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      let set = this.byId.get(id);
      if (!set) this.byId.set(id, (set = new Set()));
      const done = (nudged: boolean) => {
        clearTimeout(timer);
        set.delete(done);
        if (set.size === 0 && this.byId.get(id) === set) this.byId.delete(id);
        resolve(nudged);
      };
      const timer = setTimeout(() => done(false), ms);
      set.add(done);
    });
  }

  nudge(id: number): void {
    for (const w of [...(this.byId.get(id) ?? [])]) w(true);
  }

  close(): void {
    this.closed = true;
    for (const set of [...this.byId.values()]) for (const w of [...set]) w(false);
  }
}
