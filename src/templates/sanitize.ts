// Post-render clean-up of values rendered without HTML escaping. Nothing a record contains may
// end up as header structure: single-line values lose every control character, and MIME
// encoded-word syntax is broken up so a receiver shows it as the literal text it was.

// C0 controls (CR, LF, TAB, NUL, ...), DEL, C1 controls (NEL U+0085 included) and the Unicode
// line/paragraph separators, which some clients treat as line breaks.
// eslint-disable-next-line no-control-regex
const SINGLE_LINE_BREAKERS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g;

/** RFC 5322 section 2.1.1: a header line must not exceed 998 characters; we cap values there too. */
export const MAX_SINGLE_LINE = 998;

/**
 * RFC 2047 encoded-words (`=?utf-8?B?...?=`) in record text would be decoded by the receiver
 * (possibly into CR/LF). A zero-width space after '=' makes it plain text; nodemailer then
 * encodes the whole value itself, and the reader sees the literal characters.
 */
function breakEncodedWords(s: string): string {
  return s.replace(/=\?/g, '=\u200b?');
}

/** Subject, from, replyTo, header values, file names: one line, trimmed, capped, no encoded-words. */
export function singleLine(value: string, max = MAX_SINGLE_LINE): string {
  let s = breakEncodedWords(value.replace(SINGLE_LINE_BREAKERS, ' ').trim());
  const chars = Array.from(s);
  if (chars.length > max) s = `${chars.slice(0, max - 1).join('')}…`;
  return s;
}

/** Bodies and attachment text: NUL is not allowed in MIME text (RFC 2045 section 2.7/2.8). */
export function multiLine(value: string): string {
  // eslint-disable-next-line no-control-regex
  return value.replace(/\u0000/g, '');
}

/** True when the value still holds anything that could end a header line. */
export function hasLineBreak(value: string): boolean {
  // eslint-disable-next-line no-control-regex
  return /[\r\n\u0000\u0085\u2028\u2029]/.test(value);
}

/** RFC 5322 section 3.6.8 field-name: printable US-ASCII except ':' (and no spaces). */
export function isHeaderName(name: string): boolean {
  return /^[\x21-\x39\x3b-\x7e]+$/.test(name);
}
