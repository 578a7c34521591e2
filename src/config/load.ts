// Loads the config file: YAML (with line numbers) -> ${ENV} interpolation -> zod schema -> cross-checks
// -> (optionally) template compilation. Every problem is collected and reported at once as
// `file:line key.path: message`; secret values never appear in a message.
import { createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { validateDetailed } from 'node-cron';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import type { Document, Node as YamlNode } from 'yaml';
import type { z } from 'zod';
import { ConfigError, coerceError } from '../util/errors.ts';
import { parseDuration } from '../util/duration.ts';
import { configSchema } from './schema.ts';
import type { Config, LoadedConfig, RuleConfig } from './schema.ts';

export const DEFAULT_CONFIG_PATH = './config/notifier.yaml';
export const CONFIG_ENV_VAR = 'LEAD_NOTIFIER_CONFIG';

type Seg = string | number;
type KeyPath = Seg[];

interface Issue {
  /** the key path shown in the message */
  path: KeyPath;
  message: string;
  /** where to point when it differs from `path` (e.g. a default that is not written in the file) */
  at?: KeyPath;
}

/** path resolution order: explicit arg (-c), env LEAD_NOTIFIER_CONFIG, DEFAULT_CONFIG_PATH */
export function resolveConfigPath(cliPath?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (cliPath) return cliPath;
  const fromEnv = env[CONFIG_ENV_VAR];
  if (fromEnv) return fromEnv;
  return DEFAULT_CONFIG_PATH;
}

/** read + parse + validate; throws ConfigError whose `issues` are `file:line key.path: message` lines */
export async function loadConfig(
  path: string,
  opts: { env?: NodeJS.ProcessEnv; checkTemplates?: boolean } = {},
): Promise<LoadedConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const e = coerceError(err);
    if (e.code === 'ENOENT') {
      throw new ConfigError([
        `${path}: config file not found (looked for ${resolve(path)}; pass -c FILE or set ${CONFIG_ENV_VAR})`,
      ]);
    }
    if (e.code === 'EISDIR') throw new ConfigError([`${path}: is a directory, not a config file`]);
    throw new ConfigError([`${path}: cannot read the config file: ${e.message}`]);
  }
  const parsed = parseInternal(text, path, opts.env ?? process.env);
  if (opts.checkTemplates ?? true) await checkTemplates(parsed);
  return parsed.config;
}

/** read + parse + validate text as if it came from `file` (relative paths resolve against its directory) */
export function parseConfigText(
  text: string,
  file: string,
  opts: { env?: NodeJS.ProcessEnv } = {},
): LoadedConfig {
  return parseInternal(text, file, opts.env ?? process.env).config;
}

// ---------------------------------------------------------------------------------------------
// parsing

interface Parsed {
  config: LoadedConfig;
  file: string;
  doc: Document.Parsed;
  lines: LineCounter;
}

function parseInternal(text: string, file: string, env: NodeJS.ProcessEnv): Parsed {
  const lines = new LineCounter();
  // uniqueKeys (the default) makes a duplicate key an error; prettyErrors off so that messages carry
  // no source excerpt (which might hold a secret).
  const masked = maskReferences(text);
  const doc = parseDocument(masked.text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) throw new ConfigError(yamlErrors(doc, text, file, lines));
  if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) {
    throw new ConfigError([
      `${file}:1 the config file is empty (it needs at least salesforce, smtp and rules)`,
    ]);
  }

  const issues: Issue[] = [];
  const wholeRefs = new Map<string, string>();
  const badRefs: KeyPath[] = [];
  unmaskNode(doc.contents, masked.refs);
  interpolateNode(doc.contents, [], env, issues, wholeRefs, badRefs);

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError([`${file}:1 ${coerceError(err).message}`]);
  }

  const configPath = resolve(file);
  const baseDir = dirname(configPath);
  const result = validate(data, wholeRefs);
  for (const iss of result.issues) {
    // a missing ${VAR} was reported already; do not add "is required" on top
    if (badRefs.some((p) => startsWith(iss.path, p))) continue;
    issues.push(iss);
  }
  issues.push(...crossChecks(data, baseDir));

  if (issues.length > 0 || !result.config) {
    throw new ConfigError(formatIssues(issues, file, doc, lines, collectSecretsRaw(data)));
  }
  const config: LoadedConfig = { ...result.config, configPath, baseDir };
  resolvePaths(config, baseDir);
  return { config, file, doc, lines };
}

