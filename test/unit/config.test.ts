import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_CONFIG_PATH,
  isTemplateFile,
  loadConfig,
  parseConfigText,
  redactConfig,
  resolveConfigPath,
  secretsOf,
  storeLocation,
} from '../../src/config/index.ts';
import type { RuleCheck } from '../../src/config/index.ts';
import { compileRule } from '../../src/templates/index.ts';
import { ConfigError } from '../../src/util/errors.ts';
import { generateJsonSchema, SCHEMA_FILE } from '../../scripts/gen-schema.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/config/', import.meta.url));
const BROKEN = join(FIXTURES, 'broken');
const EXAMPLE = fileURLToPath(new URL('../../config/notifier.example.yaml', import.meta.url));
/** valid-minimal.yaml as text (inline, so that formatting the fixture cannot break the edits below) */
const MINIMAL = `salesforce:
  auth:
    flow: client_credentials
    clientId: abc
    clientSecret: \${SF_CLIENT_SECRET}
smtp:
  host: smtp.example.com
  port: 587
  auth: { user: bot, pass: "\${SMTP_PASS}" }
rules:
  - name: web-leads
    email:
      from: leads@example.com
      to: sales@example.com
      subject: "New lead {{LastName}}"
      text: "{{FirstName}} {{LastName}}"
`;

const SF_SECRET = 'sf-Secret-Value-91';
const SMTP_PASS = 'smtp-Pass-Value-42';
const ENV = { SF_CLIENT_SECRET: SF_SECRET, SMTP_PASS, SMTP_PORT: 'abc' };

