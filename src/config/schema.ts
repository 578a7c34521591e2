// The config file's schema: the one place for keys, defaults and docs. Types derive from it.
// Keep in step with README.md, config/notifier.example.yaml and config/notifier.schema.json
// (`npm run schema` regenerates the latter).
import { z } from 'zod';
import { parseDuration } from '../util/duration.ts';
import { dailyLimitSchema, dkimSchema, rateLimitSchema, smtpAuthSchema } from './relays.ts';
import { slackSchema, teamsSchema, webhookSchema } from './channels.ts';

const nonEmpty = z.string().min(1, 'must not be empty');

export const authSchema = z.discriminatedUnion('flow', [
  z.strictObject({
    flow: z.literal('client_credentials'),
    clientId: nonEmpty.describe('connected app consumer key'),
    clientSecret: nonEmpty.describe('connected app consumer secret (a secret: use ${ENV})'),
  }),
  z.strictObject({
    flow: z.literal('jwt'),
    clientId: nonEmpty.describe('connected app consumer key (the iss claim)'),
    username: nonEmpty.describe('the Salesforce user the worker acts as (the sub claim)'),
    privateKeyFile: nonEmpty.describe('PEM file with the RSA private key; relative to the config file'),
    audience: z.string().optional().describe('aud claim; defaults to the loginUrl'),
  }),
  z.strictObject({
    flow: z.literal('refresh_token'),
    clientId: nonEmpty,
    clientSecret: z.string().optional(),
    refreshToken: nonEmpty.describe('a secret: use ${ENV}'),
  }),
  z.strictObject({
    flow: z.literal('password'),
    username: nonEmpty,
    password: nonEmpty.describe('a secret: use ${ENV}'),
    securityToken: z.string().optional().describe('appended to the password for SOAP login(); a secret'),
    clientId: z
      .string()
      .optional()
      .describe('with clientSecret: OAuth password grant; without: SOAP login()'),
    clientSecret: z.string().optional(),
  }),
  z.strictObject({
    flow: z.literal('access_token'),
    accessToken: nonEmpty.describe('a session id or OAuth access token; a secret'),
    instanceUrl: z.url({ protocol: /^https?$/ }).describe('the org URL the token belongs to'),
  }),
]);

const LOOPBACK_HOST = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/i;

export const streamingSchema = z
  .strictObject({
    api: z
      .enum(['pubsub', 'cometd'])
      .default('pubsub')
      .describe("pubsub: the Pub/Sub API (gRPC), Salesforce's path for CDC; cometd: the Streaming API"),
    endpoint: z
      .string()
      .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'must be host:port')
      .default('api.pubsub.salesforce.com:7443')
      .describe('the Pub/Sub API host:port'),
    tls: z.boolean().default(true).describe('false only for a loopback emulator'),
  })
  .refine((s) => s.tls || LOOPBACK_HOST.test(s.endpoint.replace(/:\d+$/, '')), {
    message: 'tls: false is allowed only for a loopback endpoint (127.0.0.1, localhost, [::1])',
    path: ['tls'],
  });

export const salesforceSchema = z.strictObject({
  loginUrl: z
    .url({ protocol: /^https?$/ })
    .default('https://login.salesforce.com')
    .describe('https://login.salesforce.com, https://test.salesforce.com or the My Domain URL'),
  apiVersion: z
    .string()
    .regex(/^\d{2,3}\.0$/, 'must look like "62.0"')
    .default('62.0'),
  auth: authSchema.describe('flow: jwt | client_credentials | refresh_token | password | access_token'),
  requestTimeoutMs: z.number().int().positive().default(60_000),
  streaming: streamingSchema
    .optional()
    .describe('how rules with mode: stream subscribe; default: the Pub/Sub API over TLS'),
});