function yamlErrors(doc: Document.Parsed, text: string, file: string, lines: LineCounter): string[] {
  const out: string[] = [];
  const seenLines = new Set<number>();
  for (const [n, err] of doc.errors.entries()) {
    // after the first syntax error the parser is out of step: "unexpected token" errors that follow
    // are that same mistake cascading, so only the first is shown
    if (n > 0 && err.code === 'UNEXPECTED_TOKEN') continue;
    const { line, col } = lines.linePos(err.pos[0]);
    // one error per line: the rest are usually the same mistake cascading
    if (seenLines.has(line)) continue;
    seenLines.add(line);
    let msg = err.message;
    // yaml quotes the offending token; keep it only when it is punctuation, never a value
    msg = msg.replace(/: "([^"]*)"$/, (m, tok: string) => (/^[^\w]{1,3}$/.test(tok) ? m : ''));
    if (err.code === 'DUPLICATE_KEY') msg = 'duplicate key (each key may appear once per mapping)';
    out.push(`${file}:${line}:${col} ${msg}`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// ${ENV} interpolation, on parsed scalars so that line numbers stay right

const REF = /^([A-Za-z_][A-Za-z0-9_]*)(?::-([\s\S]*))?$/;

// `auth: { user: ${SMTP_USER}, pass: ${SMTP_PASS} }` is what people write (DESIGN.md does), but
// `{` and `}` are flow indicators, so that is not valid YAML. Before parsing, each `${...}` is
// replaced by a placeholder of the SAME length made of characters that are plain-scalar safe (so
// lines and columns in error messages stay right); the parsed values get the original text back.
const MASK_START = '\uE000';
const MASK_PAD = '\uE001';
const MASKED = /\uE000([0-9a-z]+)\uE001*/g;

function maskReferences(text: string): { text: string; refs: string[] } {
  const refs: string[] = [];
  const out = text.replace(/(\$?)\$\{[^}\n]*\}/g, (match: string, escaped: string) => {
    if (escaped) return match; // $${ is a literal ${
    const id = refs.length.toString(36);
    if (id.length + 1 > match.length) return match;
    refs.push(match);
    return MASK_START + id + MASK_PAD.repeat(match.length - 1 - id.length);
  });
  return { text: out, refs };
}

function unmaskNode(node: unknown, refs: string[]): void {
  if (refs.length === 0) return;
  if (isMap(node)) {
    for (const pair of node.items) unmaskNode(pair.value, refs);
  } else if (isSeq(node)) {
    for (const item of node.items) unmaskNode(item, refs);
  } else if (isScalar(node) && typeof node.value === 'string' && node.value.includes(MASK_START)) {
    node.value = node.value.replace(MASKED, (m: string, id: string) => refs[parseInt(id, 36)] ?? m);
  }
}

function interpolateNode(
  node: unknown,
  path: KeyPath,
  env: NodeJS.ProcessEnv,
  issues: Issue[],
  wholeRefs: Map<string, string>,
  badRefs: KeyPath[],
): void {
  if (isMap(node)) {
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      interpolateNode(pair.value, [...path, key], env, issues, wholeRefs, badRefs);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => interpolateNode(item, [...path, i], env, issues, wholeRefs, badRefs));
  } else if (isScalar(node) && typeof node.value === 'string' && node.value.includes('$')) {
    const r = interpolate(node.value, env);
    if (r.error) {
      issues.push({ path, message: r.error });
      badRefs.push(path);
      node.value = '';
      return;
    }
    if (r.whole) wholeRefs.set(pathKey(path), node.value.trim());
    node.value = r.value;
  }
}

/**
 * `${NAME}`, `${NAME:-default}` (default when unset or empty, as in POSIX sh) and `$${` for a literal
 * `${`. The result is never echoed in an error: it may be a secret.
 */
export function interpolate(
  text: string,
  env: NodeJS.ProcessEnv,
):
  | { value: string; whole: boolean; error?: undefined }
  | { error: string; value?: undefined; whole?: undefined } {
  let out = '';
  let refs = 0;
  let i = 0;
  while (i < text.length) {
    if (text.startsWith('$${', i)) {
      out += '${';
      i += 3;
      continue;
    }
    if (text.startsWith('${', i)) {
      const end = text.indexOf('}', i + 2);
      if (end < 0) return { error: 'unterminated ${ (write $${ for a literal ${)' };
      const inner = text.slice(i + 2, end);
      const m = REF.exec(inner);
      if (!m) {
        return {
          error: `invalid reference \${${inner}}: use \${NAME} or \${NAME:-default} (NAME: letters, digits, _)`,
        };
      }
      const name = m[1]!;
      const fallback = m[2];
      const value = env[name];
      if (fallback !== undefined) out += value === undefined || value === '' ? fallback : value;
      else if (value === undefined) {
        return {
          error: `environment variable ${name} is not set (use \${${name}:-default} to give a default)`,
        };
      } else out += value;
      refs += 1;
      i = end + 1;
      continue;
    }
    out += text[i];
    i += 1;
  }
  const whole = refs === 1 && /^\$\{[^}]*\}$/.test(text.trim());
  return { value: out, whole };
}

