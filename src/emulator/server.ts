// The emulator's HTTP server (node:http only): routing, body limits, API usage accounting
// (Sforce-Limit-Info), injected faults and counters. The resources themselves live in
// oauth.ts, soap.ts, rest.ts, control.ts; CometD in cometd.ts .

import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Org } from './org.ts';
import type { OrgOptions } from './org.ts';
import { makeId } from '../sources/salesforce/ids.ts';
import { CursorStore, SessionStore } from './sessions.ts';
import { EmulatorControl } from './control.ts';
import { handleControl } from './control.ts';
import { handleIdentity, handleRevoke, handleToken } from './oauth.ts';
import { handleSoap } from './soap.ts';
import { CometdServer } from './cometd.ts';
import { PubSubEmulator } from './pubsub/server.ts';
import { handleRest, restEndpointKey, versionsList } from './rest.ts';
import { json, notFound, sfError } from './http.ts';
import type { ActiveFault, CometdLike, Context, ReqInfo, Reply, UserEntry } from './http.ts';

export interface EmulatorOptions {
  /** default 0 (any free port) */
  port?: number;
  /** default 127.0.0.1 */
  host?: string;
  /** served REST/SOAP versions, default 50.0..62.0 (latest 62.0) */
  apiVersions?: string[];
  /** connected apps; default [{ clientId: 'emulator-client', clientSecret: 'emulator-secret' }] */
  clients?: Array<{ clientId: string; clientSecret?: string; jwtPublicKeyPem?: string }>;
  /** default integration@example.com / 'emulator-password' (no security token) */
  users?: Array<{
    username: string;
    password: string;
    securityToken?: string;
    email?: string;
    firstName?: string;
    lastName?: string;
  }>;
  /** daily API request allocation, default 15000 */
  apiLimit?: number;
  /** session inactivity timeout, default 2 h */
  sessionTtlMs?: number;
  /** streaming event retention, default 72 h (CDC) / 24 h (PushTopic) */
  retention?: { cdcMs?: number; pushTopicMs?: number };
  /** CometD long-poll hold, default 110000 like Salesforce */
  cometdConnectTimeoutMs?: number;
  /** request bodies above this get 413; default 8 MiB */
  maxBodyBytes?: number;
  /** the Pub/Sub API (gRPC) on its own port; timings shortened for tests */
  pubsub?: { port?: number; keepaliveMs?: number; idleTimeoutMs?: number };
  org?: OrgOptions;
  log?: (line: string) => void;
}

export interface Emulator {
  /** http://127.0.0.1:PORT: both the login URL and the instance URL */
  url: string;
  org: Org;
  control: EmulatorControl;
  /** the Pub/Sub API: `pubsub.endpoint` is host:port (plaintext gRPC), plus its fault hooks */
  pubsub: PubSubEmulator;
  /** API calls per endpoint key, e.g. 'GET query', 'GET queryMore', 'POST sobjects', 'POST token' */
  counters(): Record<string, number>;
  close(): Promise<void>;
}

export const DEFAULT_CLIENT_ID = 'emulator-client';
export const DEFAULT_CLIENT_SECRET = 'emulator-secret';
export const DEFAULT_USERNAME = 'integration@example.com';
export const DEFAULT_PASSWORD = 'emulator-password';
export const DEFAULT_API_VERSIONS = Array.from({ length: 13 }, (_, i) => `${50 + i}.0`);

const DEFAULT_MAX_BODY = 8 * 1024 * 1024;
const TWO_HOURS = 2 * 60 * 60 * 1000;

/** a request body over maxBodyBytes: answered 413 */
class BodyTooLarge extends Error {
  readonly code = 'EBODYTOOLARGE';
}

function readBody(req: IncomingMessage, max: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > max) {
      reject(new BodyTooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > max) {
        failed = true;
        chunks.length = 0;
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!failed) resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', (err) => {
      if (!failed) reject(err);
      failed = true;
    });
  });
}

function parseUrl(raw: string | undefined): URL | undefined {
  const u = raw ?? '/';
  try {
    // "//x" must stay a path, not become a host: prefix the origin rather than resolve against it.
    return u.startsWith('/') ? new URL(`http://emulator.invalid${u}`) : new URL(u);
  } catch {
    return undefined;
  }
}

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

