// The README's "Relays" section: every ready `smtp:` block passes `check` (run in-process), so the
// documented configs cannot drift from the schema.
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/index.ts';
import { loadConfig, sendLimits } from '../../src/config/index.ts';

const README = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');
const dir = mkdtempSync(join(tmpdir(), 'relays-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  vi.unstubAllEnvs();
});

/** the yaml blocks of the Relays section, by the heading above each */
function relayBlocks(): { name: string; yaml: string }[] {
  const start = README.indexOf('\n## Relays\n');
  const end = README.indexOf('\n## ', start + 1);
  const section = README.slice(start, end);
  const blocks: { name: string; yaml: string }[] = [];
  const re = /^### (.+)$|^```yaml\n([\s\S]*?)^```$/gm;
  let heading = '';
  for (const m of section.matchAll(re)) {
    if (m[1]) heading = m[1];
    else blocks.push({ name: heading, yaml: m[2]! });
  }
  return blocks;
}

const REST = `
salesforce:
  auth: { flow: client_credentials, clientId: id, clientSecret: '\${SF_SECRET}' }
store: sqlite:./data/notifier.db
rules:
  - name: new-leads
    email: { from: notifier@example.com, to: sales@example.com, subject: 'New lead {{LastName}}', text: '{{Company}}' }
`;

async function check(file: string): Promise<{ code: number; text: string }> {
  const chunks: string[] = [];
  const capture = (c: string | Uint8Array): boolean => {
    chunks.push(String(c));
    return true;
  };
  const out = vi.spyOn(process.stdout, 'write').mockImplementation(capture);
  const err = vi.spyOn(process.stderr, 'write').mockImplementation(capture);
  try {
    return { code: await main(['check', '-c', file]), text: chunks.join('') };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

describe('README relay blocks', () => {
  const blocks = relayBlocks();

  it('has one block each for Microsoft 365, Google Workspace, Amazon SES, SendGrid, Postmark and a local Postfix', () => {
    const names = blocks.map((b) => b.name).join(' | ');
    for (const relay of [
      'Microsoft 365',
      'Google Workspace',
      'Amazon SES',
      'SendGrid',
      'Postmark',
      'Postfix',
    ]) {
      expect(names).toContain(relay);
    }
    expect(blocks).toHaveLength(6);
  });

  it.each(relayBlocks().map((b) => [b.name, b.yaml] as const))('%s passes check', async (name, yaml) => {
    const sub = join(dir, name.replace(/\W+/g, '-'));
    mkdirSync(join(sub, 'keys'), { recursive: true });
    if (yaml.includes('privateKeyFile: keys/dkim.pem')) {
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      writeFileSync(join(sub, 'keys', 'dkim.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
    }
    for (const [, v] of `${yaml}${REST}`.matchAll(/\$\{([A-Z0-9_]+)\}/g)) vi.stubEnv(v!, `value-of-${v}`);
    const file = join(sub, 'notifier.yaml');
    writeFileSync(file, `${yaml}${REST}`);
    const { code, text } = await check(file);
    expect(text).toMatch(/^config ok: /);
    expect(code).toBe(0);
    // secrets from the environment are not echoed
    expect(text).not.toMatch(/value-of-\w*(SECRET|TOKEN|PASSWORD|KEY)/);
  });

  it('the presets in the blocks expand to the documented numbers', async () => {
    const m365 = blocks.find((b) => b.name.startsWith('Microsoft 365'))!;
    const sub = join(dir, 'm365-limits');
    mkdirSync(sub, { recursive: true });
    for (const [, v] of `${m365.yaml}${REST}`.matchAll(/\$\{([A-Z0-9_]+)\}/g)) vi.stubEnv(v!, 'x');
    writeFileSync(join(sub, 'notifier.yaml'), `${m365.yaml}${REST}`);
    const config = await loadConfig(join(sub, 'notifier.yaml'));
    const limits = sendLimits(config.smtp);
    expect(limits.dailyLimit).toBe(10_000);
    expect(limits.ratePerMs! * 60_000).toBeLessThanOrEqual(30);
    expect(limits.ratePerMs! * 60_000).toBeGreaterThan(28);
    expect(config.smtp.auth).toMatchObject({
      type: 'oauth2',
      accessUrl: 'https://login.microsoftonline.com/x/oauth2/v2.0/token',
    });
  });
});