// ---------------------------------------------------------------------------------------------
// schema validation

/** Marks zod's own messages so that they are rewritten in plain words; schema messages pass through. */
const DEFAULT_MSG = '\u0000default';

function validate(data: unknown, wholeRefs: Map<string, string>): { config?: Config; issues: Issue[] } {
  // A whole `${VAR}` in a number/boolean field arrives as a string: coerce the fields zod complains
  // about and validate again (paths only come from the schema, so no guessing by value shape).
  for (let round = 0; round < 3; round++) {
    const r = configSchema.safeParse(data, { error: () => DEFAULT_MSG });
    if (r.success) return { config: r.data, issues: [] };
    let changed = false;
    const issues: Issue[] = [];
    for (const iss of r.error.issues) {
      const path = iss.path.filter((s): s is Seg => typeof s !== 'symbol');
      if (iss.code === 'invalid_type' && wholeRefs.has(pathKey(path))) {
        const raw = getAt(data, path);
        if (typeof raw === 'string') {
          const coerced = coerceScalar(raw, iss.expected);
          if (coerced !== undefined) {
            setAt(data, path, coerced);
            changed = true;
            continue;
          }
          const ref = wholeRefs.get(pathKey(path));
          issues.push({ path, message: `must be ${article(iss.expected)}, and ${ref} is not one` });
          continue;
        }
      }
      issues.push(...describeIssue(iss, path, data));
    }
    if (!changed) return { issues };
  }
  return { issues: [{ path: [], message: 'could not validate the config' }] };
}

function coerceScalar(raw: string, expected: string): number | boolean | undefined {
  const s = raw.trim();
  if (expected === 'number' || expected === 'int') {
    return /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(s) ? Number(s) : undefined;
  }
  if (expected === 'boolean') {
    if (/^(true|yes|on)$/i.test(s)) return true;
    if (/^(false|no|off)$/i.test(s)) return false;
  }
  return undefined;
}

function describeIssue(iss: z.core.$ZodIssue, path: KeyPath, data: unknown): Issue[] {
  if (iss.code === 'unrecognized_keys') {
    return iss.keys.map((key) => ({ path: [...path, key], message: unknownKeyMessage(key, path, data) }));
  }
  // zod 4 reports a bad discriminator as invalid_union with the allowed tags in `options` (untyped)
  const tags = iss.code === 'invalid_union' ? (iss as { options?: unknown }).options : undefined;
  if (Array.isArray(tags)) {
    const input = getAt(data, path);
    if (input === undefined) return [{ path, message: `is required: one of ${quoteList(tags)}` }];
    return [{ path, message: `must be one of ${quoteList(tags)}${suggest(input, tags.map(String))}` }];
  }
  if (iss.message !== DEFAULT_MSG) return [{ path, message: iss.message }];
  const input = getAt(data, path);
  switch (iss.code) {
    case 'invalid_type':
      if (input === undefined) return [{ path, message: 'is required' }];
      return [{ path, message: `must be ${article(iss.expected)}, not ${typeOf(input)}` }];
    case 'too_small':
    case 'too_big': {
      const small = iss.code === 'too_small';
      const bound = small
        ? (iss as { minimum: number | bigint }).minimum
        : (iss as { maximum: number | bigint }).maximum;
      const word = small
        ? iss.inclusive
          ? 'at least'
          : 'more than'
        : iss.inclusive
          ? 'at most'
          : 'less than';
      if (iss.origin === 'string') {
        if (small && Number(bound) === 1) return [{ path, message: 'must not be empty' }];
        return [{ path, message: `must be ${word} ${bound} characters long` }];
      }
      if (iss.origin === 'array') return [{ path, message: `needs ${word} ${bound} item(s)` }];
      return [{ path, message: `must be ${word} ${bound}` }];
    }
    case 'invalid_value':
      return [
        { path, message: `must be one of ${quoteList(iss.values)}${suggest(input, iss.values.map(String))}` },
      ];
    case 'invalid_format':
      if (iss.format === 'url')
        return [{ path, message: 'must be an http(s) URL such as https://login.salesforce.com' }];
      if (iss.format === 'datetime') {
        const now = path.at(-1) === 'startFrom' ? '"now" or ' : '';
        return [
          {
            path,
            message: `must be ${now}an ISO-8601 instant with a time zone, such as 2024-05-01T00:00:00Z`,
          },
        ];
      }
      return [{ path, message: `is not a valid ${iss.format}` }];
    case 'not_multiple_of':
      return [{ path, message: `must be a multiple of ${iss.divisor}` }];
    case 'invalid_key':
      return [{ path, message: 'has an invalid key' }];
    case 'invalid_union':
      return [{ path, message: 'does not match any allowed form' }];
    default:
      return [{ path, message: 'is invalid' }];
  }
}

