// A real SMTP server on loopback (the `smtp-server` package) that captures what arrives, parsed with
// mailparser. Faults are injected through hooks that speak the real protocol: throw an error made by
// `smtpError(451, '...')` from a hook and the client sees `451 ...`. No mocks of nodemailer.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer, type SMTPServerAddress, type SMTPServerSession } from 'smtp-server';

export interface CapturedMessage {
  envelope: { mailFrom: string; rcptTo: string[] };
  parsed: ParsedMail;
  raw: Buffer;
  /** Message-ID header as sent, with angle brackets */
  messageId: string | undefined;
  sessionId: string;
}

export interface DataContext {
  raw: Buffer;
  session: SMTPServerSession;
  envelope: { mailFrom: string; rcptTo: string[] };
  /** drop the TCP connection without a reply (the client never learns whether we took the message) */
  destroySocket(): void;
}

export interface CaptureHooks {
  /** throw smtpError(421, ...) to refuse the connection at greeting */
  onConnect?: (session: SMTPServerSession) => void | Promise<void>;
  onMail?: (address: string, session: SMTPServerSession) => void | Promise<void>;
  onRcpt?: (address: string, session: SMTPServerSession) => void | Promise<void>;
  /**
   * Runs after the whole message was read, before it is captured. Throw to reject it (default
   * 450, or the error's responseCode); return 'drop' (after destroySocket(), typically) to not capture.
   */
  onData?: (ctx: DataContext) => void | 'drop' | Promise<void | 'drop'>;
}

export interface CaptureServerOptions extends CaptureHooks {
  /** require AUTH PLAIN/LOGIN with these credentials (changeable later with setAuth) */
  auth?: { user: string; pass: string };
  /** implicit TLS */
  secure?: boolean;
  /** key and cert (PEM); default: none (then STARTTLS is hidden unless secure) */
  tls?: { key: string | Buffer; cert: string | Buffer };
  /** offer STARTTLS (needs tls); default true when tls is given */
  starttls?: boolean;
  /** advertise PIPELINING (default true) */
  pipelining?: boolean;
  size?: number;
  /** listen on this port (default 0: any free one); lets a test bring a server back where it was */
  port?: number;
}

export interface CaptureServer {
  host: string;
  port: number;
  messages: CapturedMessage[];
  /** Message-ID with or without angle brackets */
  byMessageId(id: string): CapturedMessage[];
  /** resolves when at least n messages were captured */
  waitFor(n: number, timeoutMs?: number): Promise<CapturedMessage[]>;
  /** replace (or with undefined remove) a fault hook while running */
  setHandler<K extends keyof CaptureHooks>(name: K, fn: CaptureHooks[K] | undefined): void;
  setAuth(auth: { user: string; pass: string }): void;
  /** forget what was captured so far (stats stay) */
  clear(): void;
  /** drop the TCP connection of a session without a reply (use from any hook to simulate a reset) */
  destroySession(sessionId: string): void;
  readonly stats: { connections: number; authAttempts: number; authFailures: number; dataCommands: number };
  /** destroys open connections at once, then closes the listener */
  close(): Promise<void>;
}

/** An error smtp-server turns into the reply `code message`. */
export function smtpError(code: number, message: string): Error & { responseCode: number } {
  return Object.assign(new Error(message), { responseCode: code });
}

function addressOf(a: SMTPServerAddress | false | undefined): string {
  return a ? a.address : '';
}

