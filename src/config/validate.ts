// Schema validation with zod, zod's issues rewritten in plain words with did-you-mean suggestions.
import type { z } from 'zod';
import { getAt, pathKey, setAt } from './issues.ts';
import type { Issue, KeyPath, Seg } from './issues.ts';
import { configSchema } from './schema.ts';
import type { Config } from './schema.ts';

/** Marks zod's own messages so that they are rewritten in plain words; schema messages pass through. */
const DEFAULT_MSG = '\u0000default';

export function validate(
  data: unknown,
  wholeRefs: Map<string, string>,
): { config?: Config; issues: Issue[] } {
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
  const allTags = iss.code === 'invalid_union' ? (iss as { options?: unknown }).options : undefined;
  // an optional discriminator (smtp.auth.type) lists undefined among the tags
  const tags = Array.isArray(allTags) ? allTags.filter((t) => t !== undefined && t !== null) : undefined;
  if (tags) {
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