function unknownKeyMessage(key: string, parentPath: KeyPath, data: unknown): string {
  const shape = schemaAt(configSchema, parentPath, data);
  const valid = shape ? objectKeys(shape) : [];
  // a key written one level too high, e.g. `subject` directly under a rule instead of under `email`
  const home = valid.find((k) => objectKeys(unwrap(objectShape(shape)[k])).includes(key));
  const hint = home ? ` (it belongs under '${home}')` : suggest(key, valid);
  return `unknown key '${key}'${hint}`;
}

// --- walking the zod schema by key path (for "did you mean"); zod 4's def objects

type AnySchema = z.core.$ZodType;
interface Def {
  type: string;
  innerType?: AnySchema;
  in?: AnySchema;
  shape?: Record<string, AnySchema>;
  element?: AnySchema;
  valueType?: AnySchema;
  options?: AnySchema[];
  discriminator?: string;
  values?: unknown[];
}
const defOf = (s: AnySchema | undefined): Def | undefined => s?._zod.def as Def | undefined;

function unwrap(s: AnySchema | undefined): AnySchema | undefined {
  let cur = s;
  for (let i = 0; i < 20 && cur; i++) {
    const d = defOf(cur)!;
    if (d.innerType) cur = d.innerType;
    else if (d.type === 'pipe' && d.in) cur = d.in;
    else break;
  }
  return cur;
}

function objectShape(s: AnySchema | undefined): Record<string, AnySchema> {
  return defOf(unwrap(s))?.shape ?? {};
}
function objectKeys(s: AnySchema | undefined): string[] {
  return Object.keys(objectShape(s));
}

function schemaAt(root: AnySchema, path: KeyPath, data: unknown): AnySchema | undefined {
  let cur: AnySchema | undefined = root;
  let value: unknown = data;
  const pickOption = () => {
    const d = defOf(unwrap(cur));
    if (d?.type === 'union' && d.discriminator && d.options) {
      const tag = (value as Record<string, unknown> | undefined)?.[d.discriminator];
      cur = d.options.find((o) => defOf(objectShape(o)[d.discriminator!])?.values?.includes(tag));
    }
  };
  pickOption();
  for (const seg of path) {
    const d = defOf(unwrap(cur));
    if (!d) return undefined;
    if (d.type === 'object') cur = d.shape?.[String(seg)];
    else if (d.type === 'array') cur = d.element;
    else if (d.type === 'record') cur = d.valueType;
    else return undefined;
    value = (value as Record<Seg, unknown> | undefined)?.[seg];
    pickOption();
  }
  return unwrap(cur);
}

// ---------------------------------------------------------------------------------------------
// cross-checks: run per section, so a mistake in one section does not hide those in another

