// XOAUTH2 end to end with real parts: a local OAuth2 token endpoint (node:http) that issues access
// tokens for a refresh token, and an smtp-server that accepts XOAUTH2 only for a token that endpoint
// issued and has not expired. The SMTP sink runs on its worker thread, as in the daemon.
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { SMTPServer } from 'smtp-server';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { smtpSchema } from '../../src/config/index.ts';
import { main } from '../../src/cli/index.ts';
import { createSmtpSink } from '../../src/sinks/index.ts';
import type { RenderedMessage } from '../../src/types.ts';
import { DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, startEmulator } from '../../src/emulator/index.ts';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
  vi.restoreAllMocks();
});

const USER = 'notifier@example.com';
const CLIENT_ID = 'app-1234';
const CLIENT_SECRET = 'client-secret-value-9f8e7d';
const REFRESH_TOKEN = 'refresh-token-value-1a2b3c';
const SCOPE = 'https://outlook.office365.com/SMTP.Send offline_access';

/** An OAuth2 token endpoint: the refresh-token grant (RFC 6749 section 6). */
async function tokenEndpoint(expiresIn = 3600) {
  const issued = new Map<string, number>(); // token -> expires at (ms)
  const requests: URLSearchParams[] = [];
  let n = 0;
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const form = new URLSearchParams(body);
      requests.push(form);
      const ok =
        req.method === 'POST' &&
        form.get('grant_type') === 'refresh_token' &&
        form.get('client_id') === CLIENT_ID &&
        form.get('client_secret') === CLIENT_SECRET &&
        form.get('refresh_token') === REFRESH_TOKEN;
      res.setHeader('content-type', 'application/json');
      if (!ok) {
        res.statusCode = 400;
        res.end(JSON.stringify({ error: 'invalid_grant', error_description: 'bad refresh token' }));
        return;
      }
      const token = `access-${++n}-${Math.random().toString(36).slice(2)}`;
      issued.set(token, Date.now() + expiresIn * 1000);
      res.end(
        JSON.stringify({ token_type: 'Bearer', access_token: token, expires_in: expiresIn, scope: SCOPE }),
      );
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/tenant-id/oauth2/v2.0/token`;
  return {
    url,
    requests,
    issued,
    /** the server side of expiry: the token stops working now */
    expire(token: string) {
      issued.set(token, 0);
    },
  };
}

/** An SMTP server that offers only XOAUTH2 and checks each token against the endpoint's list. */
async function xoauth2Server(issued: Map<string, number>) {
  const accepted: string[] = [];
  const refused: string[] = [];
  const received: string[] = [];
  const sockets = new Set<Socket>();
  const server = new SMTPServer({
    logger: false,
    authMethods: ['XOAUTH2'],
    allowInsecureAuth: true,
    disabledCommands: ['STARTTLS'],
    disableReverseLookup: true,
    onAuth(auth, _session, cb) {
      const exp = auth.accessToken ? issued.get(auth.accessToken) : undefined;
      if (auth.method === 'XOAUTH2' && auth.username === USER && exp !== undefined && exp > Date.now()) {
        accepted.push(auth.accessToken!);
        return cb(null, { user: USER });
      }
      refused.push(auth.accessToken ?? '');
      // RFC 7628 section 3.2.2: the error challenge; the client answers it and gets 535
      cb(null, { data: { status: '401', schemes: 'bearer', scope: 'https://outlook.office.com/SMTP.Send' } });
    },
    onData(stream: Readable, session, cb) {
      stream.resume();
      stream.on('end', () => {
        received.push(String(session.user));
        cb(null, 'OK');
      });
    },
  });
  server.server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('error', () => {});
  server.listen(0, '127.0.0.1');
  await once(server.server, 'listening');
  cleanups.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return { port: (server.server.address() as AddressInfo).port, accepted, refused, received };
}

/** main() in-process, with what it wrote to stdout and stderr */
async function runCli(argv: string[]): Promise<{ code: number; text: string }> {
  const chunks: string[] = [];
  const capture = (chunk: string | Uint8Array): boolean => {
    chunks.push(String(chunk));
    return true;
  };
  const out = vi.spyOn(process.stdout, 'write').mockImplementation(capture);
  const err = vi.spyOn(process.stderr, 'write').mockImplementation(capture);
  try {
    return { code: await main(argv), text: chunks.join('') };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

function msg(i: number): RenderedMessage {
  return {
    messageId: `<oauth.${i}@notifier.test>`,
    from: USER,
    to: ['owner@example.com'],
    cc: [],
    bcc: [],
    subject: `Lead ${i}`,
    text: 'x',
    headers: {},
    attachments: [],
  };
}

function oauthSmtp(port: number, accessUrl: string, extra: Record<string, unknown> = {}) {
  return smtpSchema.parse({
    host: '127.0.0.1',
    port,
    auth: {
      type: 'oauth2',
      user: USER,
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      refreshToken: REFRESH_TOKEN,
      accessUrl,
      scope: SCOPE,
    },
    ...extra,
  });
}

describe('SMTP AUTH XOAUTH2', () => {
  it('one token for the whole pool; a token expired mid-run is refused (535) once and replaced', async () => {
    const tokens = await tokenEndpoint();
    const smtp = await xoauth2Server(tokens.issued);
    // two messages per connection: connections are opened (and authenticate) all through the run
    const sink = createSmtpSink(
      oauthSmtp(smtp.port, tokens.url, { pool: { maxConnections: 3, maxMessages: 2 } }),
      {
        baseDir: process.cwd(),
      },
    );
    cleanups.push(() => sink.close());

    for (let i = 0; i < 6; i++) await sink.send(msg(i));
    await Promise.all([0, 1, 2, 3, 4, 5].map((i) => sink.send(msg(10 + i))));
    // five or more connections authenticated, with the one token: the refresh ran once
    expect(tokens.requests).toHaveLength(1);
    const first = [...tokens.issued.keys()][0]!;
    expect(smtp.accepted.length).toBeGreaterThanOrEqual(5);
    expect(new Set(smtp.accepted)).toEqual(new Set([first]));
    const form = tokens.requests[0]!;
    expect(form.get('grant_type')).toBe('refresh_token');
    expect(form.get('scope')).toBe(SCOPE);

    // the token stops working on the server's side before its stated expiry (revoked, or clock
    // skew): the next connection's AUTH is refused, the sink fetches a fresh token once and retries
    tokens.expire(first);
    for (let i = 0; i < 6; i++) await sink.send(msg(20 + i));
    expect(smtp.refused).toContain(first);
    expect(tokens.requests).toHaveLength(2);
    const second = [...tokens.issued.keys()][1]!;
    expect(second).not.toBe(first);
    expect(smtp.accepted.at(-1)).toBe(second);
    expect(smtp.received).toHaveLength(18);
  });

  it('refreshes ahead of expiry: a short-lived token is replaced before the server would refuse it', async () => {
    const tokens = await tokenEndpoint(2);
    const smtp = await xoauth2Server(tokens.issued);
    const sink = createSmtpSink(
      oauthSmtp(smtp.port, tokens.url, { pool: { maxConnections: 1, maxMessages: 1 } }),
      {
        baseDir: process.cwd(),
      },
    );
    cleanups.push(() => sink.close());
    await sink.send(msg(1));
    // 1.9 s later the 2 s token has 0.1 s left: inside the tenth of its lifetime kept in reserve
    await new Promise((r) => setTimeout(r, 1900));
    await sink.send(msg(2));
    expect(tokens.requests).toHaveLength(2);
    expect(smtp.refused).toHaveLength(0);
    expect(smtp.received).toHaveLength(2);
  });

  it('a refused refresh token fails the send as auth (what opens the circuit); secrets stay out of the error', async () => {
    const tokens = await tokenEndpoint();
    const smtp = await xoauth2Server(tokens.issued);
    const cfg = oauthSmtp(smtp.port, tokens.url);
    if (cfg.auth?.type === 'oauth2') cfg.auth.refreshToken = 'revoked-refresh-token-zz';
    const sink = createSmtpSink(cfg, { baseDir: process.cwd() });
    cleanups.push(() => sink.close());
    const err = await sink.send(msg(1)).then(
      () => undefined,
      (e: unknown) => e as { kind: string; message: string },
    );
    expect(err?.kind).toBe('auth');
    expect(err?.message).toContain('invalid_grant');
    expect(JSON.stringify(err)).not.toContain('revoked-refresh-token-zz');
    expect(JSON.stringify(err)).not.toContain(CLIENT_SECRET);
    expect(smtp.received).toHaveLength(0);
  });

  it('check --connect proves the token and the AUTH', async () => {
    const tokens = await tokenEndpoint();
    const smtp = await xoauth2Server(tokens.issued);
    const emulator = await startEmulator({ port: 0 });
    cleanups.push(() => emulator.close());
    const dir = mkdtempSync(join(tmpdir(), 'oauth-check-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'notifier.yaml');
    writeFileSync(
      file,
      [
        'salesforce:',
        `  loginUrl: ${emulator.url}`,
        `  auth: { flow: client_credentials, clientId: ${DEFAULT_CLIENT_ID}, clientSecret: ${DEFAULT_CLIENT_SECRET} }`,
        'smtp:',
        '  host: 127.0.0.1',
        `  port: ${smtp.port}`,
        '  auth:',
        '    type: oauth2',
        `    user: ${USER}`,
        `    clientId: ${CLIENT_ID}`,
        '    clientSecret: ${SMTP_CLIENT_SECRET}',
        '    refreshToken: ${SMTP_REFRESH_TOKEN}',
        `    accessUrl: ${tokens.url}`,
        "store: 'sqlite::memory:'",
        'rules:',
        '  - name: leads',
        '    email: { from: a@example.com, to: b@example.com, subject: s, text: t }',
        '',
      ].join('\n'),
    );
    vi.stubEnv('SMTP_CLIENT_SECRET', CLIENT_SECRET);
    vi.stubEnv('SMTP_REFRESH_TOKEN', REFRESH_TOKEN);
    const { code, text } = await runCli(['check', '--connect', '-c', file]);
    expect(text).toContain(`AUTH XOAUTH2 as ${USER}`);
    expect(text).not.toContain(REFRESH_TOKEN);
    expect(code).toBe(0);
    expect(tokens.requests).toHaveLength(1);
    expect(smtp.accepted).toHaveLength(1);
  });
});

describe('SMTP AUTH with user and password', () => {
  async function loginServer() {
    const methods: string[] = [];
    const server = new SMTPServer({
      logger: false,
      authMethods: ['PLAIN', 'LOGIN'],
      allowInsecureAuth: true,
      disabledCommands: ['STARTTLS'],
      disableReverseLookup: true,
      onAuth(auth, _session, cb) {
        methods.push(auth.method);
        if (auth.username === 'u' && auth.password === 'p') return cb(null, { user: 'u' });
        cb(Object.assign(new Error('Authentication credentials invalid'), { responseCode: 535 }));
      },
      onData(stream: Readable, _session, cb) {
        stream.resume();
        stream.on('end', () => cb(null, 'OK'));
      },
    });
    server.on('error', () => {});
    server.listen(0, '127.0.0.1');
    await once(server.server, 'listening');
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    return { port: (server.server.address() as AddressInfo).port, methods };
  }

  it.each(['LOGIN', 'PLAIN'] as const)('auth.method %s forces that mechanism', async (method) => {
    const srv = await loginServer();
    const cfg = smtpSchema.parse({
      host: '127.0.0.1',
      port: srv.port,
      auth: { user: 'u', pass: 'p', method },
    });
    const sink = createSmtpSink(cfg, { baseDir: process.cwd() });
    cleanups.push(() => sink.close());
    await sink.send(msg(1));
    expect(srv.methods).toEqual([method]);
  });

  it('type: login is the default and the same as no type', async () => {
    const a = smtpSchema.parse({ host: 'h', auth: { user: 'u', pass: 'p' } });
    const b = smtpSchema.parse({ host: 'h', auth: { type: 'login', user: 'u', pass: 'p' } });
    expect(a.auth).toMatchObject({ user: 'u', pass: 'p' });
    expect(b.auth).toMatchObject({ type: 'login', user: 'u', pass: 'p' });
    expect(smtpSchema.safeParse({ host: 'h', auth: { type: 'oauth2', user: 'u' } }).success).toBe(false);
  });
});
