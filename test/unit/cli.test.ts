// The commands called in-process through main(argv), as a test or an embedding program would:
// the exit code comes back, nothing exits the process. What they print is read off stdout/stderr.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/index.ts';

const FIXTURES = new URL('../fixtures/config/', import.meta.url).pathname;
let printed: { out: string; err: string };

beforeEach(() => {
  printed = { out: '', err: '' };
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((printed.out += String(chunk)), true));
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => ((printed.err += String(chunk)), true));
  vi.stubEnv('SF_CLIENT_SECRET', 'sf-secret-value-1');
  vi.stubEnv('SMTP_PASS', 'smtp-pass-value-1');
});
afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
});

describe('main(argv) in-process', () => {
  it('check -c FILE returns 0 for a valid config', async () => {
    expect(await main(['check', '-c', join(FIXTURES, 'valid-minimal.yaml')])).toBe(0);
    expect(printed.out).toMatch(/^config ok: .*valid-minimal\.yaml \(1 rules, 1 enabled\)$/m);
  });

  it('check returns 2 for an invalid config, with the file, the line and the key', async () => {
    expect(await main(['check', '-c', join(FIXTURES, 'broken', 'cron-bad-minute.yaml')])).toBe(2);
    expect(printed.err).toMatch(
      /^invalid configuration:\n {2}.*cron-bad-minute\.yaml:12 rules\[0\]\.schedule: /m,
    );
  });

  it('a template that does not compile is an invalid config (the template hook runs)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ln-cli-'));
    try {
      const file = join(dir, 'n.yaml');
      writeFileSync(
        file,
        `salesforce: { auth: { flow: access_token, accessToken: tok-123456, instanceUrl: "https://x.example.com" } }\n` +
          `smtp: { host: smtp.example.com }\n` +
          `rules:\n  - name: r\n    email: { from: a@example.com, to: b@example.com, subject: "{{#if}}", text: x }\n`,
      );
      expect(await main(['check', '-c', file])).toBe(2);
      expect(printed.err).toMatch(/rules\[0\]\.email\.subject: /);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('usage errors return 2 with the usage; --help and --version return 0', async () => {
    expect(await main(['dry-run', '--limit', '0', '-c', join(FIXTURES, 'valid-minimal.yaml')])).toBe(2);
    expect(printed.err).toContain('--limit must be 1..2000\nUsage: lead-notifier dry-run');
    expect(await main(['outbox', 'list', '--bogus'])).toBe(2);
    expect(await main(['nosuch'])).toBe(2);
    expect(printed.err).toContain("unknown command 'nosuch'");
    expect(await main([])).toBe(2);
    expect(await main(['status', '--help'])).toBe(0);
    expect(printed.out).toContain('Usage: lead-notifier status [-c FILE] [--json]');
    expect(await main(['--version'])).toBe(0);
    expect(printed.out).toMatch(/^\d+\.\d+\.\d+$/m);
  });

  it('a runtime failure returns 1 with one line, scrubbed of the config secrets', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ln-cli-'));
    try {
      const file = join(dir, 'n.yaml');
      writeFileSync(
        file,
        `salesforce: { auth: { flow: client_credentials, clientId: abc, clientSecret: \${SF_CLIENT_SECRET} } }\n` +
          `smtp: { host: smtp.example.com }\nstore: "sqlite:./data/sf-secret-value-1.db"\n` +
          `rules:\n  - name: r\n    email: { from: a@example.com, to: b@example.com, subject: s, text: x }\n`,
      );
      // no store yet: status says so (exit 1), and the secret in the path is redacted
      expect(await main(['status', '-c', file])).toBe(1);
      expect(printed.err).toMatch(/^lead-notifier status: store file does not exist: .*\[redacted\]\.db/m);
      expect(printed.err).not.toContain('sf-secret-value-1');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