export const smtpSchema = z.strictObject({
  host: nonEmpty.describe('SMTP server host name'),
  port: z.number().int().min(1).max(65535).default(587),
  secure: z
    .boolean()
    .default(false)
    .describe(
      'true = implicit TLS from the first byte (port 465); false = plain, upgraded by STARTTLS (587)',
    ),
  requireTLS: z.boolean().default(false).describe('refuse to send unless STARTTLS succeeds'),
  ignoreTLS: z.boolean().default(false).describe('never use STARTTLS even when offered'),
  tls: z
    .strictObject({
      ca: z.string().optional().describe('PEM file of CA certificates to trust; relative to the config file'),
      rejectUnauthorized: z.boolean().default(true),
      servername: z.string().optional(),
    })
    .default({ rejectUnauthorized: true }),
  auth: smtpAuthSchema,
  name: z.string().optional().describe('hostname announced in EHLO'),
  pool: z
    .strictObject({
      maxConnections: z.number().int().min(1).max(100).default(5),
      maxMessages: z.number().int().min(1).default(100),
    })
    .default({ maxConnections: 5, maxMessages: 100 }),
  connectionTimeoutMs: z.number().int().positive().default(10_000),
  greetingTimeoutMs: z.number().int().positive().default(10_000),
  socketTimeoutMs: z.number().int().positive().default(30_000),
  sendTimeoutMs: z.number().int().positive().default(60_000).describe('deadline for one message'),
  thread: z
    .boolean()
    .optional()
    .describe(
      'run nodemailer (MIME building, the SMTP sessions) on a worker thread of its own: a second core for sending (1.1-1.3 times the rate into a fast relay), 15-25 MB more resident; default: only with SQLite synchronous=full',
    ),
  rateLimit: rateLimitSchema,
  dailyLimit: dailyLimitSchema,
  dkim: dkimSchema,
});

export const attachmentSchema = z.strictObject({
  fileName: nonEmpty,
  contentType: z.string().optional(),
  content: z.string().describe('Handlebars template; file path when it ends in .hbs'),
  contentTransferEncoding: z.enum(['none', 'base64']).default('none'),
  contentId: z.string().optional().describe('makes the attachment inline, referenced as cid:<contentId>'),
});

export const emailSchema = z
  .strictObject({
    from: nonEmpty,
    to: nonEmpty,
    cc: z.string().default(''),
    bcc: z.string().default(''),
    replyTo: z.string().default(''),
    subject: nonEmpty,
    text: z.string().optional(),
    html: z.string().optional(),
    importance: z.enum(['high', 'normal', 'low']).default('normal'),
    headers: z.record(z.string(), z.string()).default({}),
    attachments: z.array(attachmentSchema).default([]),
  })
  .refine((e) => e.text !== undefined || e.html !== undefined, {
    message: 'needs a body: text, html or both',
    path: ['text'],
  });

const apiName = z.string().regex(/^[A-Za-z][A-Za-z0-9_]*$/, 'must be an sObject API name such as Lead');
// SOQL allows five levels in a relationship path, the queried object counting as the first
const fieldPath = z
  .string()
  .regex(
    /^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*){0,4}$/,
    'must be a field API name, or Relationship.Field (up to four relationships, e.g. Owner.Manager.Email)',
  );