function crossChecks(data: unknown, baseDir: string): Issue[] {
  const issues: Issue[] = [];
  if (!isRecord(data)) return issues;
  // These read the raw values with type guards rather than the parsed config, so that a mistake
  // elsewhere in the same section does not hide them: every problem is reported in one go.

  const auth = isRecord(data.salesforce) ? data.salesforce.auth : undefined;
  if (
    isRecord(auth) &&
    auth.flow === 'jwt' &&
    typeof auth.privateKeyFile === 'string' &&
    auth.privateKeyFile
  ) {
    const file = resolve(baseDir, auth.privateKeyFile);
    const path = ['salesforce', 'auth', 'privateKeyFile'];
    const pem = readText(file);
    if (pem === undefined) issues.push({ path, message: `private key file not found: ${file}` });
    else {
      try {
        createPrivateKey({ key: pem, format: 'pem' });
      } catch (err) {
        const why = coerceError(err).message;
        issues.push({ path, message: `is not a PEM private key: ${file} (${why})` });
      }
    }
  }

  if (isRecord(data.smtp)) issues.push(...smtpChecks(data.smtp, baseDir));

  if (typeof data.store === 'string') {
    try {
      storeLocation(data.store, baseDir);
    } catch (err) {
      // the schema's own message says the same about an unknown scheme
      if (/^(sqlite|postgres|postgresql):/.test(data.store)) {
        issues.push({ path: ['store'], message: coerceError(err).message });
      }
    }
  }

  if (Array.isArray(data.rules)) {
    const seen = new Map<string, number>();
    data.rules.forEach((rule: unknown, i: number) => {
      if (!isRecord(rule)) return;
      if (typeof rule.name === 'string') {
        const prev = seen.get(rule.name);
        if (prev !== undefined) {
          issues.push({
            path: ['rules', i, 'name'],
            message: `duplicate rule name '${rule.name}' (also rules[${prev}])`,
          });
        } else seen.set(rule.name, i);
      }
      issues.push(...ruleChecks(rule, i));
    });
  }
  return issues;
}

function smtpChecks(smtp: Record<string, unknown>, baseDir: string): Issue[] {
  const issues: Issue[] = [];
  const port = smtp.port === undefined ? 587 : smtp.port;
  const secure = smtp.secure === undefined ? false : smtp.secure;
  const secureAt = 'secure' in smtp ? ['smtp', 'secure'] : ['smtp', 'port'];
  // RFC 8314: 465 is "implicit TLS" (TLS from the first byte); RFC 6409 + RFC 3207: 587 is
  // submission, plain text upgraded by STARTTLS. Mixing them hangs or fails the TLS handshake.
  if (secure === true && port === 587) {
    issues.push({
      path: ['smtp', 'secure'],
      at: secureAt,
      message:
        'port 587 is STARTTLS (plain connection, upgraded to TLS): set secure: false, and requireTLS: true to ' +
        'insist on the upgrade; secure: true (implicit TLS) is for port 465',
    });
  }
  if (secure === false && port === 465) {
    issues.push({
      path: ['smtp', 'secure'],
      at: secureAt,
      message:
        'port 465 is implicit TLS (TLS from the first byte): set secure: true; secure: false is for ' +
        'port 587 or 25, where STARTTLS upgrades a plain connection',
    });
  }
  if (smtp.ignoreTLS === true && smtp.requireTLS === true) {
    issues.push({
      path: ['smtp', 'ignoreTLS'],
      message:
        'ignoreTLS and requireTLS contradict each other: requireTLS insists on STARTTLS, ignoreTLS never uses it',
    });
  }
  const ca = isRecord(smtp.tls) ? smtp.tls.ca : undefined;
  if (typeof ca === 'string' && ca !== '') {
    const file = resolve(baseDir, ca);
    const pem = readText(file);
    if (pem === undefined)
      issues.push({ path: ['smtp', 'tls', 'ca'], message: `CA file not found: ${file}` });
    else if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
      issues.push({ path: ['smtp', 'tls', 'ca'], message: `does not contain a PEM certificate: ${file}` });
    }
  }
  return issues;
}

