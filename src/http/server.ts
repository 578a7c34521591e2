// The daemon's HTTP endpoints on node:http: GET /healthz (liveness), GET /readyz (readiness),
// GET /metrics (Prometheus text), and with http.sendApi the Send API under /v1/ (send-api.ts, the
// only part that reads request bodies, each bounded). Cheap per probe, and hardened so that no
// client (garbage, huge headers, slowloris) can take the daemon down.
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Logger } from 'pino';
import { makeScrubber } from '../util/secrets.ts';
import { coerceError } from '../util/errors.ts';
import type { Metrics } from './metrics.ts';
import { OutboxCache, readiness } from './readiness.ts';
import type { AppView } from './readiness.ts';
import type { SendApi } from './send-api.ts';

export interface HttpServerOptions {
  app: AppView;
  host: string;
  /** 0 = any free port (tests) */
  port: number;
  logger: Logger;
  /** serves /metrics when given (404 otherwise) */
  metrics?: Metrics;
  /** the Send API (http/send-api.ts), answering under /v1/ when given (404 otherwise) */
  sendApi?: SendApi;
  /** values never to appear in a response (the caller's config's secrets) */
  secrets: string[];
  /** whole header block must arrive within this (slowloris); default 10 s */
  headersTimeoutMs?: number;
  /** whole request within this; default 15 s */
  requestTimeoutMs?: number;
  /** /healthz answers 503 when the event-loop heartbeat is older than this; default 30 s */
  heartbeatStaleMs?: number;
  /** store.counts() cache for /readyz and /metrics; default 2 s */
  outboxCacheMs?: number;
  /** re-verify SMTP in the background when its last check is older than this: ok / error; default 60 s / 30 s */
  smtpRecheckMs?: { ok: number; error: number };
}

export interface HttpServer {
  /** http://host:port as bound */
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  /** readiness answers 503 'stopping' from now on */
  markStopping(): void;
  /** stop listening; open connections get graceMs to finish, then are cut. Safe twice. */
  close(graceMs?: number): Promise<void>;
}

const HEARTBEAT_MS = 1000;
const ALLOW = 'GET, HEAD';