const tmpDirs: string[] = [];
function tmp(): string {
  const dir = mkdtempSync(join(tmpdir(), 'lead-notifier-config-'));
  tmpDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

/** the issues a load throws, with the fixture directory cut from file names */
async function issuesOf(
  file: string,
  env: NodeJS.ProcessEnv = ENV,
  ruleChecks?: RuleCheck,
): Promise<string[]> {
  try {
    await loadConfig(file, { env, ruleChecks });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues.map((i) =>
      (i.startsWith(`${BROKEN}/`) ? i.slice(BROKEN.length + 1) : i).split(BROKEN).join('<dir>'),
    );
  }
  throw new Error(`${file} loaded without error`);
}

function issuesOfText(text: string, env: NodeJS.ProcessEnv = ENV, file = 'notifier.yaml'): string[] {
  try {
    parseConfigText(text, file, { env });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues;
  }
  throw new Error('config parsed without error');
}

describe('broken configs: file:line key.path: message', () => {
  const table: [name: string, expected: string[]][] = [
    ['empty-to', ['empty-to.yaml:14 rules[0].email.to: must not be empty']],
    [
      'unknown-key-suggestion',
      ["unknown-key-suggestion.yaml:8 smtp.prot: unknown key 'prot' (did you mean 'port'?)"],
    ],
    [
      'subject-at-rule-level',
      ["subject-at-rule-level.yaml:12 rules[0].subject: unknown key 'subject' (it belongs under 'email')"],
    ],
    [
      'port-465-not-secure',
      [
        'port-465-not-secure.yaml:8 smtp.secure: port 465 is implicit TLS (TLS from the first byte): set secure: true; ' +
          'secure: false is for port 587 or 25, where STARTTLS upgrades a plain connection',
      ],
    ],
    [
      'secure-on-587',
      [
        'secure-on-587.yaml:9 smtp.secure: port 587 is STARTTLS (plain connection, upgraded to TLS): set secure: false, ' +
          'and requireTLS: true to insist on the upgrade; secure: true (implicit TLS) is for port 465',
      ],
    ],
    [
      'ignore-and-require-tls',
      [
        'ignore-and-require-tls.yaml:10 smtp.ignoreTLS: ignoreTLS and requireTLS contradict each other: ' +
          'requireTLS insists on STARTTLS, ignoreTLS never uses it',
      ],
    ],
    [
      'cron-bad-minute',
      [
        `cron-bad-minute.yaml:12 rules[0].schedule: invalid cron expression "61 * * * *": the minute field '61' is invalid`,
      ],
    ],
    [
      'cron-seven-fields',
      [
        'cron-seven-fields.yaml:12 rules[0].schedule: invalid cron expression "*/30 * * * * * *": has 7 field(s); ' +
          'node-cron takes 6 (second minute hour day-of-month month day-of-week) or 5 (without seconds)',
      ],
    ],
    [
      'duplicate-rule-name',
      ["duplicate-rule-name.yaml:17 rules[1].name: duplicate rule name 'web-leads' (also rules[0])"],
    ],
    [
      'start-from-bad',
      [
        'start-from-bad.yaml:12 rules[0].startFrom: must be "now" or an ISO-8601 instant with a time zone, ' +
          'such as 2024-05-01T00:00:00Z',
      ],
    ],
    ['lookback-bad', ['lookback-bad.yaml:12 rules[0].lookback: must be a duration such as 10m, 90s or 1h']],
    [
      'where-order-by',
      [
        'where-order-by.yaml:12 rules[0].where: must be a condition only: remove ORDER BY ' +
          '(the worker orders and pages itself)',
      ],
    ],
    ['select-repeats', ["select-repeats.yaml:12 rules[0].select[2]: repeats 'email' (already select[0])"]],
    [
      'duplicate-yaml-key',
      ['duplicate-yaml-key.yaml:9:3 duplicate key (each key may appear once per mapping)'],
    ],
    [
      'missing-env-var',
      [
        'missing-env-var.yaml:7 smtp.host: environment variable SMTP_HOST is not set ' +
          '(use ${SMTP_HOST:-default} to give a default)',
      ],
    ],
    ['unterminated-ref', ['unterminated-ref.yaml:7 smtp.host: unterminated ${ (write $${ for a literal ${)']],
    [
      'auth-flow-typo',
      [
        'auth-flow-typo.yaml:3 salesforce.auth.flow: must be one of "client_credentials", "jwt", "refresh_token", ' +
          `"password", "access_token" (did you mean 'jwt'?)`,
      ],
    ],
    [
      'jwt-key-missing',
      [
        'jwt-key-missing.yaml:6 salesforce.auth.privateKeyFile: private key file not found: <dir>/keys/absent.pem',
      ],
    ],
    ['port-not-a-number', ['port-not-a-number.yaml:8 smtp.port: must be a number, not a string']],
    [
      'port-env-not-a-number',
      ['port-env-not-a-number.yaml:8 smtp.port: must be a number, and ${SMTP_PORT} is not one'],
    ],
    ['host-missing', ['host-missing.yaml:6 smtp.host: is required']],
    ['tls-ca-missing', ['tls-ca-missing.yaml:9 smtp.tls.ca: CA file not found: <dir>/certs/ca.pem']],
    [
      'email-without-body',
      ['email-without-body.yaml:12 rules[0].email.text: needs a body: text, html or both'],
    ],
    ['no-rules', ['no-rules.yaml:10 rules: needs at least one rule']],
    ['store-unknown-scheme', ['store-unknown-scheme.yaml:17 store: must start with sqlite: or postgres://']],
    [
      'importance-typo',
      [
        `importance-typo.yaml:17 rules[0].email.importance: must be one of "high", "normal", "low" (did you mean 'high'?)`,
      ],
    ],
    [
      'many-problems',
      [
        'many-problems.yaml:8 smtp.secure: port 465 is implicit TLS (TLS from the first byte): set secure: true; ' +
          'secure: false is for port 587 or 25, where STARTTLS upgrades a plain connection',
        "many-problems.yaml:9 smtp.tiemout: unknown key 'tiemout'",
        'many-problems.yaml:13 rules[0].schedule: invalid cron expression "* * *": has 3 field(s); ' +
          'node-cron takes 6 (second minute hour day-of-month month day-of-week) or 5 (without seconds)',
        'many-problems.yaml:16 rules[0].email.to: must not be empty',
      ],
    ],
  ];

  it.each(table)('%s', async (name, expected) => {
    expect(await issuesOf(join(BROKEN, `${name}.yaml`))).toEqual(expected);
  });

  // YAML syntax errors: inline, since a broken .yaml file in the tree would fail `prettier --check .`
  it('a YAML syntax error: file:line:col and the parser message', () => {
    expect(issuesOfText(MINIMAL.replace('  port: 587', ' port: 587'), ENV, 'yaml-bad-indent.yaml')).toEqual([
      'yaml-bad-indent.yaml:8:1 All mapping items must start at the same column',
    ]);
  });

  it('an unquoted ${...} inside a flow mapping loads (as the README writes it), values with YAML punctuation intact', () => {
    const text = MINIMAL.replace('pass: "${SMTP_PASS}"', 'pass: ${SMTP_PASS}');
    expect(text).toContain('pass: ${SMTP_PASS} }');
    const c = parseConfigText(text, 'flow.yaml', { env: { ...ENV, SMTP_PASS: 'p{a}s,s: #x' } });
    expect(c.smtp.auth).toMatchObject({ pass: 'p{a}s,s: #x' });
  });

  it('a file that is not a PEM private key', async () => {
    const [issue, ...rest] = await issuesOf(join(BROKEN, 'jwt-key-not-pem.yaml'));
    expect(rest).toEqual([]);
    expect(issue).toMatch(
      /^jwt-key-not-pem\.yaml:6 salesforce\.auth\.privateKeyFile: is not a PEM private key: <dir>\/not-a-key\.pem \(.+\)$/,
    );
  });

  it('the valid minimal config the fixtures derive from loads', async () => {
    const config = await loadConfig(join(FIXTURES, 'valid-minimal.yaml'), { env: ENV });
    expect(config.rules[0]?.name).toBe('web-leads');
  });

  it('a missing file, an empty file, a directory', async () => {
    await expect(loadConfig(join(BROKEN, 'nope.yaml'), { env: ENV })).rejects.toThrow(
      /nope\.yaml: config file not found \(looked for .*nope\.yaml; pass -c FILE or set LEAD_NOTIFIER_CONFIG\)/,
    );
    expect(issuesOfText('# nothing\n')).toEqual([
      'notifier.yaml:1 the config file is empty (it needs at least salesforce, smtp and rules)',
    ]);
    await expect(loadConfig(BROKEN, { env: ENV })).rejects.toThrow(/is a directory/);
  });
});

describe('secrets never reach error messages', () => {
  it('a type error next to secrets, and a secret pasted where it does not belong', () => {
    const text = MINIMAL.replace('host: smtp.example.com', `host: "${SMTP_PASS}"\n  name: 12`).replace(
      'subject: "New lead {{LastName}}"',
      'subject: "${SF_CLIENT_SECRET} {{#if}}"\n      importance: ${SF_CLIENT_SECRET}',
    );
    const issues = issuesOfText(text);
    expect(issues.length).toBeGreaterThan(0);
    const all = issues.join('\n');
    expect(all).toContain('rules[0].email.importance: must be one of "high", "normal", "low"');
    expect(all).not.toContain(SF_SECRET);
    expect(all).not.toContain(SMTP_PASS);
  });

  it('a YAML syntax error on a line holding a literal secret does not quote it', () => {
    const text = MINIMAL.replace('pass: "${SMTP_PASS}"', 'pass: hunter2-literal }');
    const issues = issuesOfText(text);
    expect(issues[0]).toMatch(/^notifier\.yaml:9:\d+ /);
    expect(issues.join('\n')).not.toContain('hunter2-literal');
  });

  it('a missing variable is named, its default or neighbours are not printed', () => {
    const text = MINIMAL.replace('clientId: abc', 'clientId: ${SF_CLIENT_ID}');
    expect(issuesOfText(text)).toEqual([
      'notifier.yaml:4 salesforce.auth.clientId: environment variable SF_CLIENT_ID is not set ' +
        '(use ${SF_CLIENT_ID:-default} to give a default)',
    ]);
  });

  it('template errors do not echo secret values either', async () => {
    const dir = tmp();
    writeFileSync(
      join(dir, 'notifier.yaml'),
      MINIMAL.replace('subject: "New lead {{LastName}}"', 'subject: "{{#if x}} ${SMTP_PASS}"'),
    );
    const issues = await issuesOf(join(dir, 'notifier.yaml'), ENV, compileRule);
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatch(/^.*notifier\.yaml:15 rules\[0\]\.email\.subject: /);
    expect(issues.join('\n')).not.toContain(SMTP_PASS);
  });
});

describe('environment interpolation', () => {
  it('defaults, coercion of whole references, $${ escapes, partial references stay strings', () => {
    const text = MINIMAL.replace('port: 587', 'port: ${SMTP_PORT:-2525}\n  secure: ${SMTP_SECURE:-false}')
      .replace('host: smtp.example.com', 'host: ${SMTP_HOST:-mail.example.com}')
      .replace('from: leads@example.com', 'from: "Desk ${DESK:-A} <leads@example.com>"')
      .replace('{{FirstName}} {{LastName}}', () => 'cost: $${HOME} and ${EMPTY:-fallback} / ${SET}');
    const c = parseConfigText(text, 'x/notifier.yaml', {
      env: { ...ENV, SMTP_PORT: '', EMPTY: '', SET: '7' },
    });
    expect(c.smtp.port).toBe(2525);
    expect(c.smtp.secure).toBe(false);
    expect(c.smtp.host).toBe('mail.example.com');
    expect(c.rules[0]?.email?.from).toBe('Desk A <leads@example.com>');
    expect(c.rules[0]?.email?.text).toBe('cost: ${HOME} and fallback / 7');
    expect(c.smtp.auth).toMatchObject({ pass: SMTP_PASS });
    expect(c.salesforce.auth).toMatchObject({ clientSecret: SF_SECRET });

    const c2 = parseConfigText(text, 'notifier.yaml', {
      env: { ...ENV, SMTP_PORT: '465', SMTP_SECURE: 'true', SMTP_HOST: 'relay.local', SET: '' },
    });
    expect(c2.smtp.port).toBe(465);
    expect(c2.smtp.secure).toBe(true);
    expect(c2.smtp.host).toBe('relay.local');
  });

  it('a whole reference in a string field stays a string', () => {
    const text = MINIMAL.replace('clientId: abc', 'clientId: ${NUMERIC_ID}');
    const c = parseConfigText(text, 'notifier.yaml', { env: { ...ENV, NUMERIC_ID: '12345' } });
    expect(c.salesforce.auth).toMatchObject({ clientId: '12345' });
  });

  it('every missing variable is reported at once, and a bad reference is named', () => {
    const text = MINIMAL.replace('clientSecret: ${SF_CLIENT_SECRET}', 'clientSecret: ${1BAD}').replace(
      'host: smtp.example.com',
      'host: ${NO_HOST}',
    );
    expect(issuesOfText(text, {})).toEqual([
      'notifier.yaml:5 salesforce.auth.clientSecret: invalid reference ${1BAD}: use ${NAME} or ${NAME:-default} ' +
        '(NAME: letters, digits, _)',
      'notifier.yaml:7 smtp.host: environment variable NO_HOST is not set (use ${NO_HOST:-default} to give a default)',
      'notifier.yaml:9 smtp.auth.pass: environment variable SMTP_PASS is not set (use ${SMTP_PASS:-default} to give a default)',
    ]);
  });
});

describe('the example config', () => {
  const env = {
    SF_CLIENT_ID: '3MVG9example',
    SF_CLIENT_SECRET: SF_SECRET,
    SMTP_HOST: 'smtp.example.com',
    SMTP_USER: 'notifier',
    SMTP_PASS,
  };

  it('loads, compiles its templates and shows every documented default', async () => {
    const c = await loadConfig(EXAMPLE, { env, ruleChecks: compileRule });
    expect(c.smtp).toMatchObject({ host: 'smtp.example.com', port: 587, secure: false, requireTLS: true });
    const rule = c.rules[0]!;
    expect(rule).toMatchObject({ name: 'new-web-leads', object: 'Lead', mode: 'poll', lookback: '10m' });
    expect(rule.email?.html).toBe(join(c.baseDir, 'templates/new-lead.html.hbs'));
    expect(c.store).toBe(`sqlite:${join(c.baseDir, 'data/notifier.db')}`);
    // every default the schema applies is written out in the example
    const { configSchema } = await import('../../src/config/schema.ts');
    const defaults = configSchema.parse(
      JSON.parse(JSON.stringify({ ...c, configPath: undefined, baseDir: undefined, store: undefined })),
    );
    expect(defaults.delivery).toEqual(c.delivery);
  });

  it('redactConfig and secretsOf', async () => {
    const c = await loadConfig(EXAMPLE, { env });
    // the channel rule's defaults: the webhook's secret and header, the Slack and Teams URLs
    const channelSecrets = [
      'change-me-too',
      'Bearer change-me',
      'https://hooks.slack.com/services/T000/B000/XXXX',
      'https://example.webhook.office.com/workflows/XXXX',
    ];
    expect(secretsOf(c).sort()).toEqual([SF_SECRET, SMTP_PASS, ...channelSecrets].sort());
    const red = JSON.stringify(redactConfig(c));
    expect(red).not.toContain(SF_SECRET);
    expect(red).not.toContain(SMTP_PASS);
    expect(red).toContain('"pass":"[redacted]"');
    expect(red).toContain('"clientSecret":"[redacted]"');
    // a deep copy: the config itself is untouched
    expect(c.smtp.auth).toMatchObject({ pass: SMTP_PASS });
  });

  it('an Authorization email header is a secret, like the logger treats it', () => {
    const text = MINIMAL.replace(
      '      to: sales@example.com\n',
      '      to: sales@example.com\n      headers: { Authorization: "Bearer ${HDR_TOKEN}", X-Source: web }\n',
    );
    const c = parseConfigText(text, 'notifier.yaml', { env: { ...ENV, HDR_TOKEN: 'hdr-Token-55' } });
    expect(secretsOf(c)).toContain('Bearer hdr-Token-55');
    expect(secretsOf(c)).not.toContain('web');
    expect(JSON.stringify(redactConfig(c))).toContain(
      '"headers":{"Authorization":"[redacted]","X-Source":"web"}',
    );
  });

  it('http.sendApi: defaults, tokens as secrets, names and values each once', () => {
    const api = (tokens: string) => `${MINIMAL}http:\n  sendApi:\n    tokens:\n${tokens}`;
    const one = '      - { name: crm, token: "${API_TOKEN}", allowRecipients: ["*@example.com"] }\n';
    const c = parseConfigText(api(one), 'notifier.yaml', {
      env: { ...ENV, API_TOKEN: 'api-Token-Value-0123' },
    });
    expect(c.http.sendApi).toEqual({
      tokens: [
        {
          name: 'crm',
          token: 'api-Token-Value-0123',
          allowRecipients: ['*@example.com'],
          rate: { requests: 600, per: '1m' },
        },
      ],
      maxBodyBytes: 10_485_760,
      waitTimeoutMs: 30_000,
    });
    expect(secretsOf(c)).toContain('api-Token-Value-0123');
    const red = JSON.stringify(redactConfig(c));
    expect(red).not.toContain('api-Token-Value-0123');
    expect(red).toContain('"name":"crm","token":"[redacted]"');

    const bad = api(
      '      - { name: crm, token: "${API_TOKEN}" }\n' +
        '      - { name: crm, token: "${API_TOKEN}", allowFrom: ["*.example.com"] }\n' +
        '      - { name: "a b", token: short, rate: { requests: 0, per: 1y } }\n',
    );
    let message = '';
    try {
      parseConfigText(bad, 'notifier.yaml', { env: { ...ENV, API_TOKEN: 'api-Token-Value-0123' } });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    expect(message).toContain('http.sendApi.tokens[1].name');
    expect(message).toContain("duplicate token name 'crm'");
    expect(message).toContain('http.sendApi.tokens[1].token');
    expect(message).toContain('http.sendApi.tokens[1].allowFrom[0]');
    expect(message).toContain('http.sendApi.tokens[2].name');
    expect(message).toContain('http.sendApi.tokens[2].token');
    expect(message).toContain('http.sendApi.tokens[2].rate.requests');
    expect(message).toContain('http.sendApi.tokens[2].rate.per');
    // the secret itself is never quoted
    expect(message).not.toContain('api-Token-Value-0123');
    expect(() =>
      parseConfigText(api(one).replace('http:\n', 'http:\n  enabled: false\n'), 'notifier.yaml', {
        env: { ...ENV, API_TOKEN: 'api-Token-Value-0123' },
      }),
    ).toThrow(/http\.sendApi.*http\.enabled is false/s);
  });

  it('a postgres password in the store URL is a secret', () => {
    const text = `${MINIMAL}store: postgres://worker:\${PGPASSWORD}@db.internal:5432/leads\n`;
    const c = parseConfigText(text, 'notifier.yaml', { env: { ...ENV, PGPASSWORD: 'pg-Secret-77' } });
    expect(secretsOf(c)).toContain('pg-Secret-77');
    expect((redactConfig(c) as { store: string }).store).toBe(
      'postgres://worker:[redacted]@db.internal:5432/leads',
    );
  });
});

describe('paths relative to the config file', () => {
  it('templates, private key, CA file and sqlite store resolve against the config directory', async () => {
    const dir = tmp();
    mkdirSync(join(dir, 'keys'));
    mkdirSync(join(dir, 'mail'));
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    writeFileSync(join(dir, 'keys', 'sf.key'), pem);
    writeFileSync(join(dir, 'ca.pem'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    writeFileSync(join(dir, 'mail', 'body.html.hbs'), '<p>{{FirstName}}</p>');
    writeFileSync(
      join(dir, 'notifier.yaml'),
      MINIMAL.replace(
        'flow: client_credentials\n    clientId: abc\n    clientSecret: ${SF_CLIENT_SECRET}',
        'flow: jwt\n    clientId: abc\n    username: bot@example.com\n    privateKeyFile: keys/sf.key',
      )
        .replace('  port: 587\n', '  port: 587\n  tls: { ca: ca.pem }\n')
        .replace('text: "{{FirstName}} {{LastName}}"', 'html: mail/body.html.hbs') +
        'store: sqlite:state/n.db\n',
    );
    const c = await loadConfig(join(dir, 'notifier.yaml'), { env: ENV, ruleChecks: compileRule });
    expect(c.configPath).toBe(join(dir, 'notifier.yaml'));
    expect(c.baseDir).toBe(dir);
    expect(c.salesforce.auth).toMatchObject({ privateKeyFile: join(dir, 'keys', 'sf.key') });
    expect(c.smtp.tls.ca).toBe(join(dir, 'ca.pem'));
    expect(c.rules[0]?.email?.html).toBe(join(dir, 'mail', 'body.html.hbs'));
    expect(c.store).toBe(`sqlite:${join(dir, 'state', 'n.db')}`);
    // the private key's content is a secret
    expect(secretsOf(c)).toContain(pem);
  });

  it('storeLocation', () => {
    expect(storeLocation('sqlite:./a.db', '/srv')).toEqual({ kind: 'sqlite', path: '/srv/a.db' });
    expect(storeLocation('sqlite:/abs/a.db', '/srv')).toEqual({ kind: 'sqlite', path: '/abs/a.db' });
    expect(storeLocation('sqlite:///abs/a.db', '/srv')).toEqual({ kind: 'sqlite', path: '/abs/a.db' });
    expect(storeLocation('sqlite::memory:', '/srv')).toEqual({ kind: 'sqlite', path: ':memory:' });
    expect(storeLocation('postgresql://u@h/db', '/srv')).toEqual({
      kind: 'postgres',
      url: 'postgresql://u@h/db',
    });
    expect(() => storeLocation('sqlite:', '/srv')).toThrow('needs a file path');
    expect(() => storeLocation('postgres://u:pw-secret@[bad/db', '/srv')).toThrow(/^is not a valid postgres/);
  });

  it('storeLocation is the one store-URL parser: each sqlite spelling names one file', () => {
    const cases: Array<[string, string]> = [
      ['sqlite:./a.db', '/srv/a.db'],
      ['sqlite:a.db', '/srv/a.db'],
      ['sqlite:/abs/a.db', '/abs/a.db'],
      ['sqlite:///abs/a.db', '/abs/a.db'],
      ['sqlite://rel/a.db', '/srv/rel/a.db'],
      ['sqlite::memory:', ':memory:'],
    ];
    for (const [url, path] of cases) expect(storeLocation(url, '/srv')).toEqual({ kind: 'sqlite', path });
    expect(storeLocation('sqlite:a.db')).toEqual({ kind: 'sqlite', path: join(process.cwd(), 'a.db') });
  });

  it('a bad postgres URL is reported without echoing it', () => {
    const issues = issuesOfText(`${MINIMAL}store: "postgres://u:pw-Secret-1@[bad/db"\n`);
    expect(issues).toEqual([
      'notifier.yaml:17 store: is not a valid postgres:// URL (postgres://user:password@host:5432/database)',
    ]);
  });
});

describe('templates are compiled at load time', () => {
  it('a missing .hbs file and a Handlebars syntax error, in different rules, reported together', async () => {
    const dir = tmp();
    const second = MINIMAL.slice(MINIMAL.indexOf('  - name: web-leads'))
      .replace('web-leads', 'other')
      .replace('subject: "New lead {{LastName}}"', 'subject: "{{#if Company}}unclosed"');
    writeFileSync(
      join(dir, 'notifier.yaml'),
      MINIMAL.replace('text: "{{FirstName}} {{LastName}}"', 'html: templates/missing.html.hbs') + second,
    );
    const issues = await issuesOf(join(dir, 'notifier.yaml'), ENV, compileRule);
    expect(issues).toHaveLength(2);
    expect(issues[0]).toBe(
      `${dir}/notifier.yaml:16 rules[0].email.html: template file not found: ${dir}/templates/missing.html.hbs`,
    );
    expect(issues[1]).toBe(
      `${dir}/notifier.yaml:21 rules[1].email.subject: Parse error on line 1: Expecting 'OPEN_INVERSE_CHAIN', ` +
        `'INVERSE', 'OPEN_ENDBLOCK', got 'EOF' (near "...if Company}}unclosed")`,
    );
    // without a ruleChecks hook nothing is compiled: only the missing file is reported
    expect(await issuesOf(join(dir, 'notifier.yaml'), ENV)).toEqual([issues[0]]);
  });

  it('a template syntax error is reported only when the caller passes a hook', async () => {
    const dir = tmp();
    const text = MINIMAL.replace('subject: "New lead {{LastName}}"', 'subject: "{{#if Company}}unclosed"');
    writeFileSync(join(dir, 'notifier.yaml'), text);
    await expect(loadConfig(join(dir, 'notifier.yaml'), { env: ENV })).resolves.toBeTruthy();
    expect(await issuesOf(join(dir, 'notifier.yaml'), ENV, compileRule)).toEqual([
      `${dir}/notifier.yaml:15 rules[0].email.subject: Parse error on line 1: Expecting 'OPEN_INVERSE_CHAIN', ` +
        `'INVERSE', 'OPEN_ENDBLOCK', got 'EOF' (near "...if Company}}unclosed")`,
    ]);
  });

  it('a hook error without a keyPath is shown against the rule', async () => {
    const dir = tmp();
    writeFileSync(join(dir, 'notifier.yaml'), MINIMAL);
    const hook: RuleCheck = (rule) => {
      throw new Error(`rule ${rule.name} refused`);
    };
    expect(await issuesOf(join(dir, 'notifier.yaml'), ENV, hook)).toEqual([
      `${dir}/notifier.yaml:11 rules[0]: rule web-leads refused`,
    ]);
  });

  it('src/config does not import src/templates (the caller passes compileRule)', () => {
    const configDir = fileURLToPath(new URL('../../src/config/', import.meta.url));
    const files = readdirSync(configDir).filter((f) => f.endsWith('.ts'));
    expect(files.length).toBeGreaterThan(5);
    for (const f of files) expect(readFileSync(join(configDir, f), 'utf8'), f).not.toContain('templates/');
  });
});

describe('isTemplateFile', () => {
  it('one line ending in .hbs, without {{: the same test the template layer applies', () => {
    expect(isTemplateFile('mail/body.html.hbs')).toBe(true);
    expect(isTemplateFile('  mail/body.html.hbs\n')).toBe(true); // a block scalar's trailing newline
    expect(isTemplateFile('{{Name}}.hbs')).toBe(false);
    expect(isTemplateFile('line one\nmail/body.hbs')).toBe(false);
    expect(isTemplateFile('line one\rmail/body.hbs')).toBe(false);
    expect(isTemplateFile('Hello {{FirstName}}')).toBe(false);
    expect(isTemplateFile(undefined)).toBe(false);
  });
});

describe('resolveConfigPath', () => {
  it('-c first, then LEAD_NOTIFIER_CONFIG, then the default', () => {
    expect(resolveConfigPath('a.yaml', { LEAD_NOTIFIER_CONFIG: 'b.yaml' })).toBe('a.yaml');
    expect(resolveConfigPath(undefined, { LEAD_NOTIFIER_CONFIG: 'b.yaml' })).toBe('b.yaml');
    expect(resolveConfigPath(undefined, {})).toBe(DEFAULT_CONFIG_PATH);
    expect(DEFAULT_CONFIG_PATH).toBe('./config/notifier.yaml');
  });
});

describe('JSON Schema', () => {
  it('config/notifier.schema.json is up to date (npm run schema)', () => {
    expect(readFileSync(SCHEMA_FILE, 'utf8')).toBe(generateJsonSchema());
  });

  it('keys with defaults are optional, unknown keys are refused', () => {
    const schema = JSON.parse(generateJsonSchema()) as {
      required: string[];
      additionalProperties: boolean;
      properties: { smtp: { required: string[] } };
    };
    expect(schema.required.sort()).toEqual(['rules', 'salesforce', 'smtp']);
    expect(schema.properties.smtp.required).toEqual(['host']);
    expect(schema.additionalProperties).toBe(false);
  });
});
