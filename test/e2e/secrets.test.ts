// Secrets never reach the log: a daemon at log level trace, with every kind of secret in its
// config (SMTP password, OAuth client secret, a JWT private key) and failures that make it talk
// about them, writes none of them; nor do status and check.
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { CliProcess } from '../helpers/process.ts';
import { leadFields, startStack, teardown } from '../helpers/stack.ts';
import type { Stack } from '../helpers/stack.ts';

let stack: Stack | undefined;
let proc: CliProcess | undefined;
afterEach(async () => {
  await teardown(proc, stack);
  proc = undefined;
  stack = undefined;
});

const SMTP_PASS = 'smtp-Pa55word-that-must-not-leak';
const CLIENT_SECRET = 'client-secret-that-must-not-leak';

describe('secrets in logs', () => {
  it('passwords, client secrets, tokens and private keys never reach the log or status', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const privatePem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    stack = await startStack({
      emulator: {
        clients: [
          {
            clientId: 'jwt-app',
            jwtPublicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
          },
          { clientId: 'secret-app', clientSecret: CLIENT_SECRET },
        ],
      },
      // the server wants another password: every send fails authentication and gets logged
      smtp: { auth: { user: 'notifier', pass: 'the-right-one' } },
    });
    writeFileSync(join(stack.dir, 'jwt.key'), privatePem);
    const config = {
      ...stack.config,
      log: { level: 'trace' },
      salesforce: {
        ...(stack.config.salesforce as object),
        auth: {
          flow: 'jwt',
          clientId: 'jwt-app',
          username: 'integration@example.com',
          privateKeyFile: 'jwt.key',
        },
      },
      smtp: { ...(stack.config.smtp as object), auth: { user: 'notifier', pass: SMTP_PASS } },
    };
    stack.writeConfig(config);
    proc = stack.run();
    await proc.waitForLine((_l, j) => j?.msg === 'poll');
    stack.emu.org.insert('Lead', leadFields(1));
    await proc.waitForLine((l) => /circuit open/i.test(l), 20_000);
    // a second daemon run with a client secret that Salesforce refuses at first
    proc.kill('SIGTERM');
    await proc.exit;
    const before = proc.lines.join('\n') + proc.stderr.join('\n');
    stack.writeConfig({
      ...config,
      salesforce: {
        ...(config.salesforce as object),
        auth: { flow: 'client_credentials', clientId: 'secret-app', clientSecret: CLIENT_SECRET + '-wrong' },
      },
    });
    // a token endpoint that echoes what it was sent in its error (some proxies and IdPs do)
    stack.emu.control.addFault({
      path: '/services/oauth2/token',
      status: 400,
      contentType: 'application/json',
      body: JSON.stringify({
        error: 'invalid_client',
        error_description: `bad client_secret=${CLIENT_SECRET}-wrong`,
      }),
      count: 5,
    });
    proc = stack.run();
    await proc.waitForLine((l) => /authentication failed/i.test(l), 20_000);
    proc.kill('SIGTERM');
    await proc.exit;
    const after = proc.lines.join('\n') + proc.stderr.join('\n');
    const status = (await stack.cli(['status', '--json'])).stdout + (await stack.cli(['status'])).stdout;
    const check = await stack.cli(['check', '--connect']);

    const keyBody = privatePem.split('\n')[1]!; // a line of the key's base64
    for (const text of [before, after, status, check.stdout, check.stderr]) {
      expect(text).not.toContain(SMTP_PASS);
      expect(text).not.toContain(CLIENT_SECRET);
      expect(text).not.toContain(keyBody);
      expect(text).not.toMatch(/BEGIN (RSA )?PRIVATE KEY/);
      // no session token in any form
      expect(text).not.toMatch(/access_token|(Bearer|OAuth) [A-Za-z0-9!._-]{16,}/);
    }
    // and the log did talk about the failures (so the test looked at real error lines)
    expect(before).toMatch(/EAUTH|535/);
    expect(after).toMatch(/authentication failed/i);
  }, 60_000);
});
