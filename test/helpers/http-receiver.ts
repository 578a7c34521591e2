// A real webhook receiver for tests: a node:http server on loopback that verifies the
// X-Lead-Notifier-Signature the way README "Channels" tells receivers to (HMAC-SHA256 of
// "<timestamp>.<body>", constant-time compare, timestamps older than 5 minutes refused), records
// every request, and answers as the test's `respond` hook says: a status, headers, a slow reply,
// or a connection reset after the request was read.
import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** the signature verified with the receiver's secret (null: no secret configured) */
  signatureOk: boolean | null;
  at: number;
}

export type Reply =
  | { status: number; headers?: Record<string, string>; body?: string }
  /** read the request, then answer nothing for this long (then 200) */
  | { delayMs: number }
  /** read the request, then destroy the socket (a reset after the request was written) */
  | { reset: true };

export interface Receiver {
  url: string;
  port: number;
  requests: ReceivedRequest[];
  /** decides each reply; default 200 */
  respond: (req: ReceivedRequest, n: number) => Reply;
  close(): Promise<void>;
}

/** The README's receiver-side check, as a receiver would write it. */
export function verifySignature(
  secret: string,
  headers: http.IncomingHttpHeaders,
  body: string,
  nowSeconds = Math.floor(Date.now() / 1000),
): boolean {
  const ts = String(headers['x-lead-notifier-timestamp'] ?? '');
  const sig = String(headers['x-lead-notifier-signature'] ?? '');
  if (!/^\d+$/.test(ts) || Math.abs(nowSeconds - Number(ts)) > 300) return false;
  const expected = `sha256=${createHmac('sha256', secret).update(`${ts}.${body}`).digest('hex')}`;
  const a = Buffer.from(sig);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export async function startReceiver(opts: { secret?: string } = {}): Promise<Receiver> {
  const sockets = new Set<import('node:net').Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const r: Receiver = {
    url: '',
    port: 0,
    requests: [],
    respond: () => ({ status: 200, body: 'ok' }),
    close: async () => {
      for (const t of timers) clearTimeout(t);
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const got: ReceivedRequest = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body,
        signatureOk: opts.secret === undefined ? null : verifySignature(opts.secret, req.headers, body),
        at: Date.now(),
      };
      r.requests.push(got);
      const reply = r.respond(got, r.requests.length);
      if ('reset' in reply) {
        req.socket.destroy();
        return;
      }
      if ('delayMs' in reply) {
        const t = setTimeout(() => {
          timers.delete(t);
          if (!res.destroyed) res.end('late');
        }, reply.delayMs);
        timers.add(t);
        return;
      }
      res.writeHead(reply.status, reply.headers ?? {});
      res.end(reply.body ?? '');
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  r.port = (server.address() as AddressInfo).port;
  r.url = `http://127.0.0.1:${r.port}/hook`;
  return r;
}