function ruleChecks(rule: Record<string, unknown>, i: number): Issue[] {
  const issues: Issue[] = [];
  const at = (...p: KeyPath): KeyPath => ['rules', i, ...p];

  if (typeof rule.schedule === 'string') {
    const schedule = rule.schedule.trim();
    const cron = validateDetailed(schedule);
    if (!cron.valid) {
      const first = cron.errors[0];
      let why: string;
      if (!first || first.field === 'expression') {
        const n = schedule.split(/\s+/).filter(Boolean).length;
        why =
          `has ${n} field(s); node-cron takes 6 (second minute hour day-of-month month day-of-week) ` +
          'or 5 (without seconds)';
      } else {
        why = cron.errors.map((e) => `the ${e.field} field '${e.value ?? ''}' is invalid`).join('; ');
      }
      issues.push({ path: at('schedule'), message: `invalid cron expression "${rule.schedule}": ${why}` });
    }
  }

  // the schema checks the format; this catches what the format allows but no calendar has
  if (typeof rule.startFrom === 'string' && rule.startFrom !== 'now' && /^\d{4}-/.test(rule.startFrom)) {
    if (Number.isNaN(Date.parse(rule.startFrom))) {
      issues.push({ path: at('startFrom'), message: 'is not a valid instant' });
    }
  }
  if (typeof rule.lookback === 'string' && /^\d+(ms|s|m|h)$/.test(rule.lookback)) {
    try {
      parseDuration(rule.lookback);
    } catch (err) {
      issues.push({ path: at('lookback'), message: coerceError(err).message });
    }
  }

  if (Array.isArray(rule.select)) {
    // SOQL field names are case-insensitive
    const firstIndex = new Map<string, number>();
    rule.select.forEach((field: unknown, j: number) => {
      if (typeof field !== 'string') return;
      const k = field.toLowerCase();
      const prev = firstIndex.get(k);
      if (prev !== undefined) {
        issues.push({ path: at('select', j), message: `repeats '${field}' (already select[${prev}])` });
      } else firstIndex.set(k, j);
    });
  }

  if (typeof rule.where === 'string') {
    // look at keywords outside string literals only (quotes escaped with \', per the SOQL reference)
    const bare = rule.where.replace(/'(?:\\.|[^'\\])*'/g, "''");
    if (bare.trim() === '')
      issues.push({ path: at('where'), message: 'must not be empty (omit it instead)' });
    if (/^\s*WHERE\b/i.test(bare)) {
      issues.push({ path: at('where'), message: 'write the condition only, without the WHERE keyword' });
    }
    const clause = /\b(ORDER\s+BY|LIMIT|OFFSET|GROUP\s+BY|FOR\s+UPDATE)\b/i.exec(bare);
    if (clause) {
      const word = clause[1]!.toUpperCase().replace(/\s+/g, ' ');
      issues.push({
        path: at('where'),
        message: `must be a condition only: remove ${word} (the worker orders and pages itself)`,
      });
    }
  }
  return issues;
}

// ---------------------------------------------------------------------------------------------
// paths relative to the config file

const TEMPLATE_KEYS = ['from', 'to', 'cc', 'bcc', 'replyTo', 'subject', 'text', 'html'] as const;

/** A value that names a template file rather than being an inline template. */
export function isTemplateFile(value: string | undefined): value is string {
  return value !== undefined && /\.hbs$/.test(value.trim()) && !value.includes('{{') && !value.includes('\n');
}

function resolvePaths(config: LoadedConfig, baseDir: string): void {
  const auth = config.salesforce.auth;
  if (auth.flow === 'jwt') auth.privateKeyFile = resolve(baseDir, auth.privateKeyFile);
  if (config.smtp.tls.ca !== undefined) config.smtp.tls.ca = resolve(baseDir, config.smtp.tls.ca);
  const store = storeLocation(config.store, baseDir);
  if (store.kind === 'sqlite') config.store = `sqlite:${store.path}`;
  for (const rule of config.rules) {
    for (const key of TEMPLATE_KEYS) {
      const v = rule.email[key];
      if (isTemplateFile(v)) rule.email[key] = resolve(baseDir, v.trim());
    }
    for (const a of rule.email.attachments) {
      if (isTemplateFile(a.content)) a.content = resolve(baseDir, a.content.trim());
    }
  }
}

export type StoreLocation = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string };

/**
 * `sqlite:relative/path.db` (against baseDir), `sqlite:/abs/path.db`, `sqlite:///abs/path.db`,
 * `sqlite::memory:`, or a `postgres://` / `postgresql://` URL. Messages never echo the URL: it may
 * hold a password.
 */
