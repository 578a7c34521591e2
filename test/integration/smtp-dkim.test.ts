// DKIM signing: nodemailer's signer in the SMTP sink (on its worker thread), verified on the message
// as received by a standalone DKIM verifier (mailauth) against the public key handed to it through a
// resolver, so no DNS. And the key checked at config load.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dkimVerify } from 'mailauth';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/index.ts';
import { parseConfigText, secretsOf, smtpSchema } from '../../src/config/index.ts';
import { createSmtpSink } from '../../src/sinks/index.ts';
import { ConfigError } from '../../src/util/errors.ts';
import { startCaptureServer } from '../helpers/smtp-server.ts';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'dkim-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** an RSA key pair: the PEM private key and the TXT record that publishes the public one */
function dkimKey(): { pem: string; txt: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const spki = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  return { pem, txt: `v=DKIM1; k=rsa; p=${spki}` };
}

const CONFIG = (dkim: string) => `
salesforce:
  auth: { flow: client_credentials, clientId: id, clientSecret: secret }
smtp:
  host: 127.0.0.1
  dkim:
${dkim}
rules:
  - name: leads
    email: { from: a@example.com, to: b@example.com, subject: s, text: t }
`;

describe('DKIM', () => {
  it('signs every message; the signature verifies on the received message', async () => {
    const dir = tempDir();
    const key = dkimKey();
    writeFileSync(join(dir, 'dkim.pem'), key.pem);
    const server = await startCaptureServer();
    cleanups.push(() => server.close());
    const cfg = smtpSchema.parse({
      host: server.host,
      port: server.port,
      dkim: { domainName: 'example.com', keySelector: 's1', privateKeyFile: 'dkim.pem' },
    });
    const sink = createSmtpSink(cfg, { baseDir: dir });
    cleanups.push(() => sink.close());
    await sink.send({
      messageId: '<leads.00Q000000000000001@example.com>',
      from: 'Lead desk <leads@example.com>',
      to: ['owner@example.com'],
      cc: [],
      bcc: [],
      subject: 'New lead: Ada Lovelace (Analytical Engines)',
      text: 'A new lead: Ada Lovelace\n',
      html: '<p>A new lead: <b>Ada Lovelace</b></p>',
      headers: {},
      attachments: [{ filename: 'lead.json', contentType: 'application/json', content: '{"Id":"00Q1"}' }],
    });
    const [received] = await server.waitFor(1);
    const lookups: string[] = [];
    const result = await dkimVerify(received!.raw, {
      resolver: async (name, type) => {
        lookups.push(`${type} ${name}`);
        if (type === 'TXT' && name === 's1._domainkey.example.com') return [[key.txt]];
        throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
      },
    });
    expect(lookups).toContain('TXT s1._domainkey.example.com');
    expect(result.results).toHaveLength(1);
    const sig = result.results[0]!;
    expect(sig.signingDomain).toBe('example.com');
    expect(sig.selector).toBe('s1');
    expect(sig.status.result).toBe('pass');

    // the same message with one changed byte in the body fails: the check is a real one
    const tampered = Buffer.from(
      received!.raw.toString('utf8').replace('Ada Lovelace</b>', 'Ada Lovelacf</b>'),
    );
    expect(tampered.equals(received!.raw)).toBe(false);
    const bad = await dkimVerify(tampered, { resolver: async () => [[key.txt]] });
    expect(bad.results[0]!.status.result).not.toBe('pass');
    expect(bad.results[0]!.status.comment).toMatch(/body hash/);
  });

  it('check fails with the key path on a bad PEM, and on a missing key file', async () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, 'dkim.pem'),
      '-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n',
    );
    const file = join(dir, 'notifier.yaml');
    writeFileSync(file, CONFIG('    { domainName: example.com, keySelector: s1, privateKeyFile: dkim.pem }'));
    const chunks: string[] = [];
    const err = vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => {
      chunks.push(String(c));
      return true;
    });
    const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    let code: number;
    try {
      code = await main(['check', '-c', file]);
    } finally {
      err.mockRestore();
      out.mockRestore();
    }
    expect(code).toBe(2);
    expect(chunks.join('')).toMatch(
      new RegExp(
        `notifier\\.yaml:\\d+ smtp\\.dkim\\.privateKeyFile: is not a PEM private key: ${join(dir, 'dkim.pem')}`,
      ),
    );

    expect(() =>
      parseConfigText(
        CONFIG('    { domainName: example.com, keySelector: s1, privateKeyFile: absent.pem }'),
        file,
      ),
    ).toThrow(ConfigError);
    try {
      parseConfigText(
        CONFIG('    { domainName: example.com, keySelector: s1, privateKeyFile: absent.pem }'),
        file,
      );
    } catch (e) {
      expect((e as ConfigError).issues.join('\n')).toContain(
        `smtp.dkim.privateKeyFile: private key file not found: ${join(dir, 'absent.pem')}`,
      );
    }
  });

  it('the private key is a secret: scrubbed from anything logged', () => {
    const dir = tempDir();
    const key = dkimKey();
    writeFileSync(join(dir, 'dkim.pem'), key.pem);
    const c = parseConfigText(
      CONFIG('    { domainName: example.com, keySelector: s1, privateKeyFile: dkim.pem }'),
      join(dir, 'n.yaml'),
    );
    expect(c.smtp.dkim?.privateKeyFile).toBe(join(dir, 'dkim.pem'));
    expect(secretsOf(c)).toContain(key.pem.trim());
  });
});
