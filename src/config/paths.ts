// Paths relative to the config file: template files, the key and CA files, the store URL.
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import type { LoadedConfig } from './schema.ts';

export const TEMPLATE_KEYS = ['from', 'to', 'cc', 'bcc', 'replyTo', 'subject', 'text', 'html'] as const;

/** the channel templates that may name a file (.hbs), as [channel, key] */
export const CHANNEL_TEMPLATE_KEYS = [
  ['webhook', 'body'],
  ['slack', 'text'],
  ['slack', 'blocks'],
  ['teams', 'title'],
  ['teams', 'text'],
] as const;

type RuleLike = LoadedConfig['rules'][number];

/** each channel template of the rule that is set: where it is, its value, and how to replace it */
export function channelTemplates(
  rule: RuleLike,
): { channel: string; key: string; value: string; set: (v: string) => void }[] {
  const out: { channel: string; key: string; value: string; set: (v: string) => void }[] = [];
  for (const [channel, key] of CHANNEL_TEMPLATE_KEYS) {
    const section = rule[channel] as Record<string, unknown> | undefined;
    const value = section?.[key];
    if (section && typeof value === 'string')
      out.push({ channel, key, value, set: (v) => (section[key] = v) });
  }
  return out;
}

/** A value that names a template file rather than being an inline template. */
export function isTemplateFile(value: string | undefined): value is string {
  if (value === undefined) return false;
  // the same test the template layer applies when it reads the file (surrounding blanks do not count)
  const v = value.trim();
  return v.endsWith('.hbs') && !v.includes('{{') && !/[\r\n]/.test(v);
}

export function resolvePaths(config: LoadedConfig, baseDir: string): void {
  const auth = config.salesforce.auth;
  if (auth.flow === 'jwt') auth.privateKeyFile = resolve(baseDir, auth.privateKeyFile);
  if (config.smtp.tls.ca !== undefined) config.smtp.tls.ca = resolve(baseDir, config.smtp.tls.ca);
  if (config.smtp.dkim) config.smtp.dkim.privateKeyFile = resolve(baseDir, config.smtp.dkim.privateKeyFile);
  const store = storeLocation(config.store, baseDir);
  if (store.kind === 'sqlite')
    config.store = `sqlite:${store.path}${store.synchronous ? `?synchronous=${store.synchronous}` : ''}`;
  for (const rule of config.rules) {
    for (const t of channelTemplates(rule))
      if (isTemplateFile(t.value)) t.set(resolve(baseDir, t.value.trim()));
    if (!rule.email) continue;
    for (const key of TEMPLATE_KEYS) {
      const v = rule.email[key];
      if (isTemplateFile(v)) rule.email[key] = resolve(baseDir, v.trim());
    }
    for (const a of rule.email.attachments) {
      if (isTemplateFile(a.content)) a.content = resolve(baseDir, a.content.trim());
    }
  }
}

export type StoreLocation =
  /** `synchronous` only when the URL names it (the store's default is normal) */
  { kind: 'sqlite'; path: string; synchronous?: 'full' | 'normal' } | { kind: 'postgres'; url: string };

/**
 * `sqlite:relative/path.db` (against baseDir), `sqlite:/abs/path.db`, `sqlite:///abs/path.db`,
 * `sqlite::memory:`, or a `postgres://` / `postgresql://` URL. Messages never echo the URL: it may
 * hold a password. `baseDir` defaults to the working directory, as for the store's sqlitePath.
 */
/**
 * The options a `sqlite:` URL carries after `?`: `synchronous=normal` (the store's default: WAL
 * commits reach the OS at once, no fsync; they survive a killed process, but the last commits
 * before a power cut or OS crash may be lost) or `synchronous=full` (every commit is fsynced:
 * survives a power cut, at the cost of an fsync per transaction).
 */
function sqliteOptions(query: string): { synchronous?: 'full' | 'normal' } {
  let synchronous: 'full' | 'normal' | undefined;
  for (const [k, v] of new URLSearchParams(query)) {
    if (k !== 'synchronous')
      throw new Error(`has an unknown sqlite option ${JSON.stringify(k)} (known: synchronous)`);
    const lower = v.toLowerCase();
    if (lower !== 'full' && lower !== 'normal')
      throw new Error(`synchronous must be full or normal, got ${JSON.stringify(v)}`);
    synchronous = lower;
  }
  return synchronous ? { synchronous } : {};
}

export function storeLocation(store: string, baseDir: string = process.cwd()): StoreLocation {
  if (store.startsWith('sqlite:')) {
    const q = store.indexOf('?');
    let p = store.slice('sqlite:'.length, q < 0 ? undefined : q);
    const options = q < 0 ? {} : sqliteOptions(store.slice(q + 1));
    if (p === ':memory:') return { kind: 'sqlite', path: ':memory:', ...options };
    if (p.startsWith('//')) p = p.slice(2);
    if (p.trim() === '') throw new Error('needs a file path after sqlite:, e.g. sqlite:./data/notifier.db');
    return { kind: 'sqlite', path: isAbsolute(p) ? p : resolve(baseDir, p), ...options };
  }
  if (/^postgres(ql)?:/.test(store)) {
    let url: URL;
    try {
      url = new URL(store);
    } catch {
      throw new Error('is not a valid postgres:// URL (postgres://user:password@host:5432/database)');
    }
    if (!store.startsWith(`${url.protocol}//`)) {
      throw new Error('must be written postgres://user@host/database (with //)');
    }
    return { kind: 'postgres', url: store };
  }
  throw new Error('must start with sqlite: or postgres://');
}

export function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}
