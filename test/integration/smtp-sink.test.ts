import { beforeEach, describe, expect, it } from 'vitest';
import { smtpSchema, type SmtpConfig } from '../../src/config/schema.ts';
import { classifySmtpError, createSmtpSink, SendError, type SmtpSink } from '../../src/sinks/index.ts';
import type { RenderedMessage } from '../../src/types.ts';
import {
  opensslAvailable,
  rawHeader,
  selfSignedCert,
  smtpError,
  startCaptureServer,
  type CaptureServer,
  type CaptureServerOptions,
} from '../helpers/smtp-server.ts';
import { cleanupsAfterEach } from '../helpers/cleanups.ts';

const cleanups = cleanupsAfterEach();

async function setup(
  serverOpts: CaptureServerOptions = {},
  smtp: Partial<SmtpConfig> & Record<string, unknown> = {},
  baseDir = process.cwd(),
): Promise<{ server: CaptureServer; sink: SmtpSink }> {
  const server = await startCaptureServer(serverOpts);
  cleanups.push(() => server.close());
  const cfg = smtpSchema.parse({ host: server.host, port: server.port, ...smtp });
  const sink = createSmtpSink(cfg, { baseDir, inProcess });
  cleanups.push(() => sink.close());
  return { server, sink };
}

// every behaviour holds on the worker thread (the default) and in-process
let inProcess = false;

let seq = 0;
function message(over: Partial<RenderedMessage> = {}): RenderedMessage {
  seq++;
  return {
    messageId: `<sink-test.00Q${seq}@notifier.test>`,
    from: 'Lead desk <leads@example.com>',
    to: ['owner@example.com'],
    cc: [],
    bcc: [],
    subject: `Lead ${seq}`,
    text: 'hello',
    headers: {},
    attachments: [],
    ...over,
  };
}

