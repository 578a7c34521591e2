// Handlebars rendering of a rule's email. Every template of a rule is compiled once
// (compileRule); each record is then rendered into a complete RenderedMessage (renderMessage),
// which the outbox stores and retries byte-for-byte.
//
// Template context: the record's fields by API name (relationships nested, so {{Owner.Email}}
// works), plus Id/CreatedDate/SystemModstamp from the SourceRecord when the fields lack them,
// plus `rule` ({ name, object }), `now` (ISO string of the render time) and `record` (the fields
// again, for {{json record}}). A record field literally named `rule`, `now` or `record` is
// shadowed by ours at the top level; it stays reachable as {{record.rule}}, {{record.now}},
// {{record.record}}. An update notification (on: updated) also sees `previous` (the watched
// fields' values before the change, where known) and `changedFields` (their names), shadowing
// record fields of those names the same way.
//
// Escaping: `html` is HTML-escaped (Handlebars default); every other template is rendered with
// noEscape (it is not HTML) and then sanitised: single-line values (subject, from, replyTo,
// header values, attachment file names) lose control characters; address fields are parsed
// and validated; nothing a record holds can add a header.
import type { EmailConfig, RuleConfig } from '../config/index.ts';
import type { RenderedAttachment, RenderedMessage, SourceRecord } from '../types.ts';
import {
  compileAllowList,
  formatMailbox,
  InvalidAddressError,
  parseMailboxes,
  type Mailbox,
} from './recipients.ts';
import { RenderError, TemplateError } from './errors.ts';
import { ROOT_FIELDS } from './helpers.ts';
import {
  compileSource,
  compileValue,
  contextFor,
  createEnv,
  run,
  type Env,
  type Template,
} from './compile.ts';
import { compileChannels, type CompiledChannels } from './channels.ts';
import { hasLineBreak, isHeaderName, multiLine, singleLine } from './sanitize.ts';

export { RenderError, TemplateError } from './errors.ts';
export type { RenderErrorCode } from './errors.ts';
export { sampleRecord } from './sample.ts';
export { helpers } from './helpers.ts';
// the recipient guards, for callers that only import the template layer (check, send-test)
export { compileAllowList, isValidAddress, parseAddressList, staticRecipientProblems } from './recipients.ts';

interface CompiledAttachment {
  fileName: Template;
  content: Template;
  contentType: string | undefined;
  base64: boolean;
  cid: string | undefined;
}

/** A rule with every template compiled, ready to render any number of records. */
export interface CompiledRule {
  rule: RuleConfig;
  /** recipients outside allowRecipients are refused (always true when the rule has none) */
  isAllowed: (address: string) => boolean;
  /** the email's templates; undefined when the rule sends no email */
  templates: EmailTemplates | undefined;
  /** the webhook, Slack and Teams templates of the rule (channels.ts) */
  channels: CompiledChannels;
}

interface EmailTemplates {
  from: Template;
  to: Template;
  cc: Template;
  bcc: Template;
  replyTo: Template;
  subject: Template;
  text: Template | undefined;
  html: Template | undefined;
  headers: [name: string, value: Template][];
  attachments: CompiledAttachment[];
}

/**
 * Headers that carry message structure or routing. Setting them from email.headers would bypass
 * the address checks (Bcc) or break the MIME tree, so they are refused at config time.
 */
const RESERVED_HEADERS = new Set([
  'from',
  'to',
  'cc',
  'bcc',
  'reply-to',
  'sender',
  'subject',
  'date',
  'message-id',
  'mime-version',
  'content-type',
  'content-transfer-encoding',
  'content-disposition',
  'content-id',
  'return-path',
  'received',
  'dkim-signature',
  'in-reply-to',
  'references',
]);

/**
 * Compiles every template of the rule once. File templates (values ending in `.hbs`) are read
 * relative to baseDir; partials from `<baseDir>/partials/*.hbs`. Throws TemplateError (with the
 * rule-relative keyPath) on syntax errors, missing files/partials, unknown helpers, bad header
 * names, reserved headers, bad attachment settings and bad allowRecipients patterns.
 */
