// The SMTP sink: nodemailer's pooled transport with no hidden re-sends, explicit timeouts, and a
// classification of every failure into what the outbox should do with the row.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import nodemailer from 'nodemailer';
import type { SendMailOptions } from 'nodemailer';
import type { SmtpConfig } from '../config/index.ts';
import type { RenderedMessage } from '../types.ts';
import { coerceError } from '../util/errors.ts';
import { coalesceChunks } from './coalesce.ts';
import { AccessTokenCache } from './smtp-oauth2.ts';
import { isThrottleReply } from './throttle.ts';
import { SendError, type FailureKind, type SmtpSendResult, type SmtpSink } from './types.ts';

interface NodemailerErrorShape {
  code?: unknown;
  /** the system/TLS code nodemailer replaced with its own (ESOCKET), e.g. DEPTH_ZERO_SELF_SIGNED_CERT */
  originalCode?: unknown;
  responseCode?: unknown;
  response?: unknown;
  command?: unknown;
}

// Commands whose 5xx reply refuses this message (its sender, its recipients or its content).
const MESSAGE_COMMANDS = new Set(['MAIL FROM', 'RCPT TO', 'DATA']);
// Local refusals before anything was sent: the same message would be refused again.
const DEAD_CODES = new Set(['EENVELOPE', 'EMESSAGE', 'EMAXRECIPIENTS', 'EFILEACCESS', 'EURLACCESS']);
// OpenSSL X509_V_ERR_* names as Node reports them (CERT_HAS_EXPIRED, UNABLE_TO_VERIFY_LEAF_SIGNATURE,
// SELF_SIGNED_CERT_IN_CHAIN, ...) and Node's own ERR_TLS_CERT_ALTNAME_INVALID / ERR_SSL_* codes.
const TLS_VERIFY_CODE =
  /^(?:ERR_TLS_|ERR_SSL_|DEPTH_ZERO_SELF_SIGNED_CERT$|SELF_SIGNED_CERT|UNABLE_TO_|CERT_)/;
// The transport cannot work as configured: credentials, TLS, configuration.
const TRANSPORT_CODES = new Set(['EAUTH', 'ENOAUTH', 'EOAUTH2', 'ETLS', 'EREQUIRETLS', 'ECONFIG']);

/**
 * Decides from nodemailer's `code`, `responseCode` and `command` only, never from message text.
 * `phase` says whether the message data had been fully written to the server when it failed
 * (the sink knows this from the message stream, see createSmtpSink).
 */
export function classifySmtpError(err: unknown, phase: 'before-data' | 'after-data'): FailureKind {
  const e = (typeof err === 'object' && err !== null ? err : {}) as NodemailerErrorShape;
  const code = typeof e.code === 'string' ? e.code : undefined;
  const rc = typeof e.responseCode === 'number' ? e.responseCode : undefined;
  const command = typeof e.command === 'string' ? e.command : undefined;

  if (code && TRANSPORT_CODES.has(code)) return 'auth';
  // A certificate that does not verify surfaces as ESOCKET with the OpenSSL/Node code kept in
  // originalCode; it fails every connection the same way until the config or the server changes.
  const originalCode = typeof e.originalCode === 'string' ? e.originalCode : undefined;
  if (originalCode && TLS_VERIFY_CODE.test(originalCode)) return 'auth';
  if (rc !== undefined && rc >= 400 && rc < 600) {
    // RFC 5321 4.2.1: 4yz is a transient negative completion; 421 means the server is closing the
    // channel, and a 421 in reply to the data means the message was not taken either.
    if (isThrottleReply(rc, typeof e.response === 'string' ? e.response : undefined)) return 'throttle';
    if (rc < 500) return 'retry';
    // 503 is "bad sequence of commands": a session-state problem, not a refusal of the message.
    if (rc === 503) return 'retry';
    // A 5xx after the data is the server's final, permanent answer about this message.
    if (phase === 'after-data') return 'dead';
    if ((command && MESSAGE_COMMANDS.has(command)) || code === 'EENVELOPE' || code === 'EMESSAGE')
      return 'dead';
    // 5xx at the greeting, EHLO or STARTTLS: the server refuses us, not this message.
    return 'auth';
  }
  if (code && DEAD_CODES.has(code)) return 'dead';
  // Everything else is the connection failing (ECONNECTION, ETIMEDOUT, ESOCKET, EDNS, EPROXY,
  // EPROTOCOL, our own deadline EABORT, ...). Before the final byte of the message went out the
  // server cannot have accepted it (RFC 5321 4.1.1.4: the transaction completes with <CRLF>.<CRLF>
  // and its reply); after it, it may have.
  return phase === 'after-data' ? 'uncertain' : 'retry';
}

