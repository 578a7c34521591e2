// Config keys of the channels beside email: webhook, slack, teams (DESIGN.md "Channels").
import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, parseConfigText, redactConfig, secretsOf } from '../../src/config/index.ts';
import { compileRule } from '../../src/templates/index.ts';
import { ConfigError } from '../../src/util/errors.ts';

const EMAIL = '    email: { from: a@example.com, to: b@example.com, subject: s, text: t }';

function config(channels: string): string {
  return `salesforce:
  auth: { flow: client_credentials, clientId: abc, clientSecret: s3cret }
smtp: { host: smtp.example.com, port: 587 }
rules:
  - name: r
${channels}
`;
}

const parse = (text: string) => parseConfigText(text, 'notifier.yaml', { env: {} });

/** as `check` loads it: from a file, every rule's templates compiled */
async function checkIssues(text: string): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'ln-chan-config-'));
  try {
    writeFileSync(join(dir, 'notifier.yaml'), text);
    await loadConfig(join(dir, 'notifier.yaml'), {
      env: {},
      ruleChecks: (rule, baseDir) => void compileRule(rule, baseDir),
    });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  throw new Error('config loaded without error');
}

function issues(text: string): string[] {
  try {
    parse(text);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues;
  }
  throw new Error('config parsed without error');
}

describe('channel config', () => {
  it('webhook, slack and teams beside or instead of email, with their defaults', () => {
    const c = parse(
      config(`    webhook: { url: "https://hooks.example.com/leads", secret: hook-secret-1, headers: { Authorization: "Bearer tok-123456" } }
    slack: { webhookUrl: "https://hooks.slack.com/services/T0/B0/xyzsecret", text: "New {{LastName}}", concurrency: 2 }
    teams: { webhookUrl: "http://127.0.0.1:9/teams", title: "New lead", fields: { Company: "{{Company}}" } }`),
    );
    const r = c.rules[0]!;
    expect(r.email).toBeUndefined();
    expect(r.webhook).toMatchObject({
      timeoutMs: 10_000,
      allowInsecure: false,
      headers: { Authorization: 'Bearer tok-123456' },
    });
    expect(r.slack).toMatchObject({ concurrency: 2, timeoutMs: 10_000 });
    expect(r.teams?.fields).toEqual({ Company: '{{Company}}' });
    // secrets: the signing key, every header value, the Slack/Teams URLs
    const secrets = secretsOf(c);
    expect(secrets).toEqual(
      expect.arrayContaining([
        'hook-secret-1',
        'Bearer tok-123456',
        'https://hooks.slack.com/services/T0/B0/xyzsecret',
      ]),
    );
    const shown = JSON.stringify(redactConfig(c));
    for (const s of ['hook-secret-1', 'tok-123456', 'xyzsecret', '127.0.0.1:9/teams'])
      expect(shown).not.toContain(s);
    expect(
      parse(config(`${EMAIL}\n    slack: { webhookUrl: "https://hooks.slack.com/x", text: t }`)).rules[0]!
        .email,
    ).toBeDefined();
  });

  it('refuses a rule without any channel', () => {
    expect(issues(config('    where: "x = 1"'))).toEqual([
      expect.stringContaining('rules[0].email: needs at least one channel: email, webhook, slack or teams'),
    ]);
  });

  it('refuses http to a host that is not loopback unless allowInsecure, and URLs that are not URLs or are templates', () => {
    expect(issues(config('    webhook: { url: "http://hooks.example.com/x" }'))[0]).toContain(
      'rules[0].webhook.url: must be https:// (http:// only to a loopback host, or with allowInsecure: true)',
    );
    expect(issues(config('    slack: { webhookUrl: "http://10.0.0.1/x", text: t }'))[0]).toContain(
      'rules[0].slack.webhookUrl: must be https://',
    );
    expect(
      parse(config('    webhook: { url: "http://hooks.example.com/x", allowInsecure: true }')).rules[0]!
        .webhook?.allowInsecure,
    ).toBe(true);
    for (const host of ['127.0.0.1:8080', 'localhost', '[::1]:9000'])
      expect(parse(config(`    webhook: { url: "http://${host}/x" }`)).rules[0]!.webhook?.url).toContain(
        host,
      );
    expect(issues(config('    webhook: { url: "not a url" }'))[0]).toContain('rules[0].webhook.url');
    expect(issues(config('    webhook: { url: "ftp://example.com/x" }'))[0]).toContain(
      'rules[0].webhook.url',
    );
    expect(issues(config('    webhook: { url: "https://example.com/{{Id}}" }'))[0]).toContain(
      'rules[0].webhook.url',
    );
  });

  it('refuses headers the notifier sets itself, unknown keys, and a digest with other channels', () => {
    expect(
      issues(config('    webhook: { url: "https://h.example.com", headers: { Idempotency-Key: x } }'))[0],
    ).toContain('rules[0].webhook.headers');
    expect(
      issues(config('    slack: { webhookUrl: "https://h.example.com", text: t, color: red }'))[0],
    ).toContain('rules[0].slack');
    expect(
      issues(
        config(
          `${EMAIL}\n    digest: { schedule: "0 0 8 * * *" }\n    slack: { webhookUrl: "https://h.example.com", text: t }`,
        ),
      )[0],
    ).toContain('rules[0].slack: a digest rule sends email only');
  });

  it('check validates the templates of every channel', async () => {
    expect(
      (await checkIssues(config('    slack: { webhookUrl: "https://h.example.com", text: "{{#if x}}" }')))[0],
    ).toContain('rules[0].slack.text');
    expect(
      (
        await checkIssues(
          config('    webhook: { url: "https://h.example.com", body: "{{nosuchhelper Id}}" }'),
        )
      )[0],
    ).toContain('rules[0].webhook.body: unknown helper "nosuchhelper"');
    expect(
      (await checkIssues(config('    teams: { webhookUrl: "https://h.example.com", title: "{{/x}}" }')))[0],
    ).toContain('rules[0].teams.title');
  });
});