export const ruleSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9_.-]*$/i, 'letters, digits, ".", "_" and "-" only'),
  object: apiName.default('Lead'),
  mode: z.enum(['poll', 'stream']).default('poll'),
  schedule: z
    .string()
    .default('*/30 * * * * *')
    .describe(
      'node-cron expression: 6 fields (with seconds) or 5; poll cadence, reconcile cadence in stream mode',
    ),
  startFrom: z
    .union([z.literal('now'), z.iso.datetime({ offset: true })], {
      error: 'must be "now" or an ISO-8601 instant with a time zone, such as 2024-05-01T00:00:00Z',
    })
    .default('now')
    .describe('what the first run considers new: now, or an ISO-8601 instant'),
  lookback: z
    .string()
    .regex(/^\d+(ms|s|m|h)$/, 'must be a duration such as 10m, 90s or 1h')
    .default('10m')
    .describe('how far behind the cursor each poll re-reads, to catch late-committing records'),
  select: z
    .array(fieldPath)
    .default([])
    .describe('fields read in addition to Id, CreatedDate and SystemModstamp'),
  where: z
    .string()
    .optional()
    .describe('SOQL condition only (no WHERE, ORDER BY or LIMIT), pushed into the query'),
  on: z
    .enum(['created', 'updated'])
    .default('created')
    .describe(
      'created: each new record once; updated: each change that makes the record match `where` (or, with `changed`, each change of those fields while `where` holds)',
    ),
  changed: z
    .array(fieldPath)
    .min(1, 'list at least one field, or omit changed')
    .optional()
    .describe('on: updated only: fire on every change of one of these fields while `where` holds'),
  digest: z
    .strictObject({
      schedule: z
        .string()
        .describe('node-cron expression: when the digest goes out (6 fields with seconds, or 5)'),
      maxRecords: z
        .number()
        .int()
        .min(1)
        .max(10_000)
        .default(500)
        .describe(
          'records listed in one email (the oldest, at most 1 MB of their fields); the rest are counted in it (`more`), not carried over',
        ),
      sendEmpty: z.boolean().default(false).describe('send a digest when nothing matched'),
    })
    .optional()
    .describe(
      'collect matched records instead of one email each; one email at each scheduled time lists them (records, count, more, since, until)',
    ),
  email: emailSchema
    .optional()
    .describe('the email notification; a rule needs at least one channel: email, webhook, slack or teams'),
  webhook: webhookSchema.optional().describe('POST each notification to a URL, signed with `secret`'),
  slack: slackSchema.optional().describe('a Slack incoming webhook message'),
  teams: teamsSchema.optional().describe('a Teams Workflows webhook posting an Adaptive Card'),
  allowRecipients: z
    .array(z.string().min(1))
    .optional()
    .describe('patterns like *@example.com; recipients outside them dead-letter the row'),
  onUncertain: z
    .enum(['report', 'resend'])
    .optional()
    .describe('overrides delivery.onUncertain for this rule'),
  enabled: z.boolean().default(true),
});

export const deliverySchema = z
  .strictObject({
    onUncertain: z
      .enum(['report', 'resend'])
      .default('report')
      .describe('a row found mid-send after a crash: report it (state unknown) or send it again'),
    maxAttempts: z.number().int().min(1).default(10),
    maxAge: z
      .string()
      .regex(/^\d+(ms|s|m|h|d)$/, 'must be a duration such as 24h')
      .default('24h'),
    backoffBaseMs: z.number().int().positive().default(5_000),
    backoffMaxMs: z
      .number()
      .int()
      .positive()
      .default(15 * 60_000),
    circuitRetryMs: z
      .number()
      .int()
      .positive()
      .default(60_000)
      .describe('retry cadence while SMTP auth fails'),
    leaseMs: z.number().int().positive().optional().describe('defaults to smtp.sendTimeoutMs + 30 s'),
  })
  .default({
    onUncertain: 'report',
    maxAttempts: 10,
    maxAge: '24h',
    backoffBaseMs: 5_000,
    backoffMaxMs: 15 * 60_000,
    circuitRetryMs: 60_000,
  });

/** Several replicas on one PostgreSQL store (see README "Scaling out"). */
export const clusterSchema = z
  .strictObject({
    leaseTtl: z
      .string()
      .regex(/^\d+(ms|s|m)$/, 'must be a duration such as 30s')
      .refine((v) => parseDuration(v) >= 1000, 'must be at least 1s')
      .default('30s')
      .describe(
        "how long a rule's poll leadership lasts without renewal (renewed every third of it); a dead leader's rules move after about this long",
      ),
    poolSize: z
      .number()
      .int()
      .min(2)
      .max(100)
      .optional()
      .describe(
        'PostgreSQL connections per replica; default: rules + 3. Keep replicas x poolSize below the server max_connections',
      ),
  })
  .default({ leaseTtl: '30s' });

// allowFrom / allowRecipients entries: the three shapes compileAllowList (recipients.ts of src/templates)
// accepts (an address, *@example.com, *@*.example.com); it checks them strictly again at start.
const allowPattern = z
  .string()
  .regex(
    /^(\*@(\*\.)?|[^\s@*]+@)[^\s@*]+$/,
    'must be an address (sales@example.com), *@example.com or *@*.example.com',
  );