const httpUnsafe = /[^\t\x20-\x7e]/g;

/** Creates the context and server; used by startEmulator. */
export async function startEmulator(opts: EmulatorOptions = {}): Promise<Emulator> {
  const log = opts.log ?? (() => {});
  const nowFn = opts.org?.now ?? (() => new Date());
  const now = () => nowFn().getTime();
  const org = new Org(opts.org ?? {});
  const orgId = makeId('00D', 1);
  const apiVersions = opts.apiVersions?.length ? [...opts.apiVersions] : DEFAULT_API_VERSIONS;
  const latestVersion = [...apiVersions].sort((a, b) => Number(b) - Number(a))[0] as string;
  const sessionTtlMs = opts.sessionTtlMs ?? TWO_HOURS;
  const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const configuredUsers = opts.users?.length
    ? opts.users
    : [
        {
          username: DEFAULT_USERNAME,
          password: DEFAULT_PASSWORD,
          firstName: 'Integration',
          lastName: 'User',
        },
      ];
  let users: UserEntry[] = [];

  const provisionUsers = (): void => {
    const existing = org.all('User');
    users = configuredUsers.map((u) => {
      const lastName = u.lastName ?? u.username.split('@')[0] ?? 'User';
      const email = u.email ?? u.username;
      const found = existing.find(
        (r) => String(r.values.Username ?? '').toLowerCase() === u.username.toLowerCase(),
      );
      const userId =
        found?.Id ??
        org.insert('User', {
          Username: u.username,
          Email: email,
          LastName: lastName,
          ...(u.firstName ? { FirstName: u.firstName } : {}),
          Alias: u.username.slice(0, 8),
        }).Id;
      return {
        username: u.username,
        password: u.password,
        securityToken: u.securityToken ?? '',
        email,
        firstName: u.firstName,
        lastName,
        userId,
      };
    });
  };
  provisionUsers();

  const ctx: Context = {
    url: '',
    orgId,
    org,
    sessions: new SessionStore({ orgId, ttlMs: sessionTtlMs, now }),
    cursors: new CursorStore({ now, makeId: (n) => makeId('01g', n) }),
    clients: opts.clients?.length
      ? opts.clients.map((c) => ({ ...c }))
      : [{ clientId: DEFAULT_CLIENT_ID, clientSecret: DEFAULT_CLIENT_SECRET }],
    users: () => users,
    provisionUsers,
    checkPassword(username, password) {
      // Username-password flows take the password with the security token appended.
      return users.find(
        (u) =>
          u.username.toLowerCase() === username.toLowerCase() && password === u.password + u.securityToken,
      );
    },
    bearerToken(req) {
      const h = req.headers.authorization;
      if (typeof h !== 'string') return undefined;
      const m = /^(?:Bearer|OAuth)\s+(\S+)\s*$/i.exec(h);
      return m?.[1];
    },
    apiVersions,
    latestVersion,
    sessionTtlMs,
    limits: { max: opts.apiLimit ?? 15000, used: 0 },
    counters: new Map(),
    faults: [],
    cometd: undefined,
    now,
    log,
  };
  const control = new EmulatorControl(ctx);

  const server = createServer({ maxHeaderSize: 64 * 1024 }, (req, res) => {
    handleRequest(ctx, control, maxBody, req, res).catch((err: unknown) => {
      log(`emulator: request failed: ${err instanceof Error ? err.message : String(err)}`);
      if (!res.headersSent) {
        try {
          writeReply(ctx, res, sfError(500, 'UNKNOWN_EXCEPTION', 'An unexpected error occurred.'), 'GET');
        } catch {
          res.destroy();
        }
      } else {
        res.destroy();
      }
    });
  });
  // A malformed request line or headers: answer 400 and drop the socket, never throw.
  server.on('clientError', (_err, socket) => {
    if (socket.writable)
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else socket.destroy();
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  ctx.url = `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${addr.port}`;

  ctx.cometd = makeCometd(ctx, opts);
  const pubsub = new PubSubEmulator({
    org,
    orgId,
    instanceUrl: () => ctx.url,
    validateToken: (token) => ctx.sessions.validate(token) !== undefined,
    now,
    host: opts.host ?? '127.0.0.1',
    ...opts.pubsub,
    retentionMs: opts.retention?.cdcMs ?? 72 * 60 * 60 * 1000,
    log,
  });
  await pubsub.start();

  let closing: Promise<void> | undefined;
  return {
    url: ctx.url,
    org,
    control,
    pubsub,
    counters: () => control.counters(),
    close() {
      closing ??= pubsub.close().then(() => closeServer(server, ctx));
      return closing;
    },
  };
}

function makeCometd(ctx: Context, opts: EmulatorOptions): CometdLike {
  return new CometdServer({
    org: ctx.org,
    validateToken: (token: string) => ctx.sessions.validate(token) !== undefined,
    retention: {
      cdcMs: opts.retention?.cdcMs ?? 72 * 60 * 60 * 1000,
      pushTopicMs: opts.retention?.pushTopicMs ?? 24 * 60 * 60 * 1000,
    },
    ...(opts.cometdConnectTimeoutMs !== undefined ? { connectTimeoutMs: opts.cometdConnectTimeoutMs } : {}),
    now: () => new Date(ctx.now()),
  });
}

async function closeServer(server: Server, ctx: Context): Promise<void> {
  try {
    ctx.cometd?.close();
  } catch (err) {
    ctx.log(`emulator: cometd close failed: ${(err as Error).message}`);
  }
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  // long polls and delayed faults must not hold shutdown
  setTimeout(() => server.closeAllConnections(), 100).unref();
  await closed;
}

function writeReply(ctx: Context, res: ServerResponse, reply: Reply, method: string, limitInfo = true): void {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(reply.headers)) headers[k] = v.replace(httpUnsafe, '');
  if (limitInfo) headers['sforce-limit-info'] = `api-usage=${ctx.limits.used}/${ctx.limits.max}`;
  const body = Buffer.from(reply.body, 'utf8');
  if (reply.status !== 204 && reply.status !== 304) headers['content-length'] = String(body.length);
  res.writeHead(reply.status, headers);
  if (method === 'HEAD' || reply.status === 204 || reply.status === 304) res.end();
  else res.end(body);
}

function endpointKey(method: string, path: string): string {
  if (path === '/services/oauth2/token') return `${method} token`;
  if (path === '/services/oauth2/revoke') return `${method} revoke`;
  if (path.startsWith('/id/')) return `${method} identity`;
  if (path.startsWith('/services/Soap/')) return `${method} soap`;
  if (path.startsWith('/cometd/')) return `${method} cometd`;
  if (path === '/services/data' || path === '/services/data/') return `${method} versions`;
  const m = /^\/services\/data\/v\d+\.\d+(?:\/(.*))?$/.exec(path);
  if (m) return restEndpointKey(method, (m[1] ?? '').split('/').map(decodeSegment));
  return `${method} other`;
}

function faultReply(f: ActiveFault): Reply | undefined {
  const { spec } = f;
  if (spec.status === undefined && spec.body === undefined && spec.errorCode === undefined) return undefined;
  const status = spec.status ?? 503;
  if (spec.body !== undefined) {
    return { status, headers: { 'content-type': spec.contentType ?? 'text/html' }, body: spec.body };
  }
  const errorCode = spec.errorCode ?? defaultCode(status);
  return sfError(status, errorCode, spec.message ?? defaultMessage(errorCode));
}

function defaultCode(status: number): string {
  return (
    {
      400: 'BAD_REQUEST',
      401: 'INVALID_SESSION_ID',
      403: 'REQUEST_LIMIT_EXCEEDED',
      404: 'NOT_FOUND',
      500: 'UNKNOWN_EXCEPTION',
    }[status] ?? 'SERVER_UNAVAILABLE'
  );
}

function defaultMessage(code: string): string {
  return (
    {
      SERVER_UNAVAILABLE: 'Server temporarily unavailable. Please try again later.',
      INVALID_SESSION_ID: 'Session expired or invalid',
      REQUEST_LIMIT_EXCEEDED: 'TotalRequests Limit exceeded.',
      UNKNOWN_EXCEPTION: 'An unexpected error occurred.',
    }[code] ?? code
  );
}

async function handleRequest(
  ctx: Context,
  control: EmulatorControl,
  maxBody: number,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const method = (req.method ?? 'GET').toUpperCase();
  res.on('error', () => {});
  const url = parseUrl(req.url);
  if (!url) {
    writeReply(ctx, res, sfError(400, 'BAD_REQUEST', 'Malformed request URL'), method, false);
    return;
  }
  const path = url.pathname;
  let body: string;
  try {
    body = await readBody(req, maxBody);
  } catch (err) {
    if (err instanceof BodyTooLarge) {
      res.setHeader('connection', 'close');
      writeReply(ctx, res, sfError(413, 'REQUEST_ENTITY_TOO_LARGE', 'Request body is too large'), method);
      req.resume();
      return;
    }
    res.destroy();
    return;
  }
  const info: ReqInfo = { method, path, query: url.searchParams, headers: req.headers, body };

  if (path.startsWith('/__emulator/')) {
    writeReply(ctx, res, handleControl(control, info, path.slice('/__emulator/'.length)), method, false);
    return;
  }

  const key = endpointKey(method, path);
  ctx.counters.set(key, (ctx.counters.get(key) ?? 0) + 1);

  // injected faults (control API), first match wins
  const fault = ctx.faults.find(
    (f) => (!f.spec.method || f.spec.method.toUpperCase() === method) && f.regex.test(path),
  );
  if (fault) {
    fault.remaining -= 1;
    if (fault.remaining <= 0) ctx.faults.splice(ctx.faults.indexOf(fault), 1);
    if (fault.spec.delayMs) await sleep(fault.spec.delayMs, undefined, { ref: false });
    const r = faultReply(fault);
    if (r) {
      writeReply(ctx, res, r, method);
      return;
    }
    if (res.destroyed) return;
  }

  if (path.startsWith('/cometd/')) {
    if (!ctx.cometd) {
      writeReply(ctx, res, notFound(), method);
      return;
    }
    ctx.cometd.handle(req, res, body);
    return;
  }
  writeReply(ctx, res, route(ctx, info), method);
}

function route(ctx: Context, req: ReqInfo): Reply {
  const { path, method } = req;
  if (path === '/services/oauth2/token') return handleToken(ctx, req);
  if (path === '/services/oauth2/revoke') {
    if (method !== 'POST')
      return json(405, { error: 'invalid_request', error_description: 'must use HTTP POST' });
    return handleRevoke(ctx, req);
  }
  const id = /^\/id\/([0-9A-Za-z]{15,18})\/([0-9A-Za-z]{15,18})\/?$/.exec(path);
  if (id) {
    if (method !== 'GET' && method !== 'HEAD') return json(405, { error: 'method_not_allowed' });
    return handleIdentity(ctx, req, id[1] as string, id[2] as string);
  }
  const soap = /^\/services\/Soap\/u\/(\d+\.\d+)(?:\/[0-9A-Za-z]{15,18})?\/?$/.exec(path);
  if (soap) return handleSoap(ctx, req, soap[1] as string);

  if (path === '/services/data' || path === '/services/data/') {
    if (method !== 'GET' && method !== 'HEAD')
      return sfError(405, 'METHOD_NOT_ALLOWED', `HTTP Method '${method}' not allowed. Allowed are GET,HEAD`);
    return versionsList(ctx);
  }
  const rest = /^\/services\/data\/v(\d+\.\d+)(?:\/(.*))?$/.exec(path);
  if (!rest) return notFound();
  const version = rest[1] as string;
  // An unsupported version is simply an unknown resource (404 NOT_FOUND), as on Salesforce.
  if (!ctx.apiVersions.includes(version)) return notFound();
  const token = ctx.bearerToken(req);
  const session = token ? ctx.sessions.validate(token) : undefined;
  if (!session) return sfError(401, 'INVALID_SESSION_ID', 'Session expired or invalid');
  // Daily allocation: once used up every call answers 403 (REST API Developer Guide, errorcodes.htm).
  if (ctx.limits.used >= ctx.limits.max)
    return sfError(403, 'REQUEST_LIMIT_EXCEEDED', 'TotalRequests Limit exceeded.');
  ctx.limits.used += 1;
  const tail = rest[2] ?? '';
  const segments = tail === '' ? [] : tail.replace(/\/$/, '').split('/').map(decodeSegment);
  return handleRest({ ctx, req, version, segments, session });
}
