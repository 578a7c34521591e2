// The Send API's input: the request body read within its limit, the connector's field names mapped
// case-insensitively onto the zod schema (send-api-schema.ts), and the RenderedMessage built from
// it with the templates' sanitising, so an API email has exactly the shape of a rule email.
// Every failure is a Refusal (4xx) with field errors, never a partial row.
import type { IncomingMessage } from 'node:http';
import type { SendApiTokenConfig } from '../config/index.ts';
import { assertSingleLine, importanceHeaders } from '../templates/index.ts';
import { RenderError } from '../templates/errors.ts';
import { formatMailbox, parseMailboxes } from '../templates/recipients.ts';
import type { Mailbox } from '../templates/recipients.ts';
import { multiLine, singleLine } from '../templates/sanitize.ts';
import type { RenderedAttachment, RenderedMessage } from '../types.ts';
import { coerceError } from '../util/errors.ts';
import { sendEmailSchema } from './send-api-schema.ts';
import type { SendEmailInput } from './send-api-schema.ts';

export interface Token {
  config: SendApiTokenConfig;
  digest: Buffer;
  allowFrom: (address: string) => boolean;
  allowRecipient: (address: string) => boolean;
  defaultFrom: Mailbox | undefined;
  bucket: { tokens: number; at: number; capacity: number; perMs: number };
}

export interface FieldError {
  field: string;
  message: string;
}

/** An answer other than 2xx decided while reading or checking the request (4xx, 503). */
export class Refusal extends Error {
  readonly status: number;
  readonly body: unknown;
  readonly headers: Record<string, string>;
  constructor(status: number, body: unknown, headers: Record<string, string> = {}) {
    super(`refused ${status}`);
    this.status = status;
    this.body = body;
    this.headers = headers;
  }
}

export const badRequest = (errors: FieldError[]) => new Refusal(400, { errors });

/** JSON with object keys sorted: two bodies are "the same" when they are the same JSON value */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) =>
      a < b ? -1 : a > b ? 1 : 0,
    );
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * The body, as parsed JSON. 413 as soon as Content-Length or the bytes so far pass `max` (the rest
 * is never buffered); 400 for a missing or other Content-Type and for malformed JSON.
 */
export async function readJson(req: IncomingMessage, max: number): Promise<unknown> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json' && !/^application\/[\w.-]+\+json$/.test(type)) {
    throw badRequest([{ field: 'Content-Type', message: 'must be application/json' }]);
  }
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > max) throw tooLarge(max);
  // plain listeners, not for-await: leaving that loop early would destroy the socket, and the
  // 413 must still get out
  const text = await new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onCut);
      req.off('close', onCut);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        done();
        reject(tooLarge(max));
      } else chunks.push(chunk);
    };
    const onEnd = () => {
      done();
      resolve(Buffer.concat(chunks, size).toString('utf8'));
    };
    // the client went away mid-body: nobody reads the reply, but it is still not a fault of ours
    const onCut = () => {
      done();
      reject(badRequest([{ field: '', message: 'the request body was cut off' }]));
    };
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onCut);
    req.once('close', onCut);
  });
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw badRequest([{ field: '', message: `malformed JSON: ${coerceError(err).message}` }]);
  }
}

function tooLarge(max: number): Refusal {
  return new Refusal(413, { error: `the body is over ${max} bytes` });
}

/**
 * A reply before the body was read to its end: the connection closes after it (so the rest is
 * never read, let alone buffered), and what the client still sends meanwhile is discarded for a
 * moment so that it gets to read the reply. No headers when the body is complete.
 */
export function unreadBody(req: IncomingMessage): Record<string, string> {
  if (req.complete) return {};
  req.removeAllListeners('data');
  req.on('data', () => undefined);
  req.resume();
  const cut = setTimeout(() => req.socket.destroy(), 2000);
  cut.unref();
  req.socket.once('close', () => clearTimeout(cut));
  return { Connection: 'close' };
}

/** canonical field names by their lowercase spelling: names match case-insensitively */
const CANONICAL = fieldNames(sendEmailSchema.shape);
const ATTACHMENT_CANONICAL = fieldNames({
  ContentData: 0,
  ContentType: 0,
  ContentTransferEncoding: 0,
  FileName: 0,
  ContentId: 0,
});

function fieldNames(shape: Record<string, unknown>): Map<string, string> {
  return new Map(Object.keys(shape).map((k) => [k.toLowerCase(), k]));
}

function renameKeys(value: unknown, names: Map<string, string>, at: string, errors: FieldError[]): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const name = names.get(k.toLowerCase()) ?? k;
    if (Object.hasOwn(out, name)) {
      errors.push({ field: `${at}${name}`, message: `given twice (as ${JSON.stringify(k)} too)` });
      continue;
    }
    out[name] = v;
  }
  return out;
}