export async function startHttpServer(o: HttpServerOptions): Promise<HttpServer> {
  const { app, logger } = o;
  const log = logger.child({ component: 'http' });
  const scrub = makeScrubber(o.secrets);
  const outbox = new OutboxCache(app, o.outboxCacheMs ?? 2000);
  const staleMs = o.heartbeatStaleMs ?? 30_000;
  const recheck = o.smtpRecheckMs ?? { ok: 60_000, error: 30_000 };
  let stopping = false;
  let verifying = false;

  // Liveness: a timer that only runs when the event loop turns. A wedged loop also stops answering
  // HTTP, but a loop starved by endless microtasks or a stuck timer queue shows up here.
  let beat = Date.now();
  const heartbeat = setInterval(() => (beat = Date.now()), HEARTBEAT_MS);
  heartbeat.unref();

  o.metrics?.attach({
    outboxCounts: async () => {
      const s = await outbox.get();
      return s.ok ? s.counts : null;
    },
    circuitOpen: () => app.dispatcher?.circuit === 'open',
    pace: () => app.pacer?.snapshot() ?? null,
  });

  /** SMTP state is only as fresh as the last send or verify: refresh it in the background. */
  const maybeRecheckSmtp = (): void => {
    const { state, checkedAt } = app.smtp;
    if (verifying || stopping || app.isStopping || !app.dispatcher || checkedAt === null) return;
    const age = Date.now() - Date.parse(checkedAt);
    if (age < (state === 'ok' ? recheck.ok : recheck.error)) return;
    verifying = true;
    app
      .verifySmtp()
      .catch(() => undefined)
      .finally(() => (verifying = false));
  };

  const send = (
    res: ServerResponse,
    status: number,
    body: string,
    contentType: string,
    extra: Record<string, string> = {},
  ) => {
    const text = scrub(body);
    res.writeHead(status, {
      'Content-Type': contentType,
      'Content-Length': Buffer.byteLength(text),
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
      ...extra,
    });
    res.end(text); // node drops the body of a HEAD response
  };
  const json = (res: ServerResponse, status: number, value: unknown, extra?: Record<string, string>) =>
    send(res, status, JSON.stringify(value) + '\n', 'application/json; charset=utf-8', extra);

  const routes: Record<string, (res: ServerResponse) => Promise<void> | void> = {
    '/healthz': (res) => {
      const age = Date.now() - beat;
      if (age > staleMs) json(res, 503, { status: 'stalled', heartbeatAgeSeconds: Math.round(age / 1000) });
      else json(res, 200, { status: 'ok' });
    },
    '/readyz': async (res) => {
      maybeRecheckSmtp();
      const report = readiness(app, await outbox.get(), stopping || app.isStopping);
      json(res, report.ready ? 200 : 503, report);
    },
    ...(o.metrics
      ? {
          '/metrics': async (res: ServerResponse) => {
            const m = await o.metrics!.text();
            send(res, 200, m.body, m.contentType);
          },
        }
      : {}),
  };

  const paths = [...Object.keys(routes), ...(o.sendApi?.paths ?? [])];
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      req.resume();
      json(res, 400, { error: 'bad request' }, { Connection: 'close' });
      return;
    }
    const path = url.pathname;
    if (o.sendApi?.handles(path)) {
      await o.sendApi.handle(req, res, url, json); // reads (or drains) the body itself
      return;
    }
    req.resume(); // a body, if any, is not read; drain it so the socket stays usable
    const route = Object.hasOwn(routes, path) ? routes[path] : undefined;
    if (!route) {
      json(res, 404, { error: 'not found', paths });
      return;
    }
    // RFC 9110 section 15.5.6: a 405 carries Allow with the methods the resource supports.
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      json(res, 405, { error: 'method not allowed' }, { Allow: ALLOW, Connection: 'close' });
      return;
    }
    await route(res);
  };

  const server = createServer(
    {
      maxHeaderSize: 16 * 1024,
      // how often node enforces headersTimeout/requestTimeout on open connections (default 30 s)
      connectionsCheckingInterval: 1000,
      requestTimeout: o.requestTimeoutMs ?? 15_000,
      headersTimeout: o.headersTimeoutMs ?? 10_000,
      keepAliveTimeout: 5000,
    },
    (req, res) => {
      handle(req, res).catch((e: unknown) => {
        log.error({ err: coerceError(e), path: req.url }, 'http handler failed');
        if (!res.headersSent) json(res, 500, { error: 'internal error' });
        else res.destroy();
      });
    },
  );
  server.maxConnections = 256;
  server.maxRequestsPerSocket = 1000;
  server.on('clientError', (err: Error & { code?: string }, socket: Socket) => {
    // Malformed request line, oversized headers, timeouts: answer if we still can, then hang up.
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const status =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? '431 Request Header Fields Too Large'
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? '408 Request Timeout'
          : '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    socket.destroySoon?.();
  });
  server.on('error', (err) => log.error({ err }, 'http server error'));

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error & { code?: string }) => {
      clearInterval(heartbeat);
      reject(
        err.code === 'EADDRINUSE'
          ? new Error(
              `HTTP port ${o.host}:${o.port} is already in use (config http.port; 0 picks any free port)`,
              {
                cause: err,
              },
            )
          : err,
      );
    };
    server.once('error', onError);
    server.listen(o.port, o.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' || addr.address.includes(':') ? `[${addr.address}]` : addr.address;
  const url = `http://${host}:${addr.port}`;
  log.info({ url, host: addr.address, port: addr.port }, 'http listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    port: addr.port,
    server,
    markStopping() {
      stopping = true;
    },
    close(graceMs = 1000) {
      stopping = true;
      o.sendApi?.close();
      closing ??= new Promise<void>((resolve) => {
        clearInterval(heartbeat);
        const cut = setTimeout(() => server.closeAllConnections(), graceMs);
        cut.unref();
        server.close(() => {
          clearTimeout(cut);
          resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}