export function compileRule(rule: RuleConfig, baseDir: string): CompiledRule {
  const env = createEnv(baseDir);
  let isAllowed: (address: string) => boolean;
  try {
    isAllowed = compileAllowList(rule.allowRecipients);
  } catch (err) {
    const m = /^(allowRecipients\[\d+\]): (.*)$/s.exec((err as Error).message);
    throw new TemplateError(m?.[1] ?? 'allowRecipients', m?.[2] ?? (err as Error).message, { cause: err });
  }
  return {
    rule,
    isAllowed,
    templates: rule.email ? compileEmail(env, rule.email, baseDir) : undefined,
    channels: compileChannels(rule, baseDir),
  };
}

function compileEmail(env: Env, e: EmailConfig, baseDir: string): EmailTemplates {
  const plain = (key: string, value: string | undefined): Template =>
    compileValue(env, `email.${key}`, value ?? '', baseDir, false);

  const headers: [string, Template][] = [];
  for (const [name, value] of Object.entries(e.headers ?? {})) {
    const keyPath = `email.headers.${name}`;
    if (!isHeaderName(name)) {
      throw new TemplateError(
        keyPath,
        'header name must be printable ASCII without spaces or ":" (RFC 5322 3.6.8)',
      );
    }
    if (RESERVED_HEADERS.has(name.toLowerCase())) {
      throw new TemplateError(keyPath, `"${name}" is set by the notifier itself and cannot be overridden`);
    }
    headers.push([name, compileSource(env, keyPath, value, false)]);
  }

  const attachments = (e.attachments ?? []).map((a, i): CompiledAttachment => {
    const keyPath = `email.attachments[${i}]`;
    if (a.contentType !== undefined && !/^[\w.+-]+\/[\w.+-]+(\s*;[^\r\n]*)?$/.test(a.contentType)) {
      throw new TemplateError(`${keyPath}.contentType`, `not a MIME type: "${a.contentType}"`);
    }
    let cid: string | undefined;
    if (a.contentId !== undefined) {
      cid = a.contentId.trim().replace(/^<(.*)>$/, '$1');
      if (!/^[\x21-\x3b\x3d\x3f-\x7e]+$/.test(cid)) {
        throw new TemplateError(
          `${keyPath}.contentId`,
          'must be printable ASCII without spaces or angle brackets',
        );
      }
    }
    return {
      fileName: compileSource(env, `${keyPath}.fileName`, a.fileName, false),
      content: compileValue(env, `${keyPath}.content`, a.content, baseDir, false),
      contentType: a.contentType,
      base64: a.contentTransferEncoding === 'base64',
      cid,
    };
  });

  return {
    from: plain('from', e.from),
    to: plain('to', e.to),
    cc: plain('cc', e.cc),
    bcc: plain('bcc', e.bcc),
    replyTo: plain('replyTo', e.replyTo),
    subject: plain('subject', e.subject),
    text: e.text === undefined ? undefined : plain('text', e.text),
    html: e.html === undefined ? undefined : compileValue(env, 'email.html', e.html, baseDir, true),
    headers,
    attachments,
  };
}

/** Parsed and validated mailboxes; display names made single-line like any header text. */
function mailboxes(text: string, keyPath: string): Mailbox[] {
  try {
    return parseMailboxes(text).map((m) => ({ name: singleLine(m.name), address: m.address }));
  } catch (err) {
    if (err instanceof InvalidAddressError) {
      throw new RenderError('EADDRESS', `${keyPath}: ${err.message}`, {
        keyPath,
        address: err.address,
      });
    }
    throw err;
  }
}

/**
 * Renders one record into a complete message. Throws RenderError (ERENDER,
 * EADDRESS, ENORECIPIENTS, ERECIPIENT, EHEADER); the caller
 * dead-letters that row only, with err.message as the reason.
 */