/** nodemailer's auth options: user/pass (LOGIN or PLAIN, optionally forced) or OAuth2 (XOAUTH2). */
function transportAuth(cfg: SmtpConfig): { auth?: Record<string, unknown> } {
  const auth = cfg.auth;
  if (!auth) return {};
  if (auth.type === 'oauth2') {
    // the token itself comes from the pool-wide cache (oauth2_provision_cb), not from these fields
    return { auth: { type: 'OAuth2', user: auth.user } };
  }
  return { auth: { user: auth.user, pass: auth.pass, ...(auth.method ? { method: auth.method } : {}) } };
}

/**
 * The server closed a reused pooled connection before a byte of this message was sent, and the
 * pool dropped the server's reply: smtp-pool (pool-resource.js send) swallows a transient error on a
 * reused connection whose message stream was not read yet and fails the message when the connection
 * closes (_failDeliveryOnConnectionClose: ECONNECTION, no reply, no command). Relays close that way
 * when they throttle (421 4.7.0 closes the channel, RFC 5321 4.2), so it is handled as throttling:
 * the row stays pending without spending an attempt and the pacer pauses briefly. Nothing of the
 * message went out, so no duplicate can come of it; a server that is really gone fails the next
 * connection's greeting, which opens the circuit.
 */
function isLostServerClose(e: NodemailerErrorShape, phase: 'before-data' | 'after-data'): boolean {
  return (
    phase === 'before-data' &&
    e.code === 'ECONNECTION' &&
    e.command === undefined &&
    e.responseCode === undefined
  );
}

/** Tracks whether the message data was fully handed to the SMTP data stream. */
interface SendTracker {
  dataWritten: boolean;
}