async function failure(p: Promise<unknown>): Promise<SendError> {
  const err = await p.then(
    () => {
      throw new Error('expected the send to fail');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SendError);
  return err as SendError;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe.each([
  ['worker thread', false],
  ['in-process', true],
])('%s', (_mode, useInProcess) => {
  beforeEach(() => {
    inProcess = useInProcess;
  });

  describe('smtp sink: success', () => {
    it('sends headers, attachments, the exact Message-ID, and bcc only in the envelope', async () => {
      const { server, sink } = await setup();
      const msg = message({
        to: ['owner@example.com', 'sales@example.com'],
        cc: ['cc@example.com'],
        bcc: ['hidden@example.com'],
        replyTo: 'reply@example.com',
        subject: 'New lead: Ada Lovelace (Analytical Engines)',
        text: 'plain body',
        html: '<p>html body <img src="cid:logo@lead"></p>',
        headers: { Importance: 'high', 'X-Priority': '1 (Highest)', 'X-Lead-Id': '00Q000000000001AAA' },
        attachments: [
          { filename: 'lead.json', contentType: 'application/json', content: '{"Id":"00Q1"}' },
          {
            filename: 'blob.bin',
            contentType: 'application/octet-stream',
            content: 'AAECAwQ=',
            encoding: 'base64',
          },
          {
            filename: 'logo.png',
            contentType: 'image/png',
            content: 'iVBORw0KGgo=',
            encoding: 'base64',
            cid: 'logo@lead',
          },
        ],
      });
      const result = await sink.send(msg);
      expect(result.accepted.sort()).toEqual(
        ['cc@example.com', 'hidden@example.com', 'owner@example.com', 'sales@example.com'].sort(),
      );
      expect(result.rejected).toEqual([]);
      expect(result.response).toMatch(/^250 /);
      expect(result.messageId).toBe(msg.messageId);

      const [got] = await server.waitFor(1);
      expect(got!.messageId).toBe(msg.messageId);
      expect(got!.envelope.mailFrom).toBe('leads@example.com');
      expect(got!.envelope.rcptTo.sort()).toEqual(result.accepted.sort());
      const p = got!.parsed;
      expect(rawHeader(got!.raw, 'Importance')).toBe('high');
      expect(rawHeader(got!.raw, 'X-Priority')).toBe('1 (Highest)');
      expect(p.headers.get('x-lead-id')).toBe('00Q000000000001AAA');
      expect(p.headers.has('bcc')).toBe(false);
      expect(got!.raw.toString('utf8')).not.toContain('hidden@example.com');
      expect(p.subject).toBe(msg.subject);
      expect(p.text?.trim()).toBe('plain body');
      expect(p.html).toContain('html body');
      expect(p.replyTo?.text).toBe('reply@example.com');
      const att = Object.fromEntries(p.attachments.map((a) => [a.filename, a]));
      expect(att['lead.json']!.content.toString()).toBe('{"Id":"00Q1"}');
      expect(att['lead.json']!.contentDisposition).toBe('attachment');
      expect([...att['blob.bin']!.content]).toEqual([0, 1, 2, 3, 4]);
      expect(att['logo.png']!.contentDisposition).toBe('inline');
      expect(att['logo.png']!.cid).toBe('logo@lead');
      expect(att['lead.json']!.cid).toBeUndefined();
    });

    it('partial acceptance is a success that keeps the refused recipient and its reply', async () => {
      const { server, sink } = await setup({
        onRcpt: (addr) => {
          if (addr === 'gone@example.com') throw smtpError(550, '5.1.1 mailbox unavailable');
        },
      });
      const result = await sink.send(message({ to: ['owner@example.com', 'gone@example.com'] }));
      expect(result.accepted).toEqual(['owner@example.com']);
      expect(result.rejected).toEqual(['gone@example.com']);
      expect(result.rejectedReplies?.['gone@example.com']).toMatch(/^550 /);
      expect((await server.waitFor(1))[0]!.envelope.rcptTo).toEqual(['owner@example.com']);
    });

    it('never reads files or URLs named in record data', async () => {
      const { server, sink } = await setup();
      // a template cannot produce a `path` attachment, but an html body with a file: image must stay text
      const msg = message({ html: '<img src="file:///etc/passwd">' });
      await sink.send(msg);
      const [got] = await server.waitFor(1);
      expect(got!.raw.toString()).not.toContain('root:');
    });
  });

  describe('smtp sink: each fault lands in the right kind', () => {
    it('421 at the greeting -> retry', async () => {
      const { server, sink } = await setup({
        onConnect: () => {
          throw smtpError(421, 'too busy, try later');
        },
      });
      const err = await failure(sink.send(message()));
      expect(err.kind).toBe('retry');
      expect(err.responseCode).toBe(421);
      expect(server.messages).toHaveLength(0);
    });

    it('451 at RCPT -> retry', async () => {
      const { sink } = await setup({
        onRcpt: () => {
          throw smtpError(451, '4.3.0 try again later');
        },
      });
      const err = await failure(sink.send(message()));
      expect(err).toMatchObject({ kind: 'retry', responseCode: 451, code: 'EENVELOPE' });
    });

    it('550 for every recipient -> dead, reply kept', async () => {
      const { server, sink } = await setup({
        onRcpt: () => {
          throw smtpError(550, '5.1.1 no such user');
        },
      });
      const err = await failure(sink.send(message({ to: ['a@example.com', 'b@example.com'] })));
      expect(err.kind).toBe('dead');
      expect(err.responseCode).toBe(550);
      expect(err.response).toMatch(/^550 .*no such user/);
      expect(server.stats.dataCommands).toBe(0);
    });

    it('550 at MAIL FROM -> dead', async () => {
      const { sink } = await setup({
        onMail: () => {
          throw smtpError(553, '5.7.1 sender not allowed');
        },
      });
      const err = await failure(sink.send(message()));
      expect(err).toMatchObject({ kind: 'dead', responseCode: 553 });
    });

    it('554 after DATA -> dead, nothing captured', async () => {
      const { server, sink } = await setup({
        onData: () => {
          throw smtpError(554, '5.6.0 content rejected');
        },
      });
      const err = await failure(sink.send(message()));
      expect(err).toMatchObject({ kind: 'dead', responseCode: 554, command: 'DATA' });
      expect(server.messages).toHaveLength(0);
    });

    it('451 after DATA -> retry', async () => {
      const { sink } = await setup({
        onData: () => {
          throw smtpError(451, '4.3.0 queue full');
        },
      });
      expect((await failure(sink.send(message()))).kind).toBe('retry');
    });

    it('535 at AUTH -> auth, and verify() says the same', async () => {
      const { server, sink } = await setup(
        { auth: { user: 'u', pass: 'right' } },
        { auth: { user: 'u', pass: 'wrong' } },
      );
      const err = await failure(sink.send(message()));
      expect(err).toMatchObject({ kind: 'auth', code: 'EAUTH', responseCode: 535 });
      const verr = await failure(sink.verify());
      expect(verr.kind).toBe('auth');
      expect(server.stats.authFailures).toBeGreaterThanOrEqual(2);
      expect(server.messages).toHaveLength(0);
      server.setAuth({ user: 'u', pass: 'wrong' });
      await sink.verify();
      await sink.send(message());
      expect(server.messages).toHaveLength(1);
    });

    it('connection reset after the data went out -> uncertain, and the pool does not send it again', async () => {
      const { server, sink } = await setup({
        onData: (ctx) => {
          // the server keeps the message (as a real one might) but the reply never reaches the client
          ctx.destroySocket();
        },
      });
      const msg = message();
      const err = await failure(sink.send(msg));
      expect(err.kind).toBe('uncertain');
      expect(err.code).toBe('ECONNECTION');
      // nothing (pool re-queue, a retry inside the sink) may send it again: give it time to try
      await sleep(400);
      expect(server.stats.dataCommands).toBe(1);
      expect(server.byMessageId(msg.messageId)).toHaveLength(1);
      // a later send on the same sink still works (a fresh pooled connection)
      server.setHandler('onData', undefined);
      await sink.send(message());
      expect(server.messages).toHaveLength(2);
    });

    it('connection reset before the data -> retry', async () => {
      const { server, sink } = await setup();
      server.setHandler('onRcpt', async (_addr, session) => {
        server.destroySession(session.id);
        await sleep(50);
      });
      const err = await failure(sink.send(message()));
      expect(err.kind).toBe('retry');
      expect(server.stats.dataCommands).toBe(0);
    });

    it('our deadline: a server stalling the envelope -> retry; one stalling the final reply -> uncertain', async () => {
      let release: () => void = () => {};
      const held = new Promise<void>((r) => (release = r));
      const { server, sink } = await setup({ onRcpt: () => held }, { sendTimeoutMs: 300 });
      const t0 = Date.now();
      const before = await failure(sink.send(message()));
      expect(before.kind).toBe('retry');
      expect(before.code).toBe('EABORT');
      expect(Date.now() - t0).toBeLessThan(3000);

      server.setHandler('onRcpt', undefined);
      server.setHandler('onData', () => held);
      const after = await failure(sink.send(message()));
      expect(after.kind).toBe('uncertain');
      expect(after.code).toBe('EABORT');
      release();
    });
  });

  describe('smtp sink: TLS', () => {
    const haveOpenssl = opensslAvailable();

    it.skipIf(!haveOpenssl)(
      'STARTTLS with a self-signed cert trusted through tls.ca (relative to baseDir)',
      async () => {
        const cert = selfSignedCert();
        cleanups.push(() => cert.cleanup());
        const { server, sink } = await setup(
          { tls: { key: cert.key, cert: cert.cert }, auth: { user: 'u', pass: 'p' } },
          {
            requireTLS: true,
            tls: { ca: 'cert.pem', rejectUnauthorized: true },
            auth: { user: 'u', pass: 'p' },
          },
          cert.dir,
        );
        await sink.verify();
        await sink.send(message());
        const [got] = await server.waitFor(1);
        expect(got!.parsed.subject).toMatch(/^Lead /);
      },
    );

    it.skipIf(!haveOpenssl)(
      'an untrusted certificate -> auth (the circuit kind: a config problem)',
      async () => {
        const cert = selfSignedCert();
        cleanups.push(() => cert.cleanup());
        const { server, sink } = await setup(
          { tls: { key: cert.key, cert: cert.cert } },
          { requireTLS: true },
        );
        const err = await failure(sink.send(message()));
        // nodemailer reports it as ESOCKET; the TLS verification code decides the kind
        expect(err.kind).toBe('auth');
        expect(err.originalCode).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
        expect(server.messages).toHaveLength(0);
      },
    );

    // requireTLS against a server that does not offer STARTTLS is a configuration problem (or a
    // downgrade attack): dead-lettering every row would lose mail over a fixable setting, retrying
    // burns attempts. 'auth' opens the dispatcher's circuit: rows stay pending, the operator is told
    // once, and sending resumes when the server (or the config) is fixed.
    it('requireTLS against a server without STARTTLS -> auth, nothing sent in clear', async () => {
      const { server, sink } = await setup({}, { requireTLS: true });
      const err = await failure(sink.send(message()));
      expect(err.kind).toBe('auth');
      expect(err.code).toBe('ETLS');
      expect(server.stats.dataCommands).toBe(0);
    });
  });
});

describe('classifySmtpError', () => {
  const cases: [string, object, 'before-data' | 'after-data', string][] = [
    ['4xx anywhere', { code: 'EENVELOPE', responseCode: 452, command: 'RCPT TO' }, 'before-data', 'retry'],
    ['421 after data', { code: 'EMESSAGE', responseCode: 421, command: 'DATA' }, 'after-data', 'retry'],
    [
      '503 bad sequence',
      { code: 'EENVELOPE', responseCode: 503, command: 'RCPT TO' },
      'before-data',
      'retry',
    ],
    ['5xx after data', { code: 'EMESSAGE', responseCode: 552, command: 'DATA' }, 'after-data', 'dead'],
    ['5xx greeting', { code: 'EPROTOCOL', responseCode: 554, command: 'CONN' }, 'before-data', 'auth'],
    ['EAUTH 454', { code: 'EAUTH', responseCode: 454, command: 'AUTH PLAIN' }, 'before-data', 'auth'],
    ['reset before data', { code: 'ECONNECTION', command: 'CONN' }, 'before-data', 'retry'],
    ['timeout after data', { code: 'ETIMEDOUT', command: 'CONN' }, 'after-data', 'uncertain'],
    ['DNS', { code: 'EDNS' }, 'before-data', 'retry'],
    ['local size refusal', { code: 'EMESSAGE', command: 'MAIL FROM' }, 'before-data', 'dead'],
    ['not an error object', { message: 'x' }, 'before-data', 'retry'],
  ];
  it.each(cases)('%s', (_name, err, phase, kind) => {
    expect(classifySmtpError(err, phase)).toBe(kind);
  });
  it('ignores the message text', () => {
    expect(classifySmtpError({ message: '550 user unknown' }, 'before-data')).toBe('retry');
  });
});