export interface RenderContext {
  now?: Date;
  /** the Message-ID's key instead of the record Id (update notifications: `<Id>.<version>`) */
  messageKey?: string;
  /** extra top-level template values (update notifications: previous, changedFields) */
  extra?: Record<string, unknown>;
  /** the Message-ID (with angle brackets) of the notification this one follows in a thread */
  threadTo?: string;
}

export function renderMessage(
  compiled: CompiledRule,
  record: SourceRecord,
  ctx?: RenderContext,
): RenderedMessage {
  const now = ctx?.now ?? new Date();
  const context = contextFor(compiled.rule, record, now, ctx?.extra);
  return renderContext(compiled, context, ctx?.messageKey ?? record.id, ctx?.threadTo);
}

/** What a digest lists: the records (as collected), how many in all, and the period. */
export interface DigestInput {
  /** at most maxRecords of them, oldest first; each the record's fields (Id, ...) */
  records: Array<Record<string, unknown>>;
  /** all records in this digest, listed or not */
  count: number;
  /** the previous digest's time (ISO), or the rule's floor before the first */
  since: string;
  until: string;
}

/**
 * Renders a digest: the templates see `records`, `count`, `more` (count - listed), `since`,
 * `until`, `rule` and `now`. `key` names the Message-ID (`digest.<until>`). Throws RenderError.
 */
export function renderDigest(
  compiled: CompiledRule,
  digest: DigestInput,
  ctx: { now?: Date; key: string },
): RenderedMessage {
  const now = ctx.now ?? new Date();
  const values = {
    records: digest.records,
    count: digest.count,
    more: Math.max(0, digest.count - digest.records.length),
    since: digest.since,
    until: digest.until,
  };
  const context: Record<string | symbol, unknown> = {
    ...values,
    rule: { name: compiled.rule.name, object: compiled.rule.object },
    now: now.toISOString(),
  };
  Object.defineProperty(context, ROOT_FIELDS, { value: values, enumerable: false });
  return renderContext(compiled, context, ctx.key);
}

