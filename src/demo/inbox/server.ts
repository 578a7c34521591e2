// The demo's web inbox server (node:http): serves the pages of pages.ts, each email's parts and
// a JSON list for the page's refresh. It answers only to loopback Host names (DNS rebinding).
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { EmailStore } from '../capture.ts';
import {
  HTML_PART_CSP,
  PAGE_CSP,
  renderListPage,
  renderMessagePage,
  summarize,
  type InboxOptions,
} from './pages.ts';

export type { InboxOptions } from './pages.ts';

export interface Inbox {
  url: string;
  port: number;
  close(): Promise<void>;
}

function send(
  res: ServerResponse,
  status: number,
  type: string,
  body: string | Buffer,
  headers: Record<string, string> = {},
): void {
  const buf = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  res.writeHead(status, {
    'content-type': type,
    'content-length': String(buf.length),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    ...headers,
  });
  res.end(res.req.method === 'HEAD' ? undefined : buf);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, 'application/json; charset=utf-8', JSON.stringify(value));
}

function sendText(res: ServerResponse, status: number, text: string): void {
  send(res, status, 'text/plain; charset=utf-8', text + '\n');
}

/** RFC 6266 / RFC 8187: an ASCII fallback plus the UTF-8 name. */
function contentDisposition(filename: string): string {
  const ascii = filename.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(filename)}`;
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

function hostAllowed(req: IncomingMessage, bound: string): boolean {
  const host = req.headers.host;
  if (!host) return false;
  const name = host.replace(/:\d+$/, '').toLowerCase();
  return LOOPBACK_HOSTS.has(name) || name === bound.toLowerCase();
}

export function handleInboxRequest(
  store: EmailStore,
  opts: InboxOptions,
  req: IncomingMessage,
  res: ServerResponse,
): void {
  if (!hostAllowed(req, opts.host ?? '127.0.0.1')) {
    sendText(res, 403, 'this inbox answers only to loopback host names (127.0.0.1, localhost)');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: 'GET, HEAD' });
    return;
  }
  const path = new URL(req.url ?? '/', 'http://inbox.invalid').pathname;
  if (path === '/' || path === '/index.html') {
    const nonce = randomBytes(16).toString('base64');
    send(res, 200, 'text/html; charset=utf-8', renderListPage(store.list(), opts, nonce), {
      'content-security-policy': PAGE_CSP(nonce),
    });
    return;
  }
  if (path === '/api/messages') {
    sendJson(res, 200, { messages: store.list().map(summarize) });
    return;
  }
  if (path === '/favicon.ico') {
    send(res, 204, 'text/plain', '');
    return;
  }
  let m = /^\/api\/messages\/(\d+)$/.exec(path);
  if (m) {
    const e = store.get(Number(m[1]));
    if (!e) return sendJson(res, 404, { error: 'no such message' });
    const { raw: _raw, attachments: _a, ...rest } = e;
    sendJson(res, 200, { ...summarize(e), text: rest.text, html: rest.html, headers: rest.headers });
    return;
  }
  m = /^\/messages\/(\d+)(?:\/(html|raw|attachments\/(\d+)))?$/.exec(path);
  const e = m ? store.get(Number(m[1])) : undefined;
  if (!m || !e) {
    sendText(res, 404, 'not found');
    return;
  }
  const part = m[2];
  if (part === undefined) {
    send(res, 200, 'text/html; charset=utf-8', renderMessagePage(e), {
      'content-security-policy': PAGE_CSP(null),
    });
  } else if (part === 'html') {
    if (e.html === null) return sendText(res, 404, 'this email has no HTML part');
    send(res, 200, 'text/html; charset=utf-8', e.html, { 'content-security-policy': HTML_PART_CSP });
  } else if (part === 'raw') {
    send(res, 200, 'message/rfc822', e.raw, {
      'content-disposition': contentDisposition(`message-${e.id}.eml`),
      'content-security-policy': "default-src 'none'; sandbox",
    });
  } else {
    const a = e.attachments[Number(m[3])];
    if (!a) return sendText(res, 404, 'no such attachment');
    // Always a download: an attachment is never rendered in our origin.
    const type = /^[\w.+-]+\/[\w.+-]+$/.test(a.contentType) ? a.contentType : 'application/octet-stream';
    send(res, 200, type, a.content, {
      'content-disposition': contentDisposition(a.filename),
      'content-security-policy': "default-src 'none'; sandbox",
    });
  }
}

/** Starts the inbox; rejects with the listen error (EADDRINUSE...) when the port cannot be bound. */
export async function startInbox(store: EmailStore, opts: InboxOptions = {}): Promise<Inbox> {
  const host = opts.host ?? '127.0.0.1';
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    try {
      handleInboxRequest(store, { ...opts, host }, req, res);
    } catch {
      if (!res.headersSent) sendText(res, 500, 'internal error');
      else res.destroy();
    }
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const failed = once(server, 'error').then(([err]) => {
    throw err as Error;
  });
  failed.catch(() => undefined);
  server.listen(opts.port ?? 0, host);
  await Promise.race([once(server, 'listening'), failed]);
  const addr = server.address() as AddressInfo;
  const shown = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${shown}:${addr.port}`,
    port: addr.port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      return closing;
    },
  };
}
