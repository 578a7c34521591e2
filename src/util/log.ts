// One root logger. Secrets are kept out twice over: `redact` removes known secret keys from
// logged objects, and the output stream replaces any secret VALUE wherever it appears (an error
// message quoting a URL with a password, a token echoed by a server...).
import { createRequire } from 'node:module';
import { Writable } from 'node:stream';
import pino from 'pino';
import type { Logger } from 'pino';
import type PinoPretty from 'pino-pretty';
import { makeScrubber, REDACTED, SECRET_KEYS } from './secrets.ts';

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

const SECRET_KEY_SET = new Set(SECRET_KEYS);
/** how deep below a logged object secret keys are looked for (0 = its own keys) */
const REDACT_DEPTH = 2;

/**
 * `value` with every SECRET_KEYS key at most `depth` levels down (arrays included) replaced by
 * REDACTED (`keep`: a key of `value` itself to leave alone); copies only what it changes, never
 * mutates (an Error is copied as its own enumerable properties, which is all JSON shows of it).
 * Hand-written rather than pino's `redact` (@pinojs/redact), which runs each wildcard path
 * (`*.password`, `*.*.password`: 26 of them here) against every top-level value of every line:
 * about 70 µs of CPU and tens of KB of garbage per line, a third of the daemon's allocation while
 * it drains a backlog (measured); one walk over a fixed set of keys does the same in a few µs.
 */
export function censorSecretKeys<T>(value: T, depth = REDACT_DEPTH, keep?: string): T {
  if (value === null || typeof value !== 'object' || depth < 0 || ArrayBuffer.isView(value)) return value;
  let out: Record<string, unknown> | unknown[] | undefined;
  const src = value as Record<string, unknown>;
  for (const key of Object.keys(src)) {
    if (key === keep) continue;
    const v = src[key];
    const next = SECRET_KEY_SET.has(key) ? REDACTED : censorSecretKeys(v, depth - 1);
    if (next === v) continue;
    out ??= Array.isArray(value) ? [...value] : { ...src };
    (out as Record<string, unknown>)[key] = next;
  }
  return (out ?? value) as T;
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
      // secret keys: the logged object's own and those one or two levels down (pino runs
      // serializers after this hook, so `err` is looked into once serialized, below)
      formatters: { log: (obj) => censorSecretKeys(obj, REDACT_DEPTH, 'err') },
      // pino's own redaction for the top-level keys only (no wildcard paths: cheap), which also
      // covers the bindings of child loggers (pino formats those once, without the hook above)
      redact: { paths: [...SECRET_KEYS], censor: REDACTED },
      timestamp: pino.stdTimeFunctions.isoTime,
      serializers: {
        err: (e: Error) => censorSecretKeys(pino.stdSerializers.errWithCause(e), REDACT_DEPTH - 1),
      },
    },
    stream,
  );
}
