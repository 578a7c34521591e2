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
