// The channel (sink) contract: what the dispatcher hands a message to. A channel sends one message
// and either returns what the receiver said or throws a SendError whose `kind` tells the outbox
// what to do with the row. The dispatcher's retries, circuit, leases and states are one mechanism
// for every channel; a channel only classifies its own failures. SMTP (smtp.ts) and HTTP (http.ts:
// webhook, Slack, Teams) implement it.
import type { RenderedMessage, SendResult } from '../types.ts';

/**
 * What the outbox does with a failed send:
 * - retry: transient (4xx, the connection broke before the message data went out): back off, try again
 * - dead: permanent (5xx for the sender, every recipient or the message): keep the reply, never retry
 * - auth: the transport itself is unusable (535/EAUTH, a TLS/STARTTLS failure, a 5xx greeting):
 *   every message would fail the same way, so the dispatcher opens the channel's circuit and keeps
 *   rows pending
 * - uncertain: the connection broke after the whole message was written, before the final reply:
 *   the server may have accepted it, so re-sending could deliver it twice (state `unknown`)
 * - throttle: the relay says "too fast, later" (421/450/451/454 4.7.x, 4.5.x submission rate): the
 *   row stays pending without spending an attempt and the dispatcher's pacer slows down
 */
export type FailureKind = 'retry' | 'dead' | 'auth' | 'uncertain' | 'throttle';

export class SendError extends Error {
  override name = 'SendError';
  kind: FailureKind;
  /** the transport's own code from util/errors.ts CODES (nodemailer's ECONNECTION, EENVELOPE, ...) */
  code?: string;
  responseCode?: number;
  response?: string;
  command?: string;
  /** the system or TLS code behind an ESOCKET, e.g. DEPTH_ZERO_SELF_SIGNED_CERT */
  originalCode?: string;
  /** the receiver asked to wait this long before the next attempt (HTTP Retry-After) */
  retryAfterMs?: number;
  constructor(message: string, init: SendErrorInit & { cause?: unknown }) {
    super(message, { cause: init.cause });
    this.kind = init.kind;
    this.code = init.code;
    this.responseCode = init.responseCode;
    this.response = init.response;
    this.command = init.command;
    this.originalCode = init.originalCode;
    if (init.retryAfterMs !== undefined) this.retryAfterMs = init.retryAfterMs;
  }

  /** plain data (crosses the worker-thread boundary) */
  toJSON(): SendErrorInit & { message: string } {
    return {
      message: this.message,
      kind: this.kind,
      code: this.code,
      responseCode: this.responseCode,
      response: this.response,
      command: this.command,
      originalCode: this.originalCode,
      ...(this.retryAfterMs !== undefined ? { retryAfterMs: this.retryAfterMs } : {}),
    };
  }
}

/** The fields of a SendError, as data. */
export type SendErrorInit = Pick<
  SendError,
  'kind' | 'code' | 'responseCode' | 'response' | 'command' | 'originalCode' | 'retryAfterMs'
>;

/** A SendResult plus the server's reply for each refused recipient (kept with the row as JSON). */
export interface SmtpSendResult extends SendResult {
  rejectedReplies?: Record<string, string>;
}

/** One delivery channel. `M` is what it sends (a rendered email for SMTP). */
export interface Channel<M = RenderedMessage, R extends SendResult = SendResult> {
  /** the outbox's channel name: email (webhook, slack and teams follow the same contract) */
  readonly channel: string;
  /** throws SendError */
  send(msg: M): Promise<R>;
  /** connect and authenticate without sending (readiness, circuit probes, check --connect); throws SendError */
  verify(): Promise<void>;
  /** closes idle connections; a delivery in progress finishes first */
  close(): Promise<void>;
}

export type SmtpSink = Channel<RenderedMessage, SmtpSendResult>;

/** The outcome of one attempt, as the dispatcher sees it. */
export type Attempt<R extends SendResult = SendResult> =
  { kind: 'sent'; result: R } | { kind: FailureKind; error: SendError };

/** Send once and classify: anything a channel throws that is not a SendError is a transient failure. */
export async function attempt<M, R extends SendResult>(channel: Channel<M, R>, msg: M): Promise<Attempt<R>> {
  try {
    return { kind: 'sent', result: await channel.send(msg) };
  } catch (err) {
    const error =
      err instanceof SendError
        ? err
        : new SendError(err instanceof Error ? err.message : String(err), { kind: 'retry', cause: err });
    return { kind: error.kind, error };
  }
}
