// `${ENV}` references: masked before YAML parsing, restored after, then interpolated per scalar.
import { isMap, isScalar, isSeq } from 'yaml';
import { pathKey } from './issues.ts';
import type { Issue, KeyPath } from './issues.ts';

const REF = /^([A-Za-z_][A-Za-z0-9_]*)(?::-([\s\S]*))?$/;

// `auth: { user: ${SMTP_USER}, pass: ${SMTP_PASS} }` is what people write (the README does), but
// `{` and `}` are flow indicators, so that is not valid YAML. Before parsing, each `${...}` is
// replaced by a placeholder of the SAME length made of characters that are plain-scalar safe (so
// lines and columns in error messages stay right); the parsed values get the original text back.
const MASK_START = '\uE000';
const MASK_PAD = '\uE001';
const MASKED = /\uE000([0-9a-z]+)\uE001*/g;

export function maskReferences(text: string): { text: string; refs: string[] } {
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

export function unmaskNode(node: unknown, refs: string[]): void {
  if (refs.length === 0) return;
  if (isMap(node)) {
    for (const pair of node.items) unmaskNode(pair.value, refs);
  } else if (isSeq(node)) {
    for (const item of node.items) unmaskNode(item, refs);
  } else if (isScalar(node) && typeof node.value === 'string' && node.value.includes(MASK_START)) {
    node.value = node.value.replace(MASKED, (m: string, id: string) => refs[parseInt(id, 36)] ?? m);
  }
}

export function interpolateNode(
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