function fieldPath(path: readonly PropertyKey[]): string {
  let s = '';
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : s === '' ? String(p) : `.${String(p)}`;
  return s;
}

/** case-insensitive names, then the zod schema; every problem in one 400 */
export function validate(raw: unknown): SendEmailInput {
  const errors: FieldError[] = [];
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw badRequest([{ field: '', message: 'must be a JSON object' }]);
  const body = renameKeys(raw, CANONICAL, '', errors) as Record<string, unknown>;
  if (Array.isArray(body.Attachments)) {
    body.Attachments = body.Attachments.map((a, i) =>
      renameKeys(a, ATTACHMENT_CANONICAL, `Attachments[${i}].`, errors),
    );
  }
  const parsed = sendEmailSchema.safeParse(body);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      if (issue.code === 'unrecognized_keys') {
        for (const k of issue.keys)
          errors.push({ field: fieldPath([...issue.path, k]), message: 'is not a field of Send Email' });
      } else errors.push({ field: fieldPath(issue.path), message: issue.message });
    }
  }
  if (errors.length > 0 || !parsed.success) throw badRequest(errors);
  return parsed.data;
}

/** The request as the outbox row's message: the same shape, and the same sanitising, as rule emails. */
export function buildMessage(input: SendEmailInput, token: Token, id: string): RenderedMessage {
  const errors: FieldError[] = [];
  // names made single-line like any header text (To, CC and Bcc were parsed by the schema)
  const single = (list: Mailbox[] | undefined): Mailbox[] =>
    (list ?? []).map((m) => ({ name: singleLine(m.name), address: m.address }));
  let from: Mailbox | undefined;
  if (input.From !== undefined && input.From.trim() !== '') {
    let list: Mailbox[] = [];
    try {
      list = single(parseMailboxes(singleLine(input.From)));
    } catch (err) {
      errors.push({ field: 'From', message: coerceError(err).message });
    }
    if (list.length === 1) from = list[0];
    else if (errors.length === 0) errors.push({ field: 'From', message: 'must be exactly one address' });
  } else if (token.defaultFrom) from = token.defaultFrom;
  else errors.push({ field: 'From', message: 'is required (this token has no defaultFrom)' });

  const seen = new Set<string>();
  const lists = { to: [] as string[], cc: [] as string[], bcc: [] as string[] };
  const refused: string[] = [];
  for (const [key, field] of [
    ['to', 'To'],
    ['cc', 'CC'],
    ['bcc', 'Bcc'],
  ] as const) {
    for (const box of single(input[field])) {
      const lower = box.address.toLowerCase();
      if (seen.has(lower)) continue; // deduplicated across To > CC > Bcc, as rule emails are
      seen.add(lower);
      if (!token.allowRecipient(box.address)) refused.push(box.address);
      lists[key].push(formatMailbox(box));
    }
  }
  if (lists.to.length === 0) errors.push({ field: 'To', message: 'must name at least one recipient' });
  if (errors.length > 0) throw badRequest(errors);
  if (!token.allowFrom(from!.address))
    throw new Refusal(403, { error: `From ${from!.address} is not allowed for this token` });
  if (refused.length > 0)
    throw new Refusal(403, {
      error: `recipient not allowed for this token: ${refused.slice(0, 10).join(', ')}`,
    });

  const attachments = input.Attachments.map((a): RenderedAttachment => {
    const out: RenderedAttachment = { filename: singleLine(a.FileName, 255), content: '' };
    if (a.ContentType !== undefined) out.contentType = a.ContentType;
    if (a.ContentTransferEncoding === 'base64') {
      out.content = a.ContentData.replace(/\s+/g, '');
      out.encoding = 'base64';
    } else out.content = multiLine(a.ContentData);
    if (a.ContentId !== undefined) out.cid = a.ContentId;
    return out;
  });
  const domain = from!.address.slice(from!.address.lastIndexOf('@') + 1).toLowerCase();
  const message: RenderedMessage = {
    // deterministic like rule rows' <rule.recordId@domain>; ':' is not allowed in a Message-ID
    messageId: `<api.${token.config.name}.${id}@${domain}>`,
    from: formatMailbox({ name: singleLine(from!.name), address: from!.address }),
    to: lists.to,
    cc: lists.cc,
    bcc: lists.bcc,
    subject: singleLine(input.Subject),
    headers: importanceHeaders(input.Importance.toLowerCase() as 'high' | 'normal' | 'low'),
    attachments,
  };
  if (input.IsHtml) message.html = multiLine(input.Body);
  else message.text = multiLine(input.Body);
  try {
    assertSingleLine(message);
  } catch (err) {
    if (err instanceof RenderError) throw badRequest([{ field: '', message: err.message }]);
    throw err;
  }
  return message;
}
