// Config for the channels beside email (rule keys `webhook`, `slack`, `teams`; DESIGN.md
// "Channels"). schema.ts composes these into ruleSchema. URLs are config only: no template
// syntax, https unless the host is loopback or `allowInsecure: true`.
import { z } from 'zod';

const nonEmpty = z.string().min(1, 'must not be empty');
const LOOPBACK_HOST = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/i;
// RFC 9110 field-name token
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** set by the channel itself on every request; a config header cannot replace them */
export const RESERVED_HTTP_HEADERS = new Set([
  'content-type',
  'content-length',
  'host',
  'transfer-encoding',
  'connection',
  'user-agent',
  'idempotency-key',
  'x-lead-notifier-timestamp',
  'x-lead-notifier-signature',
]);

export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK_HOST.test(hostname);
}

const url = (what: string) =>
  z
    .url({ protocol: /^https?$/, error: `${what} must be an http(s) URL` })
    .refine((u) => !u.includes('{{'), `${what} is config, never a template`);

const common = {
  timeoutMs: z
    .number()
    .int()
    .positive()
    .max(600_000)
    .default(10_000)
    .describe('deadline of one request, connect to the last byte of the reply'),
  allowInsecure: z
    .boolean()
    .default(false)
    .describe('allow http:// to a host that is not loopback (the request and its secrets go in clear)'),
  concurrency: z
    .number()
    .int()
    .min(1)
    .max(256)
    .optional()
    .describe(
      "requests in flight at once on this channel (its connection limit); default 4, the channel's highest wins",
    ),
};

/** https unless loopback or allowInsecure (a refine on each channel object, reported at its URL key) */
function secureUrl(key: 'url' | 'webhookUrl') {
  return {
    check: (c: { allowInsecure: boolean } & Partial<Record<'url' | 'webhookUrl', string>>) => {
      let u: URL;
      try {
        u = new URL(c[key] ?? '');
      } catch {
        return true; // not a URL: reported by the key's own check
      }
      return u.protocol === 'https:' || c.allowInsecure || isLoopbackHost(u.hostname);
    },
    params: {
      message: 'must be https:// (http:// only to a loopback host, or with allowInsecure: true)',
      path: [key],
    },
  };
}
const secureWebhookUrl = secureUrl('webhookUrl');
const secureHookUrl = secureUrl('url');

export const webhookSchema = z
  .strictObject({
    url: url('url').describe('where the notification is POSTed; config only, never from record data'),
    headers: z
      .record(
        z.string().regex(HEADER_NAME, 'header name must be an RFC 9110 token'),
        z.string().refine((v) => !/[\r\n\0]/.test(v), 'header value must be one line'),
      )
      .default({})
      .describe('extra request headers (values are secrets: redacted everywhere)'),
    body: z
      .string()
      .optional()
      .describe(
        'Handlebars template of the JSON body (file path when it ends in .hbs); default: the record as JSON',
      ),
    secret: nonEmpty
      .optional()
      .describe(
        'HMAC-SHA256 signing key: X-Lead-Notifier-Timestamp and X-Lead-Notifier-Signature (a secret)',
      ),
    ...common,
  })
  .refine(secureHookUrl.check, secureHookUrl.params)
  .refine((c) => Object.keys(c.headers).every((h) => !RESERVED_HTTP_HEADERS.has(h.toLowerCase())), {
    message: `headers: ${[...RESERVED_HTTP_HEADERS].join(', ')} are set by the notifier itself`,
    path: ['headers'],
  });

export const slackSchema = z
  .strictObject({
    webhookUrl: url('webhookUrl').describe('the Slack incoming webhook URL (a secret: it carries the token)'),
    text: nonEmpty.describe('Handlebars; record values are escaped for Slack mrkdwn (&, <, >)'),
    blocks: z
      .string()
      .optional()
      .describe(
        'Handlebars template rendering a JSON array of Block Kit blocks (file path when it ends in .hbs)',
      ),
    ...common,
  })
  .refine(secureWebhookUrl.check, secureWebhookUrl.params);

export const teamsSchema = z
  .strictObject({
    webhookUrl: url('webhookUrl').describe(
      'the Teams Workflows webhook URL (a secret: it carries the signature)',
    ),
    title: nonEmpty.describe('Handlebars; the Adaptive Card title'),
    text: z.string().optional().describe('Handlebars; the card text'),
    fields: z
      .record(nonEmpty, z.string())
      .default({})
      .describe('facts of the card, in order: { Label: "{{Field}}" } (labels and values Handlebars)'),
    ...common,
  })
  .refine(secureWebhookUrl.check, secureWebhookUrl.params);

export type WebhookConfig = z.infer<typeof webhookSchema>;
export type SlackConfig = z.infer<typeof slackSchema>;
export type TeamsConfig = z.infer<typeof teamsSchema>;

/** default connection limit of an HTTP channel */
export const DEFAULT_CHANNEL_CONCURRENCY = 4;
