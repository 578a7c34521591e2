// One root logger. Secrets are kept out twice over: `redact` removes known secret keys from
// logged objects, and the output stream replaces any secret VALUE wherever it appears (an error
// message quoting a URL with a password, a token echoed by a server...).
import { Writable } from 'node:stream';
import pino from 'pino';
import type { Logger } from 'pino';
import pinoPretty from 'pino-pretty';

export type { Logger };

export interface LoggerOptions {
  level?: string;
  format?: 'json' | 'pretty';
  /** secret values (passwords, client secrets, tokens, private keys) to scrub from every line */
  secrets?: string[];
  /** where lines go; default stdout */
  destination?: { write(line: string): unknown };
}

const SECRET_KEYS = [
  'password',
  'pass',
  'clientSecret',
  'client_secret',
  'accessToken',
  'access_token',
  'refreshToken',
  'refresh_token',
  'securityToken',
  'privateKey',
  'assertion',
  'authorization',
  'Authorization',
];

export const REDACT_PATHS = [
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((k) => `*.${k}`),
  ...SECRET_KEYS.map((k) => `*.*.${k}`),
  'req.headers.authorization',
  'headers.authorization',
];

/** Replaces each secret, raw and as it appears inside a JSON string, with [redacted]. */
export function makeScrubber(secrets: string[]): (text: string) => string {
  const needles = new Set<string>();
  for (const s of secrets) {
    if (typeof s !== 'string' || s.length < 4) continue; // too short to scrub without mangling text
    needles.add(s);
    needles.add(JSON.stringify(s).slice(1, -1));
    needles.add(encodeURIComponent(s));
  }
  const list = [...needles].sort((a, b) => b.length - a.length);
  if (list.length === 0) return (t) => t;
  return (text) => {
    let out = text;
    for (const n of list) if (out.includes(n)) out = out.split(n).join('[redacted]');
    return out;
  };
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const scrub = makeScrubber(opts.secrets ?? []);
  const target = opts.destination ?? process.stdout;
  const scrubbed = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      target.write(scrub(chunk.toString()));
      cb();
    },
  });
  const format =
    opts.format ??
    (process.env.LOG_FORMAT === 'pretty' || (process.env.LOG_FORMAT !== 'json' && process.stdout.isTTY)
      ? 'pretty'
      : 'json');
  const stream =
    format === 'pretty' ? pinoPretty({ destination: scrubbed, sync: true, colorize: false }) : scrubbed;
  return pino(
    {
      level: process.env.LOG_LEVEL ?? opts.level ?? 'info',
      base: { name: 'lead-notifier' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      serializers: { err: pino.stdSerializers.errWithCause },
    },
    stream,
  );
}