export async function startCaptureServer(opts: CaptureServerOptions = {}): Promise<CaptureServer> {
  const hooks: CaptureHooks = {
    onConnect: opts.onConnect,
    onMail: opts.onMail,
    onRcpt: opts.onRcpt,
    onData: opts.onData,
  };
  let auth = opts.auth;
  const messages: CapturedMessage[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const sockets = new Set<Socket>();
  const stats = { connections: 0, authAttempts: 0, authFailures: 0, dataCommands: 0 };
  const starttls = opts.tls ? opts.starttls !== false : false;

  const run = async <T>(fn: () => T | Promise<T>, cb: (err?: Error | null) => void): Promise<void> => {
    try {
      await fn();
      cb();
    } catch (err) {
      cb(err as Error);
    }
  };

  const server: SMTPServer = new SMTPServer({
    logger: false,
    secure: opts.secure ?? false,
    ...(opts.tls ? { key: opts.tls.key, cert: opts.tls.cert } : {}),
    hideSTARTTLS: !starttls,
    // with a TLS key but STARTTLS hidden, smtp-server must not offer it either
    disabledCommands: [...(auth ? [] : ['AUTH']), ...(starttls || opts.secure ? [] : ['STARTTLS'])],
    authOptional: !auth,
    allowInsecureAuth: true,
    hidePIPELINING: opts.pipelining === false,
    size: opts.size,
    // the greeting hostname; avoid reverse DNS on loopback
    disableReverseLookup: true,
    closeTimeout: 100,
    onConnect(session, cb) {
      stats.connections++;
      void run(() => hooks.onConnect?.(session), cb);
    },
    onAuth(a, _session, cb) {
      stats.authAttempts++;
      if (auth && a.username === auth.user && a.password === auth.pass) return cb(null, { user: a.username });
      stats.authFailures++;
      // RFC 4954 section 6: 535 5.7.8 authentication credentials invalid
      cb(smtpError(535, 'Authentication credentials invalid'));
    },
    onMailFrom(address, session, cb) {
      void run(() => hooks.onMail?.(address.address, session), cb);
    },
    onRcptTo(address, session, cb) {
      void run(() => hooks.onRcpt?.(address.address, session), cb);
    },
    onData(stream: Readable, session, cb) {
      stats.dataCommands++;
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('error', (err) => cb(err));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks);
        const envelope = {
          mailFrom: addressOf(session.envelope.mailFrom),
          rcptTo: session.envelope.rcptTo.map((r) => r.address),
        };
        const destroySocket = (): void => destroySession(session.id);
        void (async () => {
          try {
            const verdict = await hooks.onData?.({ raw, session, envelope, destroySocket });
            if (verdict === 'drop') return;
            const parsed = await simpleParser(raw);
            messages.push({
              envelope,
              parsed,
              raw,
              messageId: rawHeader(raw, 'Message-ID'),
              sessionId: session.id,
            });
            for (const w of [...waiters]) {
              if (messages.length >= w.n) {
                waiters.splice(waiters.indexOf(w), 1);
                w.resolve();
              }
            }
            cb(null, 'OK: queued as ' + session.id);
          } catch (err) {
            cb(err as Error);
          }
        })();
      });
    },
  });
  // smtp-server keeps its live connections in `connections`; each knows its session and socket
  const destroySession = (sessionId: string): void => {
    for (const conn of (server as unknown as { connections: Set<ConnLike> }).connections) {
      if (conn.session?.id === sessionId) conn._socket?.destroy();
    }
  };
  server.server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('error', () => {
    /* client resets are expected in fault tests */
  });
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const address = server.server.address();
  if (!address || typeof address === 'string') throw new Error('smtp capture server did not bind');

  return {
    host: '127.0.0.1',
    port: address.port,
    messages,
    stats,
    byMessageId(id) {
      const want = id.replace(/^<|>$/g, '');
      return messages.filter((m) => m.messageId?.replace(/^<|>$/g, '') === want);
    },
    waitFor(n, timeoutMs = 5000) {
      if (messages.length >= n) return Promise.resolve(messages);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`waited ${timeoutMs} ms for ${n} messages, have ${messages.length}`));
        }, timeoutMs);
        const w = {
          n,
          resolve: () => {
            clearTimeout(timer);
            resolve(messages);
          },
        };
        waiters.push(w);
      });
    },
    setHandler(name, fn) {
      hooks[name] = fn;
    },
    setAuth(a) {
      auth = a;
    },
    destroySession,
    clear() {
      messages.length = 0;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface ConnLike {
  session?: { id: string };
  _socket?: Socket;
}

/**
 * A header exactly as it went over the wire (unfolded), or undefined. mailparser normalises some
 * headers away (Importance and X-Priority become `parsed.priority`), so tests read them here.
 */
export function rawHeader(raw: Buffer, name: string): string | undefined {
  const end = raw.indexOf('\r\n\r\n');
  const head = raw.subarray(0, end < 0 ? raw.length : end).toString('utf8');
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`^${escaped}:[ \\t]*([^\\r\\n]*(?:\\r\\n[ \\t][^\\r\\n]*)*)`, 'im').exec(head);
  return m?.[1]?.replace(/\r\n[ \t]+/g, ' ').trim();
}

/** Whether the `openssl` CLI is there; TLS tests skip with this reason when it is not. */
export function opensslAvailable(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * A self-signed certificate for 127.0.0.1 / localhost, made with the openssl CLI (node:crypto can
 * make keys but not X.509 certificates). The cert is its own CA: trust it with tls.ca.
 */
export function selfSignedCert(): {
  key: string;
  cert: string;
  certFile: string;
  dir: string;
  cleanup(): void;
} {
  const dir = mkdtempSync(join(tmpdir(), 'smtp-cert-'));
  const keyFile = join(dir, 'key.pem');
  const certFile = join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  return {
    key: readFileSync(keyFile, 'utf8'),
    cert: readFileSync(certFile, 'utf8'),
    certFile,
    dir,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
