// What every command shares: the Command shape, the -c option, loading the config (after which
// everything printed is scrubbed of its secrets), and small option parsers.
import type { ParseArgsConfig } from 'node:util';
import type { LoadedConfig } from '../config/index.ts';
import { parseDuration } from '../util/duration.ts';
import { UsageError } from '../util/errors.ts';
import { makeScrubber } from '../util/secrets.ts';

export type Values = Record<string, unknown>;

export interface CliContext {
  /** a line on stdout, scrubbed of the loaded config's secrets */
  out(line: string): void;
  /** a line on stderr, likewise */
  err(line: string): void;
  /**
   * Reads the config (-c, $LEAD_NOTIFIER_CONFIG, ./config/notifier.yaml). `templates: false` skips
   * compiling templates, for commands that only read the store.
   */
  load(values: Values, opts?: { templates?: boolean }): Promise<LoadedConfig>;
}

/** A command's own file holds this; its one-line summary lives in the router's table (index.ts). */
export interface Command {
  name: string;
  usage: string;
  options: NonNullable<ParseArgsConfig['options']>;
  run(values: Values, positionals: string[], ctx: CliContext): Promise<number>;
}

export const configOption = { config: { type: 'string', short: 'c' } } as const;

export function createContext(): CliContext & { scrub(text: string): string } {
  let scrub: (text: string) => string = (t) => t;
  return {
    scrub: (t) => scrub(t),
    out: (line) => void process.stdout.write(scrub(line) + '\n'),
    err: (line) => void process.stderr.write(scrub(line) + '\n'),
    async load(values, opts = {}) {
      // loaded here: `--help` and `emulator` never pay for the config's schema and YAML parser
      const { loadConfig, resolveConfigPath, secretsOf } = await import('../config/index.ts');
      const path = resolveConfigPath(str(values, 'config'));
      // compileRule is imported lazily: `status` and `outbox` only read the config
      const ruleChecks =
        opts.templates === false ? undefined : (await import('../templates/index.ts')).compileRule;
      const config = await loadConfig(path, ruleChecks ? { ruleChecks } : {});
      scrub = makeScrubber(secretsOf(config));
      return config;
    },
  };
}

/** a string option's value, or undefined */
export function str(values: Values, key: string): string | undefined {
  const v = values[key];
  return typeof v === 'string' ? v : undefined;
}

/** an integer option within [min, max], or `fallback` when absent */
export function intOption(values: Values, key: string, fallback: number, min: number, max: number): number {
  const raw = values[key];
  const n = raw === undefined ? fallback : Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${key} must be ${min}..${max}`);
  return n;
}

/** `24h`-style duration back from now, or an ISO-8601 instant */
export function parseSince(text: string): Date {
  if (/^\d+(ms|s|m|h|d)$/.test(text)) return new Date(Date.now() - parseDuration(text));
  const t = Date.parse(text);
  if (Number.isNaN(t))
    throw new UsageError(`--since must be a duration (24h) or an ISO-8601 instant: ${text}`);
  return new Date(t);
}