/** The nodemailer pool on the current thread (what the worker thread runs). */
export function createInProcessSmtpSink(cfg: SmtpConfig, baseDir: string): SmtpSink {
  const tls: Record<string, unknown> = { rejectUnauthorized: cfg.tls.rejectUnauthorized };
  if (cfg.tls.ca) tls.ca = readFileSync(resolve(baseDir, cfg.tls.ca));
  if (cfg.tls.servername) tls.servername = cfg.tls.servername;

  const transport = nodemailer.createTransport({
    pool: true,
    host: cfg.host,
    port: cfg.port,
    secure: cfg.secure,
    requireTLS: cfg.requireTLS,
    ignoreTLS: cfg.ignoreTLS,
    tls,
    ...(cfg.name ? { name: cfg.name } : {}),
    ...transportAuth(cfg),
    // DKIM-Signature by nodemailer's signer (the key was checked at config load)
    ...(cfg.dkim
      ? {
          dkim: {
            domainName: cfg.dkim.domainName,
            keySelector: cfg.dkim.keySelector,
            privateKey: readFileSync(resolve(baseDir, cfg.dkim.privateKeyFile), 'utf8'),
          },
        }
      : {}),
    maxConnections: cfg.pool.maxConnections,
    maxMessages: cfg.pool.maxMessages,
    // The pool re-queues a message whose connection closed before its send callback ran (default
    // up to 5 times). In 10.6 that happens only before any byte of the message was read, but a
    // hidden re-send is exactly what the outbox must own (attempt counts, backoff, the uncertain
    // state), so 0 makes the pool fail the message instead (smtp-pool: requeueAttempts < maxRequeues).
    maxRequeues: 0,
    connectionTimeout: cfg.connectionTimeoutMs,
    greetingTimeout: cfg.greetingTimeoutMs,
    socketTimeout: cfg.socketTimeoutMs,
    // Record data must never make nodemailer read local files or fetch URLs.
    disableFileAccess: true,
    disableUrlAccess: true,
    logger: false,
  });

  if (cfg.auth?.type === 'oauth2') {
    const tokens = new AccessTokenCache(cfg.auth);
    // nodemailer calls this as a method of the connection's XOAuth2: `this.accessToken` is the
    // token that connection holds, i.e. the one the server refused when `renew` is true
    transport.set(
      'oauth2_provision_cb',
      function (
        this: { accessToken?: string | false } | undefined,
        _user: string,
        renew: boolean,
        done: (err: Error | null, accessToken?: string, expires?: number) => void,
      ) {
        tokens.provision(this?.accessToken || undefined, renew, done);
      },
    );
  }

  // How we know the phase of a failure: nodemailer reports a dropped connection as ECONNECTION /
  // ETIMEDOUT with command 'CONN' whatever the phase, so `command` alone cannot tell. Instead we
  // watch every message stream: when it has ended, the data stream that writes to the socket has
  // read its last byte, and only then can the terminating "." reach the server. Before that point
  // the server cannot have accepted the message (retry is safe); after it, it might have
  // (uncertain). The point is conservative: a drop between it and the "." is reported uncertain
  // although the message was not complete. The same stream gathers the message's pieces into one
  // socket write (coalesce.ts); its end is the moment its input ended and the last piece went on.
  const trackers = new WeakMap<AbortSignal, SendTracker>();
  transport.use('stream', (mail, done) => {
    const signal = mail.data.signal;
    const tracker = signal ? trackers.get(signal as AbortSignal) : undefined;
    if (tracker) {
      mail.message.processFunc((input) => {
        const output = coalesceChunks();
        output.once('end', () => {
          tracker.dataWritten = true;
        });
        // a process function reports its input's errors on its output (nodemailer destroys the
        // whole chain when its consumer gives up)
        input.once('error', (err) => output.destroy(err));
        return input.pipe(output);
      });
    }
    done();
  });

  const toSendError = (err: unknown, phase: 'before-data' | 'after-data'): SendError => {
    const e = coerceError(err) as Error & NodemailerErrorShape;
    const kind = isLostServerClose(e, phase) ? 'throttle' : classifySmtpError(e, phase);
    return new SendError(e.message, {
      kind,
      code: typeof e.code === 'string' ? e.code : undefined,
      responseCode: typeof e.responseCode === 'number' ? e.responseCode : undefined,
      response: typeof e.response === 'string' ? e.response : undefined,
      command: typeof e.command === 'string' ? e.command : undefined,
      originalCode: typeof e.originalCode === 'string' ? e.originalCode : undefined,
      cause: e,
    });
  };

  return {
    channel: 'email',
    async send(msg) {
      const controller = new AbortController();
      const tracker: SendTracker = { dataWritten: false };
      trackers.set(controller.signal, tracker);
      const deadline = setTimeout(
        () => controller.abort(new Error(`send deadline of ${cfg.sendTimeoutMs} ms passed`)),
        cfg.sendTimeoutMs,
      );
      try {
        const info = await transport.sendMail({ ...toMailOptions(msg), signal: controller.signal });
        const rejectedReplies: Record<string, string> = {};
        for (const r of info.rejectedErrors ?? []) {
          const rr = r as Error & { recipient?: string; response?: string };
          if (rr.recipient) rejectedReplies[rr.recipient] = rr.response ?? rr.message;
        }
        const result: SmtpSendResult = {
          response: String(info.response ?? ''),
          accepted: (info.accepted ?? []).map(addressText),
          rejected: (info.rejected ?? []).map(addressText),
          messageId: msg.messageId,
        };
        if (Object.keys(rejectedReplies).length) result.rejectedReplies = rejectedReplies;
        return result;
      } catch (err) {
        throw toSendError(err, tracker.dataWritten ? 'after-data' : 'before-data');
      } finally {
        clearTimeout(deadline);
      }
    },
    async verify() {
      try {
        await transport.verify();
      } catch (err) {
        throw toSendError(err, 'before-data');
      }
    },
    async close() {
      transport.close();
    },
  };
}

function addressText(a: unknown): string {
  if (typeof a === 'string') return a;
  if (a && typeof a === 'object' && 'address' in a) return String((a as { address: unknown }).address);
  return String(a);
}

/** The nodemailer message for a rendered message: exactly what retries send again. */
export function toMailOptions(msg: RenderedMessage): SendMailOptions {
  return {
    from: msg.from,
    to: msg.to,
    cc: msg.cc,
    bcc: msg.bcc,
    ...(msg.replyTo ? { replyTo: msg.replyTo } : {}),
    subject: msg.subject,
    ...(msg.text !== undefined ? { text: msg.text } : {}),
    ...(msg.html !== undefined ? { html: msg.html } : {}),
    headers: msg.headers,
    messageId: msg.messageId,
    attachments: msg.attachments.map((a) => ({
      filename: a.filename,
      ...(a.contentType ? { contentType: a.contentType } : {}),
      content: a.content,
      ...(a.encoding === 'base64' ? { encoding: 'base64' } : {}),
      ...(a.cid
        ? { cid: a.cid, contentDisposition: 'inline' as const }
        : { contentDisposition: 'attachment' as const }),
    })),
    disableFileAccess: true,
    disableUrlAccess: true,
  };
}
