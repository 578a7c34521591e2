// Config for real relays (smtp keys): OAuth2 (XOAUTH2) auth, the relay's sending limits and their
// presets, DKIM signing. schema.ts composes these into smtpSchema.
import { z } from 'zod';
import { parseDuration } from '../util/duration.ts';

const nonEmpty = z.string().min(1, 'must not be empty');
const duration = z
  .string()
  .regex(/^[1-9]\d*(ms|s|m|h|d)$/, 'must be a positive duration such as 1s, 1m or 24h');
const authMethod = z
  .enum(['PLAIN', 'LOGIN'])
  .optional()
  .describe('force AUTH PLAIN or AUTH LOGIN; default: the first the server offers');

export const smtpAuthSchema = z
  .discriminatedUnion('type', [
    z.strictObject({
      type: z.literal('login').optional().describe('login (default): user and password'),
      user: nonEmpty,
      pass: z.string().describe('a secret: use ${ENV}'),
      method: authMethod,
    }),
    z.strictObject({
      type: z.literal('oauth2').describe('XOAUTH2 with an access token from the refresh-token flow'),
      user: nonEmpty.describe('the mailbox the token belongs to'),
      clientId: nonEmpty.describe('the app (client) id registered with Microsoft Entra or Google'),
      clientSecret: z.string().optional().describe('a secret: use ${ENV}; omit for a public client'),
      refreshToken: nonEmpty.describe('a secret: use ${ENV}'),
      accessUrl: z
        .url({ protocol: /^https?$/ })
        .describe(
          'token endpoint: https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token or https://oauth2.googleapis.com/token',
        ),
      scope: z
        .string()
        .optional()
        .describe(
          'sent with the refresh; Microsoft: "https://outlook.office365.com/SMTP.Send offline_access"',
        ),
      requestTimeoutMs: z.number().int().positive().default(30_000).describe('deadline of one token request'),
    }),
  ])
  .optional()
  .describe('omit for servers that accept mail without AUTH');

/**
 * Documented relay limits (README "Relays" gives the source of each number):
 * - microsoft365: Exchange Online limits, "Sending limits": 30 messages per minute (message rate
 *   limit) and 10,000 recipients per day (recipient rate limit) per mailbox.
 * - gmail: Google Workspace Admin Help, "Gmail sending limits in Google Workspace": 2,000 messages
 *   per day per user; no per-minute rate is published, so throttling replies set the pace.
 * - ses-sandbox: Amazon SES Developer Guide, "Service quotas in Amazon SES" / sandbox: 1 message
 *   per second and 200 messages per 24-hour period.
 */
export const RATE_PRESETS = {
  microsoft365: { rateLimit: { messages: 30, per: '1m' }, dailyLimit: 10_000 },
  gmail: { rateLimit: undefined, dailyLimit: 2_000 },
  'ses-sandbox': { rateLimit: { messages: 1, per: '1s' }, dailyLimit: 200 },
} as const satisfies Record<string, { rateLimit: RateLimit | undefined; dailyLimit: number }>;
export type RatePreset = keyof typeof RATE_PRESETS;

export interface RateLimit {
  messages: number;
  per: string;
}

export const rateLimitSchema = z
  .union(
    [
      z.enum(['microsoft365', 'gmail', 'ses-sandbox']),
      z.strictObject({
        messages: z.number().int().min(1).describe('messages the relay takes per `per`'),
        per: duration.describe('the window, e.g. 1s, 1m'),
      }),
    ],
    { error: 'must be microsoft365, gmail, ses-sandbox, or { messages: N, per: 1m }' },
  )
  .optional()
  .describe("the relay's sending limit: the dispatcher paces itself to it; a preset also sets dailyLimit");

export const dailyLimitSchema = z
  .number()
  .int()
  .min(1)
  .optional()
  .describe('messages per rolling 24 hours; sends pause (rows stay pending) once it is reached');

export const dkimSchema = z
  .strictObject({
    domainName: nonEmpty.describe('the d= domain, e.g. example.com'),
    keySelector: nonEmpty.describe('the s= selector: the key is published at <selector>._domainkey.<domain>'),
    privateKeyFile: nonEmpty.describe('PEM private key (RSA or Ed25519); relative to the config file'),
  })
  .optional()
  .describe("sign every message with DKIM (nodemailer's signer)");

/**
 * Sends go at 95% of the relay's rate: evenly spaced sends at exactly the limit put every window's
 * last message on its edge, where a few ms of network jitter make the relay count one too many.
 */
export const PACE_MARGIN = 0.95;

/** The pace and daily cap a config asks for, presets expanded; undefined parts are unlimited. */
export interface SendLimits {
  /** the pace in sends per millisecond (the relay's limit less PACE_MARGIN) */
  ratePerMs?: number;
  /** the relay's limit as configured, in sends per millisecond */
  limitPerMs?: number;
  /** the bucket: how many sends may go out back to back */
  burst?: number;
  dailyLimit?: number;
  /** the preset's or the config's text, for logs and status */
  describe: string;
}

export function sendLimits(smtp: {
  rateLimit?: RatePreset | RateLimit | undefined;
  dailyLimit?: number | undefined;
}): SendLimits {
  const preset = typeof smtp.rateLimit === 'string' ? RATE_PRESETS[smtp.rateLimit] : undefined;
  const rate: RateLimit | undefined = preset ? preset.rateLimit : (smtp.rateLimit as RateLimit | undefined);
  const dailyLimit = smtp.dailyLimit ?? preset?.dailyLimit;
  const out: SendLimits = { describe: typeof smtp.rateLimit === 'string' ? smtp.rateLimit : 'no rate limit' };
  if (rate) {
    out.limitPerMs = rate.messages / parseDuration(rate.per);
    out.ratePerMs = out.limitPerMs * PACE_MARGIN;
    // A bucket of one: sends are evenly spaced, so a relay that counts a sliding window (Exchange
    // Online does) sees at most `messages` in any `per`, however its window is aligned.
    out.burst = 1;
    out.describe = `${rate.messages}/${rate.per}${preset ? ` (${smtp.rateLimit as string})` : ''}`;
  }
  if (dailyLimit !== undefined) out.dailyLimit = dailyLimit;
  return out;
}