function renderContext(
  compiled: CompiledRule,
  context: Record<string | symbol, unknown>,
  key: string,
  threadTo?: string,
): RenderedMessage {
  const t = compiled.templates;
  if (!t) throw new RenderError('ERENDER', 'the rule has no email', { keyPath: 'email' });

  // From: exactly one mailbox; its domain names the Message-ID
  const fromList = mailboxes(singleLine(run(t.from, context, 'email.from')), 'email.from');
  if (fromList.length !== 1 || fromList[0] === undefined) {
    throw new RenderError('EADDRESS', `email.from: must be exactly one address, got ${fromList.length}`, {
      keyPath: 'email.from',
    });
  }
  const fromBox = fromList[0];

  // Recipients: validated, then deduplicated case-insensitively across to > cc > bcc
  const seen = new Set<string>();
  const lists = {} as Record<'to' | 'cc' | 'bcc', string[]>;
  for (const key of ['to', 'cc', 'bcc'] as const) {
    const keyPath = `email.${key}`;
    // rendered with noEscape: no singleLine here, line breaks must fail (not be joined)
    const boxes = mailboxes(run(t[key], context, keyPath), keyPath);
    lists[key] = [];
    for (const box of boxes) {
      const lower = box.address.toLowerCase();
      if (seen.has(lower)) continue;
      if (!compiled.isAllowed(box.address)) {
        throw new RenderError(
          'ERECIPIENT',
          `${keyPath}: recipient ${box.address} is not allowed by allowRecipients`,
          { keyPath, address: box.address },
        );
      }
      seen.add(lower);
      lists[key].push(formatMailbox(box));
    }
  }
  if (seen.size === 0) {
    throw new RenderError('ENORECIPIENTS', 'no recipients: to, cc and bcc all rendered empty', {
      keyPath: 'email.to',
    });
  }

  const replyToBoxes = mailboxes(singleLine(run(t.replyTo, context, 'email.replyTo')), 'email.replyTo');

  // Importance per the de-facto Outlook headers; user headers may override them
  const headers = importanceHeaders(compiled.rule.email?.importance ?? 'normal');
  for (const [name, template] of t.headers) {
    for (const existing of Object.keys(headers)) {
      if (existing.toLowerCase() === name.toLowerCase()) delete headers[existing];
    }
    headers[name] = singleLine(run(template, context, `email.headers.${name}`));
  }

  const attachments = t.attachments.map((a, i): RenderedAttachment => {
    const keyPath = `email.attachments[${i}]`;
    const filename = singleLine(run(a.fileName, context, `${keyPath}.fileName`), 255);
    if (filename === '') {
      throw new RenderError('ERENDER', `${keyPath}.fileName: rendered empty`, {
        keyPath: `${keyPath}.fileName`,
      });
    }
    let content = run(a.content, context, `${keyPath}.content`);
    const out: RenderedAttachment = { filename, content: '' };
    if (a.contentType !== undefined) out.contentType = a.contentType;
    if (a.base64) {
      content = content.replace(/\s+/g, '');
      // RFC 4648 section 4 alphabet, padded to a multiple of 4
      if (content.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(content)) {
        throw new RenderError('ERENDER', `${keyPath}.content: not valid base64`, {
          keyPath: `${keyPath}.content`,
        });
      }
      out.encoding = 'base64';
    } else {
      content = multiLine(content);
    }
    out.content = content;
    if (a.cid !== undefined) out.cid = a.cid;
    return out;
  });

  const domain = fromBox.address.slice(fromBox.address.lastIndexOf('@') + 1).toLowerCase();
  const message: RenderedMessage = {
    // stable across restarts and hosts (unlike os.hostname()), so a re-send is recognisable
    messageId: `<${compiled.rule.name}.${key}@${domain}>`,
    from: formatMailbox(fromBox),
    to: lists.to,
    cc: lists.cc,
    bcc: lists.bcc,
    subject: singleLine(run(t.subject, context, 'email.subject')),
    headers,
    attachments,
  };
  if (replyToBoxes.length > 0) message.replyTo = replyToBoxes.map(formatMailbox).join(', ');
  if (threadTo && /^<[^<>\s]+>$/.test(threadTo)) {
    // RFC 5322 3.6.4: mail clients thread a record's notifications under its first one
    message.headers['In-Reply-To'] = threadTo;
    message.headers['References'] = threadTo;
  }
  if (t.text !== undefined) message.text = multiLine(run(t.text, context, 'email.text'));
  if (t.html !== undefined) message.html = multiLine(run(t.html, context, 'email.html'));

  assertSingleLine(message);
  return message;
}

/** Importance as the de-facto Outlook headers (Importance, X-Priority); none for normal. */
export function importanceHeaders(importance: 'high' | 'normal' | 'low'): Record<string, string> {
  if (importance === 'high') return { Importance: 'high', 'X-Priority': '1 (Highest)' };
  if (importance === 'low') return { Importance: 'low', 'X-Priority': '5 (Lowest)' };
  return {};
}

/**
 * Defence in depth: nothing that becomes a header line may still carry a line break. Throws
 * RenderError EHEADER. Also used by the Send API (http/send-api.ts) on the messages it builds.
 */
export function assertSingleLine(m: RenderedMessage): void {
  const values: [string, string][] = [
    ['messageId', m.messageId],
    ['from', m.from],
    ['subject', m.subject],
    ['replyTo', m.replyTo ?? ''],
    ...m.to.map((v): [string, string] => ['to', v]),
    ...m.cc.map((v): [string, string] => ['cc', v]),
    ...m.bcc.map((v): [string, string] => ['bcc', v]),
    ...Object.entries(m.headers).map(([k, v]): [string, string] => [`headers.${k}`, `${k}${v}`]),
    ...m.attachments.map((a): [string, string] => ['attachments.filename', `${a.filename}${a.cid ?? ''}`]),
  ];
  for (const [key, value] of values) {
    if (hasLineBreak(value)) {
      throw new RenderError('EHEADER', `email.${key}: contains a line break`, {
        keyPath: `email.${key}`,
      });
    }
  }
}