export function storeLocation(store: string, baseDir: string): StoreLocation {
  if (store.startsWith('sqlite:')) {
    let p = store.slice('sqlite:'.length);
    if (p === ':memory:') return { kind: 'sqlite', path: ':memory:' };
    if (p.startsWith('//')) p = p.slice(2);
    if (p.trim() === '') throw new Error('needs a file path after sqlite:, e.g. sqlite:./data/notifier.db');
    return { kind: 'sqlite', path: isAbsolute(p) ? p : resolve(baseDir, p) };
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

// ---------------------------------------------------------------------------------------------
// templates (src/templates compiles them; we only report where the problem is)

async function checkTemplates(parsed: Parsed): Promise<void> {
  const { config, file, doc, lines } = parsed;
  const issues: Issue[] = [];
  const compilable: number[] = [];
  config.rules.forEach((rule, i) => {
    let ok = true;
    const check = (value: string | undefined, path: KeyPath) => {
      if (isTemplateFile(value) && !existsSync(value)) {
        issues.push({ path, message: `template file not found: ${value}` });
        ok = false;
      }
    };
    for (const key of TEMPLATE_KEYS) check(rule.email[key], ['rules', i, 'email', key]);
    rule.email.attachments.forEach((a, j) =>
      check(a.content, ['rules', i, 'email', 'attachments', j, 'content']),
    );
    if (ok) compilable.push(i);
  });
  if (compilable.length > 0) {
    const compileRule = await loadCompiler();
    for (const i of compilable) {
      try {
        compileRule(config.rules[i]!, config.baseDir);
      } catch (err) {
        const e = coerceError(err) as Error & { keyPath?: unknown };
        const keyPath = typeof e.keyPath === 'string' ? e.keyPath : '';
        // TemplateError's message starts with its keyPath; we show the full path in front instead
        const message =
          keyPath && e.message.startsWith(`${keyPath}: `) ? e.message.slice(keyPath.length + 2) : e.message;
        if (/^email\b/.test(keyPath)) issues.push({ path: ['rules', i, ...parseKeyPath(keyPath)], message });
        else issues.push({ path: ['rules', i], message: keyPath ? `${keyPath}: ${message}` : message });
      }
    }
  }
  if (issues.length > 0) throw new ConfigError(formatIssues(issues, file, doc, lines, secretsOf(config)));
}

async function loadCompiler(): Promise<(rule: RuleConfig, baseDir: string) => unknown> {
  // imported lazily: `check` and `run` need it, code that only reads the config (status, outbox) does not
  const { compileRule } = await import('../templates/index.ts');
  return compileRule;
}

// ---------------------------------------------------------------------------------------------
// secrets

const SECRET_KEYS = new Set([
  'pass',
  'password',
  'clientSecret',
  'securityToken',
  'refreshToken',
  'accessToken',
]);
const REDACTED = '[redacted]';

/** values that must never be logged: passwords, secrets, tokens, private keys (resolved values) */
export function secretsOf(config: Config): string[] {
  const out = new Set<string>();
  collectSecretValues(config, out);
  const auth = config.salesforce.auth;
  if (auth.flow === 'password' && auth.securityToken) out.add(auth.password + auth.securityToken);
  if (auth.flow === 'jwt') {
    const pem = readText(auth.privateKeyFile);
    if (pem?.trim()) {
      out.add(pem);
      out.add(pem.trim());
    }
  }
  const pw = storePassword(config.store);
  if (pw) {
    out.add(pw);
    out.add(decodeURIComponent(pw));
  }
  return [...out].filter((s) => s.length > 0);
}

/** a deep copy with every secret replaced by '[redacted]', for `status`/`check` output */
export function redactConfig(config: Config): unknown {
  const secrets = secretsOf(config).sort((a, b) => b.length - a.length);
  const scrub = (s: string) => secrets.reduce((acc, secret) => acc.split(secret).join(REDACTED), s);
  const walk = (value: unknown, key?: string): unknown => {
    if (typeof value === 'string') {
      if (key !== undefined && SECRET_KEYS.has(key) && value !== '') return REDACTED;
      if (key === 'store') return redactUrlPassword(scrub(value));
      return scrub(value);
    }
    if (Array.isArray(value)) return value.map((v) => walk(v));
    if (isRecord(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v, k)]));
    return value;
  };
  return walk(config);
}

function collectSecretValues(value: unknown, out: Set<string>, key?: string): void {
  if (typeof value === 'string') {
    if (key !== undefined && SECRET_KEYS.has(key) && value !== '') out.add(value);
  } else if (Array.isArray(value)) value.forEach((v) => collectSecretValues(v, out));
  else if (isRecord(value)) for (const [k, v] of Object.entries(value)) collectSecretValues(v, out, k);
}

/** secrets of data that may not have passed the schema: for scrubbing error messages */
function collectSecretsRaw(data: unknown): string[] {
  const out = new Set<string>();
  collectSecretValues(data, out);
  if (isRecord(data) && typeof data.store === 'string') {
    const pw = storePassword(data.store);
    if (pw) out.add(pw);
  }
  return [...out];
}

function storePassword(store: string): string | undefined {
  if (!/^postgres(ql)?:/.test(store)) return undefined;
  try {
    return new URL(store).password || undefined;
  } catch {
    return undefined;
  }
}

function redactUrlPassword(store: string): string {
  const pw = storePassword(store);
  if (!pw) return store;
  const url = new URL(store);
  url.password = 'redacted';
  return url.toString().replace(':redacted@', `:${REDACTED}@`);
}

// ---------------------------------------------------------------------------------------------
// formatting

