// The HTTP channels (webhook, Slack, Teams): one POST per outbox row through an undici Agent with
// keep-alive, a connection limit (the channel's concurrency), explicit connect and total deadlines,
// no redirects, and a bounded read of the reply. The request body was rendered at enqueue time
// (templates/channels.ts); the URL, headers and signing secret are read from the config by the
// row's rule at send time, so no secret is stored in the outbox.
//
// Classification (DESIGN.md "Channels"): 2xx sent; 408, 429 (with its Retry-After), 5xx and
// connection failures before the request was written: retry; 401/403: 'auth' (the channel's
// circuit opens); nothing listening or no route: retry marked unreachable (the circuit opens too);
// other 4xx and 3xx: dead with the reply; a deadline or a broken connection after the whole
// request was written: 'uncertain' (the receiver may have acted on it), or retry when the rule
// says onUncertain: resend (safe for receivers that honour Idempotency-Key).
//
// Why undici's dispatch() with our own handler rather than fetch(): only the handler is told
// when the request has been written in full (onRequestSent), which is the line between "retry"
// and "uncertain"; fetch() reports both as the same TypeError.
import { createHmac } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { Agent, type Dispatcher } from 'undici';
import type { HttpChannelName, HttpRequestMessage, HttpSendResult } from '../types.ts';
import { SendError, type Channel } from './types.ts';

/** how much of a reply body is kept in the row (result or last error) */
export const REPLY_BODY_LIMIT = 4096;
const CONNECT_TIMEOUT_MAX_MS = 10_000;

/** what a rule's channel posts to; looked up by the row's rule at send time */
export interface HttpTarget {
  url: string;
  headers: Record<string, string>;
  secret?: string;
  timeoutMs: number;
}

export interface HttpChannelOptions {
  channel: HttpChannelName;
  /** by rule name */
  targets: Map<string, HttpTarget>;
  /** connections per origin, and so requests in flight at once */
  concurrency: number;
  /** `lead-notifier/<version>` */
  userAgent: string;
  /** rules whose uncertain sends are sent again (onUncertain: resend) */
  resendRules?: ReadonlySet<string>;
}

export type HttpChannel = Channel<HttpRequestMessage, HttpSendResult>;

/** `X-Lead-Notifier-Signature` of a body at a time: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>"> */
export function signBody(secret: string, timestamp: number, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/**
 * Retry-After (RFC 9110 10.2.3): delay-seconds or an HTTP-date; the delay from `now` in ms, or
 * undefined when absent or unreadable.
 */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

interface Reply {
  status: number;
  statusText: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  truncated: boolean;
}

type Failure = { error: Error; written: boolean };

/** One POST through the agent; resolves with the reply or rejects with { error, written }. */
function post(agent: Agent, url: URL, headers: Record<string, string>, body: string, timeoutMs: number) {
  return new Promise<Reply>((resolve, reject) => {
    let written = false;
    let status = 0;
    let statusText = '';
    let replyHeaders: Reply['headers'] = {};
    const chunks: Buffer[] = [];
    let size = 0;
    let truncated = false;
    let controller: Dispatcher.DispatchController | undefined;
    /** set when the deadline passed: a request undici starts later must not go out */
    let abortedWith: Error | undefined;
    let settled = false;
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject({ error, written } satisfies Failure);
    };
    // the total deadline: connect, write, and the whole reply
    const timer = setTimeout(() => {
      const e = Object.assign(new Error(`no complete reply within ${timeoutMs} ms`), {
        code: 'ETOTALTIMEOUT',
      });
      abortedWith = e;
      controller?.abort(e);
      fail(e);
    }, timeoutMs);
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
        if (abortedWith) c.abort(abortedWith);
      },
      onRequestSent() {
        written = true;
      },
      onResponseStart(_c, statusCode, headers, message) {
        // a reply (even an early one) means the receiver saw the request
        written = true;
        status = statusCode;
        statusText = message ?? '';
        replyHeaders = headers;
      },
      onResponseData(_c, chunk: Buffer) {
        if (size < REPLY_BODY_LIMIT) chunks.push(chunk);
        size += chunk.length;
        if (size > REPLY_BODY_LIMIT) truncated = true;
      },
      onResponseEnd() {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        const text = Buffer.concat(chunks).subarray(0, REPLY_BODY_LIMIT).toString('utf8');
        resolve({ status, statusText, headers: replyHeaders, body: text, truncated });
      },
      onResponseError(_c, err) {
        fail(err);
      },
    };
    try {
      agent.dispatch(
        {
          origin: url.origin,
          path: `${url.pathname}${url.search}`,
          method: 'POST',
          headers,
          body,
          // the total deadline above governs; these only keep undici's own defaults (300 s) out of the way
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        },
        handler,
      );
    } catch (err) {
      fail(err as Error);
    }
  });
}

