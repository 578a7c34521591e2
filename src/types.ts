// Data handed between the pipeline's stages: what a source yields, what templates render, what a
// channel reports. The Store contract lives in store/types.ts.

/** One Salesforce record as the pipeline sees it. */
export interface SourceRecord {
  /** sObject API name, e.g. Lead */
  object: string;
  /** 18-character record Id */
  id: string;
  /** ISO-8601 instant, as Salesforce returned it (second resolution) */
  createdDate: string;
  systemModstamp: string;
  /** the record as returned by the REST API, relationship fields nested (`Owner: { Email }`), no `attributes` */
  fields: Record<string, unknown>;
}

export interface RenderedAttachment {
  filename: string;
  contentType?: string;
  /** text, or base64 when `encoding` is 'base64' */
  content: string;
  encoding?: 'base64';
  /** set only for inline attachments referenced as cid:... */
  cid?: string;
}

/** A fully rendered email: retries send exactly this. JSON-serialisable. */
export interface RenderedMessage {
  /** deterministic, with angle brackets: <ruleName.recordId@host> */
  messageId: string;
  from: string;
  to: string[];
  cc: string[];
  bcc: string[];
  replyTo?: string;
  subject: string;
  text?: string;
  html?: string;
  /** extra headers (Importance, X-Priority, user headers); values single-line */
  headers: Record<string, string>;
  attachments: RenderedAttachment[];
}

export interface SendResult {
  response: string;
  accepted: string[];
  rejected: string[];
  messageId?: string;
}

/** Where a notification goes: one outbox row per channel of a rule (DESIGN.md "Channels"). */
export type ChannelName = 'email' | 'webhook' | 'slack' | 'teams';
export const CHANNEL_NAMES: readonly ChannelName[] = ['email', 'webhook', 'slack', 'teams'];
export type HttpChannelName = Exclude<ChannelName, 'email'>;

/**
 * A webhook, Slack or Teams notification as rendered at enqueue time: the request body, byte for
 * byte what every attempt posts. The URL, headers and signing secret are NOT here: the channel
 * looks them up in the config by `rule` at send time, so no secret is stored in the outbox.
 */
export interface HttpRequestMessage {
  channel: HttpChannelName;
  rule: string;
  /** the Idempotency-Key header: `<rule>.<recordId>[.<version>]` (the row's ledger key) */
  idempotencyKey: string;
  contentType: string;
  body: string;
}

/** What an HTTP channel keeps of the reply in the row's result. */
export interface HttpSendResult extends SendResult {
  status: number;
  /** the reply body, read up to a bound and truncated */
  body: string;
}

/** What an outbox row holds to send: a rendered email, or a channel's rendered HTTP request. */
export type OutboxMessage = RenderedMessage | HttpRequestMessage;

export function isHttpMessage(m: OutboxMessage | null | undefined): m is HttpRequestMessage {
  return m !== null && m !== undefined && 'idempotencyKey' in m;
}

/** The row's message as an email; throws when the row holds another channel's request. */
export function asEmail(m: OutboxMessage | null | undefined): RenderedMessage {
  if (m === null || m === undefined || isHttpMessage(m)) throw new TypeError('not an email message');
  return m;
}