function formatIssues(
  issues: Issue[],
  file: string,
  doc: Document.Parsed,
  lines: LineCounter,
  secrets: string[],
): string[] {
  // only scrub strings long enough not to erase ordinary words
  const scrubbable = secrets.filter((s) => s.length >= 4).sort((a, b) => b.length - a.length);
  const located = issues.map((iss, order) => ({ iss, order, line: lineOf(doc, lines, iss.at ?? iss.path) }));
  located.sort((a, b) => a.line - b.line || a.order - b.order);
  const out: string[] = [];
  for (const { iss, line } of located) {
    const where = iss.path.length > 0 ? `${formatKeyPath(iss.path)}: ` : '';
    let text = `${file}:${line} ${where}${oneLine(iss.message)}`;
    for (const s of scrubbable) text = text.split(s).join(REDACTED);
    if (!out.includes(text)) out.push(text);
  }
  return out;
}

/**
 * Issues are lines. Handlebars parse errors come as "Parse error on line N:\n<excerpt>\n---^\n<expected>";
 * keep the excerpt, drop the caret drawing.
 */
function oneLine(message: string): string {
  const parts = message.split(/\r?\n/).filter((l) => l.trim() !== '');
  if (parts.length <= 1) return message.trim();
  const hbs = /^Parse error on line \d+:$/.test(parts[0]!) && parts.length >= 4 && /^-*\^$/.test(parts[2]!);
  if (hbs) return `${parts[0]} ${parts.slice(3).join(' ')} (near "${parts[1]}")`;
  return parts.map((l) => l.trim()).join('; ');
}

/** The line of the deepest key of `path` present in the file (the key's own line, not its value's). */
function lineOf(doc: Document.Parsed, lines: LineCounter, path: KeyPath): number {
  let node: unknown = doc.contents;
  let offset = (doc.contents as YamlNode | null)?.range?.[0] ?? 0;
  for (const seg of path) {
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      offset = (pair.key as YamlNode).range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg] as YamlNode | undefined;
      if (!item) break;
      offset = item.range?.[0] ?? offset;
      node = item;
    } else break;
  }
  return lines.linePos(offset).line;
}

/** ['rules', 0, 'email', 'to'] -> rules[0].email.to */
export function formatKeyPath(path: readonly Seg[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/** 'email.attachments[0].content' -> ['email', 'attachments', 0, 'content'] */
function parseKeyPath(text: string): KeyPath {
  const out: KeyPath = [];
  for (const m of text.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) {
    if (m[2] !== undefined) out.push(Number(m[2]));
    else if (m[1] !== undefined) out.push(m[1]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// small helpers

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function pathKey(path: KeyPath): string {
  return JSON.stringify(path);
}

function startsWith(path: KeyPath, prefix: KeyPath): boolean {
  return prefix.length <= path.length && prefix.every((s, i) => String(s) === String(path[i]));
}

function getAt(data: unknown, path: KeyPath): unknown {
  let cur = data;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<Seg, unknown>)[seg];
  }
  return cur;
}

function setAt(data: unknown, path: KeyPath, value: unknown): void {
  const parent = getAt(data, path.slice(0, -1));
  if (parent !== null && typeof parent === 'object') (parent as Record<Seg, unknown>)[path.at(-1)!] = value;
}

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function article(expected: string): string {
  const names: Record<string, string> = {
    number: 'a number',
    int: 'a whole number',
    boolean: 'true or false',
    string: 'a string',
    array: 'a list',
    object: 'a mapping',
    record: 'a mapping',
  };
  return names[expected] ?? `a ${expected}`;
}

function typeOf(v: unknown): string {
  if (v === null) return 'empty (null)';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return 'a string';
  if (typeof v === 'number') return 'a number';
  if (typeof v === 'boolean') return 'a boolean';
  return typeof v;
}

function quoteList(values: readonly unknown[]): string {
  return values.map((v) => JSON.stringify(v)).join(', ');
}

/** ` (did you mean 'x'?)` when one candidate is close, else '' */
function suggest(input: unknown, candidates: readonly string[]): string {
  if (typeof input !== 'string' || input === '') return '';
  const lower = input.toLowerCase();
  let best: string | undefined;
  let bestDist = Infinity;
  for (const c of candidates) {
    const cl = c.toLowerCase();
    let d = editDistance(lower, cl);
    if (input.length >= 2 && cl.startsWith(lower)) d = Math.min(d, 1);
    if (d < bestDist) {
      bestDist = d;
      best = c;
    }
  }
  if (best === undefined) return '';
  const limit = Math.max(1, Math.floor(Math.max(input.length, best.length) / 3));
  return bestDist <= limit ? ` (did you mean '${best}'?)` : '';
}

/** Levenshtein distance with adjacent transpositions (optimal string alignment) */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}
