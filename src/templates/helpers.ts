// Handlebars helpers available to every rule template. Record data is untrusted, so every helper
// accepts anything (undefined, objects, arrays, numbers) without throwing. Handlebars passes an
// `options` object as the last argument, so optional parameters are detected by isOptions().
import type { HelperDelegate } from 'handlebars';

interface HelperOptions {
  data?: { root?: unknown };
  hash?: Record<string, unknown>;
  name?: string;
  lookupProperty?: unknown;
}

function isOptions(v: unknown): v is HelperOptions {
  return typeof v === 'object' && v !== null && 'hash' in v && 'data' in v && 'name' in v;
}

/** Drops a trailing Handlebars options argument (and anything after it). */
function args(all: unknown[]): unknown[] {
  const i = all.findIndex(isOptions);
  return i < 0 ? all : all.slice(0, i);
}

/**
 * A value as text: strings as they are, numbers/booleans/bigints via String, Dates as ISO,
 * null/undefined and objects as '' (String() on a null-prototype object throws, and
 * "[object Object]" in an email helps nobody).
 */
export function toText(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? '' : v.toISOString();
  if (v !== null && typeof v === 'object' && 'toHTML' in v && typeof v.toHTML === 'function') {
    // a Handlebars SafeString from another helper
    return String(v);
  }
  return '';
}

/**
 * The root data key of a render context. The root object carries the record fields plus `rule`,
 * `now` and `record`; `{{json this}}` at the top level should print the record only.
 */
export const ROOT_FIELDS = Symbol('lead-notifier.record-fields');

// Salesforce REST returns "2024-05-01T12:34:56.000+0000"; ECMAScript's Date.parse only promises
// the "+00:00" form (ECMA-262 Date Time String Format), so the offset gets its colon back.
function parseDate(v: unknown): Date | null {
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? null : v;
  if (typeof v === 'number') {
    const d = new Date(v);
    return Number.isNaN(d.getTime()) ? null : d;
  }
  if (typeof v !== 'string' || v.trim() === '') return null;
  const s = v.trim().replace(/([+-]\d{2})(\d{2})$/, '$1:$2');
  // date-only values (Salesforce Date fields) are calendar dates: midnight UTC
  const ms = Date.parse(s);
  return Number.isNaN(ms) ? null : new Date(ms);
}

function partsOf(date: Date, timeZone: string, withZone: boolean): Record<string, string> {
  const fmt = new Intl.DateTimeFormat('en-GB', {
    timeZone,
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
    ...(withZone ? { timeZoneName: 'short' } : {}),
  });
  const out: Record<string, string> = {};
  for (const p of fmt.formatToParts(date)) out[p.type] = p.value;
  return out;
}

function isoInZone(date: Date, timeZone: string): string {
  if (timeZone === 'UTC') return date.toISOString();
  const fmt = new Intl.DateTimeFormat('en-CA', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
    timeZoneName: 'longOffset',
  });
  const p: Record<string, string> = {};
  for (const part of fmt.formatToParts(date)) p[part.type] = part.value;
  // longOffset is "GMT+02:00", or "GMT" for a zero offset
  const offset = (p.timeZoneName ?? 'GMT').replace(/^GMT/, '') || '+00:00';
  return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}:${p.second}${offset}`;
}

/**
 * formatDate(date, format?, timeZone?) with Intl.DateTimeFormat (en-GB wording).
 *   'date'     -> "1 May 2024"
 *   'time'     -> "14:34 CEST"
 *   'datetime' -> "1 May 2024, 14:34 CEST" (the default; unknown formats fall back to it)
 *   'iso'      -> "2024-05-01T12:34:56.000Z" in UTC, "2024-05-01T14:34:56+02:00" in a zone
 * timeZone: an IANA name such as 'Europe/Berlin', default 'UTC'. Input: an ISO string (the
 * Salesforce "+0000" offset form included), epoch milliseconds or a Date. Input that is not a
 * date, or an unknown time zone, renders the input unchanged.
 */
export function formatDate(...all: unknown[]): string {
  const [value, format, zone] = args(all);
  const date = parseDate(value);
  if (date === null) return toText(value);
  const timeZone = typeof zone === 'string' && zone !== '' ? zone : 'UTC';
  try {
    switch (format) {
      case 'iso':
        return isoInZone(date, timeZone);
      case 'date': {
        const p = partsOf(date, timeZone, false);
        return `${p.day} ${p.month} ${p.year}`;
      }
      case 'time': {
        const p = partsOf(date, timeZone, true);
        return `${p.hour}:${p.minute} ${p.timeZoneName}`;
      }
      default: {
        const p = partsOf(date, timeZone, true);
        return `${p.day} ${p.month} ${p.year}, ${p.hour}:${p.minute} ${p.timeZoneName}`;
      }
    }
  } catch {
    // RangeError: invalid time zone
    return toText(value);
  }
}

/** default(value, fallback): value unless it is undefined, null, '' or an empty array. */
export function defaultHelper(...all: unknown[]): unknown {
  const [value, fallback] = args(all);
  const empty =
    value === undefined || value === null || value === '' || (Array.isArray(value) && value.length === 0);
  return empty ? (fallback ?? '') : value;
}

/**
 * json(value): JSON.stringify with 2-space indent. `{{json this}}` at the top level prints the
 * record's fields (not rule/now/record). undefined and unserialisable values (cycles, BigInt)
 * render ''.
 */
export function json(...all: unknown[]): string {
  const [value] = args(all);
  let target = value;
  if (value !== null && typeof value === 'object' && ROOT_FIELDS in value) {
    target = (value as Record<symbol, unknown>)[ROOT_FIELDS];
  }
  try {
    return JSON.stringify(target, null, 2) ?? '';
  } catch {
    return '';
  }
}

/** join(array, sep = ', '): the array's items as text; a non-array renders as text itself. */
export function join(...all: unknown[]): string {
  const [value, sep] = args(all);
  const separator = typeof sep === 'string' ? sep : ', ';
  if (!Array.isArray(value)) return toText(value);
  return value.map(toText).join(separator);
}

/** eq(a, b): strict equality, for `{{#if (eq LeadSource "Web")}}`. */
export function eq(...all: unknown[]): boolean {
  const [a, b] = args(all);
  return a === b;
}

/**
 * truncate(text, n): at most n characters (code points, so emoji are never split), ending with
 * '…' when cut. A missing or non-positive n leaves the text whole.
 */
export function truncate(...all: unknown[]): string {
  const [value, n] = args(all);
  const text = toText(value);
  const max = typeof n === 'number' ? n : typeof n === 'string' ? Number(n) : NaN;
  if (!Number.isFinite(max) || max < 1) return text;
  const chars = Array.from(text);
  if (chars.length <= max) return text;
  return `${chars.slice(0, Math.floor(max) - 1).join('')}…`;
}

/** lower(text) / upper(text): case mapping of the value as text. */
export function lower(...all: unknown[]): string {
  return toText(args(all)[0]).toLowerCase();
}
export function upper(...all: unknown[]): string {
  return toText(args(all)[0]).toUpperCase();
}

export const helpers: Record<string, HelperDelegate> = {
  formatDate,
  default: defaultHelper,
  json,
  join,
  eq,
  truncate,
  lower,
  upper,
};
