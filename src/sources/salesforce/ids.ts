// Salesforce record Ids (used by the source, the sample record and the org emulator): 15 case-sensitive characters (3-char key prefix, pod/instance chars,
// base62 counter) plus, in the 18-char form, a 3-char case-safe checksum. The checksum algorithm is
// the documented one (Salesforce Knowledge "What is a Salesforce Id", and the CASESAFEID() formula):
// split the 15 chars into three chunks of 5; for each chunk, bit i is set when char i is an
// uppercase A-Z; the 5-bit number indexes "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345".

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const SUFFIX_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ012345';
/** two pod chars and one reserved char, as in real Ids such as 00Q5g00000AbCdE */
const INSTANCE = '5g0';
const COUNTER_LEN = 15 - 3 - INSTANCE.length;
const ALNUM = /^[0-9A-Za-z]+$/;
const ID_SHAPE = /^[0-9A-Za-z]{15}([0-9A-Za-z]{3})?$/;

/**
 * The shape of a record Id (15 or 18 letters and digits), the check applied to Ids that come from
 * Salesforce replies, events or the command line before they reach a query. It does not verify
 * the checksum: that is isValidId.
 */
export function isSalesforceId(id: unknown): id is string {
  return typeof id === 'string' && ID_SHAPE.test(id);
}

function checksum(id15: string): string {
  let out = '';
  for (let chunk = 0; chunk < 3; chunk++) {
    let bits = 0;
    for (let i = 0; i < 5; i++) {
      const c = id15.charCodeAt(chunk * 5 + i);
      if (c >= 65 && c <= 90) bits |= 1 << i;
    }
    out += SUFFIX_CHARS[bits];
  }
  return out;
}

/** 15-char Id -> 18-char Id (an 18-char Id is returned unchanged). */
export function to18(id15: string): string {
  if (id15.length === 18) return id15;
  if (id15.length !== 15 || !ALNUM.test(id15)) throw new Error(`not a 15-character Salesforce Id: ${id15}`);
  return id15 + checksum(id15);
}

/** A 15-char Id with a correct shape, or an 18-char Id whose checksum matches its first 15 chars. */
export function isValidId(id: string): boolean {
  if (typeof id !== 'string' || (id.length !== 15 && id.length !== 18) || !ALNUM.test(id)) return false;
  if (id.length === 15) return true;
  // Salesforce treats the 18-char form as case-insensitive in its suffix only.
  return checksum(id.slice(0, 15)) === id.slice(15).toUpperCase();
}

/** The n-th Id for a key prefix (n >= 0), always 18 characters. */
export function makeId(keyPrefix: string, n: number): string {
  if (keyPrefix.length !== 3 || !ALNUM.test(keyPrefix)) throw new Error(`bad key prefix: ${keyPrefix}`);
  if (!Number.isInteger(n) || n < 0) throw new Error(`bad Id counter: ${n}`);
  let counter = '';
  let rest = n;
  do {
    counter = BASE62[rest % 62] + counter;
    rest = Math.floor(rest / 62);
  } while (rest > 0);
  if (counter.length > COUNTER_LEN) throw new Error(`Id counter overflow: ${n}`);
  return to18(keyPrefix + INSTANCE + counter.padStart(COUNTER_LEN, '0'));
}

/** Normalises a 15- or 18-char Id to the 18-char form with the canonical suffix, or null. */
export function normalizeId(id: string): string | null {
  if (!isValidId(id)) return null;
  return to18(id.slice(0, 15));
}
