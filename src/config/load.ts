// Loads the config file: YAML (with line numbers) -> ${ENV} interpolation -> zod schema -> cross-checks
// -> the caller's per-rule checks (template compilation). Every problem is collected and reported at
// once as `file:line key.path: message`; secret values never appear in a message.
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { isScalar, LineCounter, parseDocument } from 'yaml';
import type { Document } from 'yaml';
import { ConfigError, coerceError } from '../util/errors.ts';
import { crossChecks } from './checks.ts';
import { interpolateNode, maskReferences, unmaskNode } from './interpolate.ts';
import { formatIssues, startsWith } from './issues.ts';
import type { Issue, KeyPath, Source } from './issues.ts';
import { resolvePaths } from './paths.ts';
import { checkRules } from './rule-checks.ts';
import type { RuleCheck } from './rule-checks.ts';
import type { LoadedConfig } from './schema.ts';
import { collectSecretsRaw } from './secrets.ts';
import { validate } from './validate.ts';

// callers that import from load.ts keep working; index.ts is the folder's public surface
export { interpolate } from './interpolate.ts';
export { formatKeyPath } from './issues.ts';
export { isTemplateFile, storeLocation } from './paths.ts';
export type { StoreLocation } from './paths.ts';
export type { RuleCheck } from './rule-checks.ts';
export { redactConfig, secretsOf } from './secrets.ts';

export const DEFAULT_CONFIG_PATH = './config/notifier.yaml';
export const CONFIG_ENV_VAR = 'LEAD_NOTIFIER_CONFIG';

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** run on each rule after validation, e.g. compileRule; without it only template files' existence is checked */
  ruleChecks?: RuleCheck;
}

/** path resolution order: explicit arg (-c), env LEAD_NOTIFIER_CONFIG, DEFAULT_CONFIG_PATH */
export function resolveConfigPath(cliPath?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (cliPath) return cliPath;
  const fromEnv = env[CONFIG_ENV_VAR];
  if (fromEnv) return fromEnv;
  return DEFAULT_CONFIG_PATH;
}

/** read + parse + validate; throws ConfigError whose `issues` are `file:line key.path: message` lines */
export async function loadConfig(path: string, opts: LoadOptions = {}): Promise<LoadedConfig> {
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
  checkRules(parsed.config, parsed, opts.ruleChecks);
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

interface Parsed extends Source {
  config: LoadedConfig;
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