export const sendApiTokenSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, 'letters, digits, "_" and "-" only (at most 64)')
    .describe("names the token in rows (rule api:<name>), logs and metrics; the token's value never appears"),
  token: z
    .string()
    .min(16, 'must be at least 16 characters (e.g. openssl rand -hex 32)')
    .describe('the bearer token (a secret: use ${ENV})'),
  allowFrom: z
    .array(allowPattern)
    .optional()
    .describe('From addresses this token may use (patterns like *@example.com); omitted: any'),
  allowRecipients: z
    .array(allowPattern)
    .optional()
    .describe(
      'To/CC/Bcc addresses this token may send to; a request with another is refused (403); omitted: any',
    ),
  defaultFrom: z.string().min(1).optional().describe('From when the request has none'),
  rate: z
    .strictObject({
      requests: z.number().int().min(1).describe('requests the token may make per `per`'),
      per: z
        .string()
        .regex(/^[1-9]\d*(ms|s|m|h)$/, 'must be a positive duration such as 1s or 1m')
        .describe('the window, e.g. 1s, 1m'),
    })
    .default({ requests: 600, per: '1m' })
    .describe('over it: 429 with Retry-After'),
});

export const sendApiSchema = z
  .strictObject({
    tokens: z.array(sendApiTokenSchema).min(1, 'needs at least one token'),
    maxBodyBytes: z
      .number()
      .int()
      .min(1024)
      .max(100 * 1024 * 1024)
      .default(10_485_760)
      .describe('a larger request body is refused with 413 before it is read whole'),
    waitTimeoutMs: z
      .number()
      .int()
      .min(0)
      .max(300_000)
      .default(30_000)
      .describe('?wait=true waits this long for the final state, then answers 202'),
  })
  .optional()
  .describe("the Send API: POST /v1/send, GET /v1/messages/{id}, GET /v1/openapi.json (README 'Send API')");

export const configSchema = z.strictObject({
  salesforce: salesforceSchema,
  smtp: smtpSchema,
  store: z
    .string()
    .regex(/^(sqlite:|postgres:|postgresql:)/, 'must start with sqlite: or postgres://')
    .default('sqlite:./data/notifier.db')
    .describe(
      'sqlite:<path relative to the config file>[?synchronous=normal|full], sqlite::memory:, or postgres://user@host/db',
    ),
  http: z
    .strictObject({
      host: z.string().default('0.0.0.0'),
      port: z.number().int().min(0).max(65535).default(8080),
      enabled: z.boolean().default(true),
      sendApi: sendApiSchema,
    })
    .default({ host: '0.0.0.0', port: 8080, enabled: true }),
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
      format: z.enum(['json', 'pretty']).optional(),
    })
    .default({ level: 'info' }),
  delivery: deliverySchema,
  cluster: clusterSchema,
  shutdownTimeout: z
    .string()
    .regex(/^\d+(ms|s|m)$/, 'must be a duration such as 20s')
    .default('20s'),
  rules: z.array(ruleSchema).min(1, 'needs at least one rule'),
});

export type Config = z.infer<typeof configSchema>;
export type RuleConfig = z.infer<typeof ruleSchema>;
export type EmailConfig = z.infer<typeof emailSchema>;
export type SmtpConfig = z.infer<typeof smtpSchema>;
export type SalesforceConfig = z.infer<typeof salesforceSchema>;
export type AuthConfig = z.infer<typeof authSchema>;
export type DeliveryConfig = z.infer<typeof deliverySchema>;
export type ClusterConfig = z.infer<typeof clusterSchema>;
export type SmtpAuthConfig = NonNullable<SmtpConfig['auth']>;
export type SendApiConfig = NonNullable<Config['http']['sendApi']>;
export type SendApiTokenConfig = SendApiConfig['tokens'][number];

/** Config after loading: the parsed values plus where they came from. */
export interface LoadedConfig extends Config {
  /** absolute path of the config file */
  configPath: string;
  /** directory paths in the config are relative to */
  baseDir: string;
}
