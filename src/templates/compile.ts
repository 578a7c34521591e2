// The Handlebars machinery every channel's templates share: one environment per rule (helpers,
// partials), compile-time checks (unknown helpers and partials are config errors, not per-record
// surprises), the template context of a record, and running a template with a keyed error.
import fs from 'node:fs';
import path from 'node:path';
import Handlebars from 'handlebars';
import { isTemplateFile } from '../config/index.ts';
import type { SourceRecord } from '../types.ts';
import { RenderError, TemplateError } from './errors.ts';
import { helpers, ROOT_FIELDS } from './helpers.ts';

export type Env = ReturnType<typeof Handlebars.create>;
export type Template = (context: unknown, options?: Handlebars.RuntimeOptions) => string;

const BUILTIN_HELPERS = new Set(['if', 'unless', 'each', 'with', 'lookup', 'log']);

function readTemplateFile(keyPath: string, file: string, baseDir: string): string {
  const full = path.resolve(baseDir, file.trim());
  try {
    return fs.readFileSync(full, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'file not found' : `cannot read file (${code ?? String(err)})`;
    throw new TemplateError(keyPath, `${why}: ${full}`, { cause: err });
  }
}

/**
 * Checks a parsed template against the environment: every helper call names a registered
 * helper and every static partial is registered (Handlebars would only notice per record).
 */
function checkAst(node: unknown, env: Env, keyPath: string): void {
  if (Array.isArray(node)) {
    for (const n of node) checkAst(n, env, keyPath);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  const n = node as {
    type?: string;
    path?: { type?: string; original?: unknown; parts?: unknown[]; data?: boolean };
    name?: { type?: string; original?: unknown };
    params?: unknown[];
    hash?: unknown;
    loc?: { start?: { line?: number } };
  };
  const line = n.loc?.start?.line;
  const where = line === undefined ? '' : ` (line ${line})`;
  if (n.type === 'MustacheStatement' || n.type === 'BlockStatement' || n.type === 'SubExpression') {
    const p = n.path;
    const isCall = n.type === 'SubExpression' || (n.params?.length ?? 0) > 0 || n.hash !== undefined;
    if (isCall && p?.type === 'PathExpression' && !p.data && p.parts?.length === 1) {
      const name = String(p.original);
      if (!BUILTIN_HELPERS.has(name) && !(name in env.helpers)) {
        throw new TemplateError(keyPath, `unknown helper "${name}"${where}`);
      }
    }
  }
  if (n.type === 'PartialStatement' && n.name?.type === 'PathExpression') {
    const name = String(n.name.original);
    if (!(name in env.partials)) throw new TemplateError(keyPath, `unknown partial "${name}"${where}`);
  }
  for (const [key, value] of Object.entries(n)) {
    if (key !== 'loc' && typeof value === 'object') checkAst(value, env, keyPath);
  }
}

/** Parses, fully compiles (so syntax errors surface now, not at the first record) and checks. */
export function compileSource(env: Env, keyPath: string, source: string, escapeHtml: boolean): Template {
  const options = { strict: false, noEscape: !escapeHtml };
  let ast: ReturnType<Env['parse']>;
  try {
    ast = env.parse(source);
    // env.compile is lazy; precompile runs the whole compiler once to surface its errors
    env.precompile(ast, options);
  } catch (err) {
    throw new TemplateError(keyPath, (err as Error).message, { cause: err });
  }
  checkAst(ast, env, keyPath);
  return env.compile(ast, options) as Template;
}

export function compileValue(
  env: Env,
  keyPath: string,
  value: string,
  baseDir: string,
  escapeHtml: boolean,
): Template {
  const source = isTemplateFile(value) ? readTemplateFile(keyPath, value, baseDir) : value;
  return compileSource(env, keyPath, source, escapeHtml);
}

/** Every `*.hbs` in `<baseDir>/partials/`, by file name without `.hbs` (`{{> footer}}`). */
export function registerPartials(env: Env, baseDir: string): void {
  const dir = path.resolve(baseDir, 'partials');
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((f) => f.endsWith('.hbs'));
  } catch {
    return; // no partials directory
  }
  names.sort();
  // register all names first so partials may use each other
  const sources = names.map((file) => ({ file, name: file.slice(0, -'.hbs'.length) }));
  for (const { name } of sources) env.registerPartial(name, '');
  for (const { file, name } of sources) {
    const keyPath = `partials/${file}`;
    const source = readTemplateFile(keyPath, path.join(dir, file), baseDir);
    // a partial inherits the escaping of the template that includes it, so it is registered as
    // source; parse + check it here so a syntax error is a config error
    try {
      env.precompile(env.parse(source), { strict: false });
    } catch (err) {
      throw new TemplateError(keyPath, (err as Error).message, { cause: err });
    }
    env.registerPartial(name, source);
  }
  for (const { file, name } of sources)
    checkAst(env.parse(String(env.partials[name])), env, `partials/${file}`);
}

/** A Handlebars environment with our helpers and the partials beside the config file. */
export function createEnv(baseDir: string): Env {
  const env = Handlebars.create();
  for (const [name, fn] of Object.entries(helpers)) env.registerHelper(name, fn);
  registerPartials(env, baseDir);
  return env;
}

/** The template context for one record (see the file comment). */
export function contextFor(
  rule: { name: string; object: string },
  record: SourceRecord,
  now: Date,
  extra: Record<string, unknown> = {},
): Record<string | symbol, unknown> {
  const fields: Record<string, unknown> = {
    Id: record.id,
    CreatedDate: record.createdDate,
    SystemModstamp: record.systemModstamp,
  };
  for (const [k, v] of Object.entries(record.fields ?? {})) {
    if (k !== 'attributes') fields[k] = v;
  }
  const context: Record<string | symbol, unknown> = {
    ...fields,
    ...extra,
    rule: { name: rule.name, object: rule.object },
    now: now.toISOString(),
    record: fields,
  };
  // non-enumerable: lets {{json this}} print the record, invisible to templates and #each
  Object.defineProperty(context, ROOT_FIELDS, { value: fields, enumerable: false });
  return context;
}

export function run(template: Template, context: unknown, keyPath: string): string {
  try {
    return template(context);
  } catch (err) {
    throw new RenderError('ERENDER', `${keyPath}: ${(err as Error).message}`, { keyPath, cause: err });
  }
}
