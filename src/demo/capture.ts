// The demo's capture SMTP server: accepts every message on loopback (no AUTH, no TLS), parses it
// with mailparser and keeps the newest ones in memory for the web inbox. Nothing is relayed.
import { once } from 'node:events';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { simpleParser } from 'mailparser';
import type { AddressObject, ParsedMail } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import type { SMTPServerAddress } from 'smtp-server';

export interface CapturedAttachment {
  filename: string;
  contentType: string;
  size: number;
  contentId: string | undefined;
  content: Buffer;
}

export interface CapturedEmail {
  /** 1, 2, 3...: stable within one run */
  id: number;
  receivedAt: string;
  envelope: { mailFrom: string; rcptTo: string[] };
  from: string;
  to: string;
  cc: string;
  replyTo: string;
  subject: string;
  date: string | null;
  messageId: string | null;
  /** the X-Priority / Importance the sender set, when any */
  importance: string | null;
  text: string | null;
  html: string | null;
  /** every header line as received, unfolded: [name, value] */
  headers: Array<[string, string]>;
  attachments: CapturedAttachment[];
  raw: Buffer;
}

export interface EmailStore {
  /** newest first */
  list(): CapturedEmail[];
  get(id: number): CapturedEmail | undefined;
  add(email: Omit<CapturedEmail, 'id'>): CapturedEmail;
  clear(): void;
  /** called after each add */
  onAdd(fn: (email: CapturedEmail) => void): void;
}

/** In-memory store of captured emails; keeps the newest `max` (default 500). */
export function createEmailStore(max = 500): EmailStore {
  const emails: CapturedEmail[] = [];
  const listeners: Array<(e: CapturedEmail) => void> = [];
  let next = 1;
  return {
    list: () => [...emails].reverse(),
    get: (id) => emails.find((e) => e.id === id),
    add(email) {
      const stored: CapturedEmail = { id: next++, ...email };
      emails.push(stored);
      if (emails.length > max) emails.splice(0, emails.length - max);
      for (const fn of listeners) fn(stored);
      return stored;
    },
    clear: () => void emails.splice(0),
    onAdd: (fn) => void listeners.push(fn),
  };
}

export interface CaptureSmtp {
  host: string;
  port: number;
  close(): Promise<void>;
}

/** Turns a raw RFC 5322 message into a CapturedEmail (without id). */
export async function parseEmail(
  raw: Buffer,
  envelope: { mailFrom: string; rcptTo: string[] },
  receivedAt = new Date(),
): Promise<Omit<CapturedEmail, 'id'>> {
  // keepCidLinks: false (the default) inlines cid: images as data: URLs, which the sandboxed
  // HTML view's CSP allows (img-src data:).
  const parsed: ParsedMail = await simpleParser(raw, { skipTextToHtml: true });
  const headers: Array<[string, string]> = parsed.headerLines.map((h) => {
    const i = h.line.indexOf(':');
    // RFC 5322 section 2.2.3: unfold by removing the CRLF before folding whitespace
    return [
      h.line.slice(0, i),
      h.line
        .slice(i + 1)
        .replace(/\r?\n(?=[ \t])/g, '')
        .trim(),
    ];
  });
  // as sent (mailparser folds these into `priority`)
  const header = (name: string): string | null =>
    headers.find(([k]) => k.toLowerCase() === name)?.[1] ?? null;
  return {
    receivedAt: receivedAt.toISOString(),
    envelope,
    from: addressText(parsed.from),
    to: addressText(parsed.to),
    cc: addressText(parsed.cc),
    replyTo: addressText(parsed.replyTo),
    subject: parsed.subject ?? '',
    date: parsed.date ? parsed.date.toISOString() : null,
    messageId: parsed.messageId ?? null,
    importance: header('importance') ?? header('x-priority'),
    text: parsed.text ?? null,
    html: typeof parsed.html === 'string' ? parsed.html : null,
    headers,
    attachments: parsed.attachments.map((a, i) => ({
      filename: a.filename ?? `attachment-${i + 1}`,
      contentType: a.contentType,
      size: a.size,
      contentId: a.contentId,
      content: a.content,
    })),
    raw,
  };
}

function addressText(a: AddressObject | AddressObject[] | undefined): string {
  if (!a) return '';
  return (Array.isArray(a) ? a : [a]).map((x) => x.text).join(', ');
}

function addressOf(a: SMTPServerAddress | false | undefined): string {
  return a ? a.address : '';
}

/**
 * Starts the capture server on host:port (port 0 = any free port). Rejects with the listen error
 * (EADDRINUSE...) when the port cannot be bound.
 */
export async function startCaptureSmtp(
  store: EmailStore,
  opts: { host?: string; port?: number; maxBytes?: number } = {},
): Promise<CaptureSmtp> {
  const host = opts.host ?? '127.0.0.1';
  const sockets = new Set<Socket>();
  const server = new SMTPServer({
    logger: false,
    secure: false,
    // A loopback catch-all: no TLS (smtp-server's built-in certificate would fail verification),
    // no AUTH.
    hideSTARTTLS: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    authOptional: true,
    disableReverseLookup: true,
    size: opts.maxBytes ?? 25 * 1024 * 1024,
    banner: 'lead-notifier demo capture server (nothing is relayed)',
    closeTimeout: 100,
    onData(stream: Readable, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('error', (err) => cb(err));
      stream.on('end', () => {
        const envelope = {
          mailFrom: addressOf(session.envelope.mailFrom),
          rcptTo: session.envelope.rcptTo.map((r) => r.address),
        };
        parseEmail(Buffer.concat(chunks), envelope).then(
          (email) => {
            const stored = store.add(email);
            cb(null, `OK: captured as #${stored.id}`);
          },
          (err: unknown) => cb(err instanceof Error ? err : new Error(String(err))),
        );
      });
    },
  });
  server.on('error', () => {
    /* a client dropping its connection is not our problem */
  });
  server.server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const listening = once(server.server, 'listening');
  const failed = once(server.server, 'error').then(([err]) => {
    throw err as Error;
  });
  server.listen(opts.port ?? 0, host);
  await Promise.race([listening, failed]);
  failed.catch(() => undefined);
  const address = server.server.address();
  if (!address || typeof address === 'string') throw new Error('capture SMTP server did not bind');
  let closing: Promise<void> | undefined;
  return {
    host,
    port: address.port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      });
      return closing;
    },
  };
}