function headerValue(h: Reply['headers'], name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

function replyText(r: Reply): string {
  const body = r.body.replace(/\s+/g, ' ').trim();
  return `${r.status}${r.statusText ? ` ${r.statusText}` : ''}${body ? `: ${body}` : ''}${r.truncated ? ' [truncated]' : ''}`;
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/** A failed POST as the outbox sees it. */
function classifyFailure(f: Failure, uncertainKind: 'uncertain' | 'retry', what: string): SendError {
  const e = f.error as Error & { code?: string; cause?: { code?: string } };
  const sys = e.code ?? e.cause?.code;
  const message = `${what}: ${e.message}`;
  if (sys === 'UND_ERR_CONNECT_TIMEOUT') {
    // as SMTP's connect timeout: nothing answered; isServerUnreachable opens the circuit
    return new SendError(message, { kind: 'retry', code: 'EHTTPTIMEOUT', command: 'CONN', cause: e });
  }
  if (!f.written) {
    const unreachable = sys !== undefined && UNREACHABLE.has(sys);
    return new SendError(message, {
      kind: 'retry',
      code: sys === 'ETOTALTIMEOUT' ? 'EHTTPTIMEOUT' : 'EHTTPCONNECTION',
      ...(unreachable ? { originalCode: sys } : {}),
      ...(sys === 'ETOTALTIMEOUT' ? { command: 'CONN' } : {}),
      cause: e,
    });
  }
  return new SendError(`${message} (after the request was written: it may have been received)`, {
    kind: uncertainKind,
    code: 'EUNCERTAIN',
    cause: e,
  });
}

/** A reply as the outbox sees it (2xx handled by the caller). */
function classifyReply(r: Reply): SendError {
  const response = replyText(r);
  const init = { code: 'EHTTP', responseCode: r.status, response };
  if (r.status === 401 || r.status === 403) return new SendError(response, { ...init, kind: 'auth' });
  if (r.status === 408 || r.status === 429 || r.status >= 500) {
    const retryAfterMs =
      r.status === 429 || r.status === 503
        ? parseRetryAfter(headerValue(r.headers, 'retry-after'))
        : undefined;
    return new SendError(response, {
      ...init,
      kind: 'retry',
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    });
  }
  if (r.status >= 300 && r.status < 400) {
    const location = headerValue(r.headers, 'location');
    return new SendError(response, {
      ...init,
      code: 'EREDIRECT',
      kind: 'dead',
      response: `${response} (redirects are not followed${location ? `; Location: ${location}` : ''})`,
    });
  }
  return new SendError(response, { ...init, kind: 'dead' });
}

export function createHttpChannel(o: HttpChannelOptions): HttpChannel {
  const maxTimeout = Math.max(...[...o.targets.values()].map((t) => t.timeoutMs), 1000);
  const agent = new Agent({
    connections: o.concurrency,
    pipelining: 1,
    keepAliveTimeout: 4_000,
    keepAliveMaxTimeout: 60_000,
    connect: { timeout: Math.min(CONNECT_TIMEOUT_MAX_MS, maxTimeout) },
    // dispatch() never follows a redirect (only undici's redirect interceptor would): a 3xx is dead
  });
  const targetOf = (rule: string): { target: HttpTarget; url: URL } => {
    const target = o.targets.get(rule);
    if (!target) {
      throw new SendError(`no ${o.channel} channel configured for rule ${rule} (removed from the config?)`, {
        kind: 'dead',
        code: 'ESEND',
      });
    }
    return { target, url: new URL(target.url) };
  };
  return {
    channel: o.channel,
    async send(msg) {
      const { target, url } = targetOf(msg.rule);
      const headers: Record<string, string> = {
        ...target.headers,
        'content-type': msg.contentType,
        'user-agent': o.userAgent,
        'idempotency-key': msg.idempotencyKey,
      };
      if (target.secret) {
        // signed afresh on every attempt, so a receiver can refuse old timestamps (replays)
        const timestamp = Math.floor(Date.now() / 1000);
        headers['x-lead-notifier-timestamp'] = String(timestamp);
        headers['x-lead-notifier-signature'] = signBody(target.secret, timestamp, msg.body);
      }
      let reply: Reply;
      try {
        reply = await post(agent, url, headers, msg.body, target.timeoutMs);
      } catch (f) {
        const uncertainKind = o.resendRules?.has(msg.rule) ? 'retry' : 'uncertain';
        throw classifyFailure(f as Failure, uncertainKind, `${o.channel} ${url.host}`);
      }
      if (reply.status >= 200 && reply.status < 300) {
        return {
          response: replyText(reply),
          accepted: [],
          rejected: [],
          status: reply.status,
          body: reply.body + (reply.truncated ? ' [truncated]' : ''),
        };
      }
      throw classifyReply(reply);
    },
    async verify() {
      // Reachability of every receiver (TCP, and TLS for https): an HTTP channel has no handshake
      // that proves its credentials without sending, so a 401/403 circuit closes here and opens
      // again at the next refused request, one probe interval later.
      const origins = new Map<string, URL>();
      for (const t of o.targets.values()) {
        const u = new URL(t.url);
        origins.set(u.origin, u);
      }
      await Promise.all(
        [...origins.values()].map((u) => reach(u, Math.min(CONNECT_TIMEOUT_MAX_MS, maxTimeout))),
      );
    },
    async close() {
      await agent.close();
    },
  };
}

function reach(u: URL, timeoutMs: number): Promise<void> {
  const https = u.protocol === 'https:';
  const port = Number(u.port || (https ? 443 : 80));
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  return new Promise((resolve, reject) => {
    const socket = https
      ? tls.connect({ host, port, servername: net.isIP(host) ? undefined : host, timeout: timeoutMs })
      : net.connect({ host, port, timeout: timeoutMs });
    const done = (err?: Error) => {
      socket.destroy();
      if (err) {
        const code = (err as { code?: string }).code;
        reject(
          new SendError(`${u.host} unreachable: ${err.message}`, {
            kind: 'retry',
            code: 'EHTTPCONNECTION',
            ...(code && UNREACHABLE.has(code) ? { originalCode: code } : {}),
            cause: err,
          }),
        );
      } else resolve();
    };
    socket.once(https ? 'secureConnect' : 'connect', () => done());
    socket.once('timeout', () =>
      done(Object.assign(new Error(`no connection within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })),
    );
    socket.once('error', (err) => done(err));
  });
}
