// One root logger. Secrets are kept out twice over: `redact` removes known secret keys from
// logged objects, and the output stream replaces any secret VALUE wherever it appears (an error
// message quoting a URL with a password, a token echoed by a server...).
import { createRequire } from 'node:module';
import { Writable } from 'node:stream';
import pino from 'pino';
import type { Logger } from 'pino';
import type PinoPretty from 'pino-pretty';
import { makeScrubber, SECRET_KEYS } from './secrets.ts';

export { makeScrubber };

export type { Logger };

export interface LoggerOptions {
  level?: string;
  format?: 'json' | 'pretty';
  /** secret values (passwords, client secrets, tokens, private keys) to scrub from every line */
  secrets?: string[];
  /** where lines go; default stdout */
  destination?: { write(line: string): unknown };
}

export const REDACT_PATHS = [
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((k) => `*.${k}`),
  ...SECRET_KEYS.map((k) => `*.*.${k}`),
  'req.headers.authorization',
  'headers.authorization',
];

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
  // pino-pretty (and its dependencies, a few MB resident) only for a terminal or LOG_FORMAT=pretty
  const stream =
    format === 'pretty'
      ? (createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty)({
          destination: scrubbed,
          sync: true,
          colorize: false,
        })
      : scrubbed;
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
