// Which SMTP replies mean "you are sending too fast, come back later". Decided from the reply code
// and its enhanced status code (RFC 3463, carried as the reply's first token per RFC 2034): both
// are structured parts of the reply, not its free text.

/** The enhanced status code at the start of a reply ("421 4.7.0 ..."), or undefined. */
export function enhancedStatus(
  response: string | undefined,
): { cls: number; subject: number; detail: number } | undefined {
  const m = /^\d{3}[ -]([245])\.(\d{1,3})\.(\d{1,3})(?:\s|$)/.exec(response ?? '');
  if (!m) return undefined;
  return { cls: Number(m[1]), subject: Number(m[2]), detail: Number(m[3]) };
}

// 421 (closing), 450/451 (not taken, try later), 452 (too many recipients for now), 454 (temporary
// authentication/submission failure): the transient replies relays answer a rate limit with.
const THROTTLE_REPLY_CODES = new Set([421, 450, 451, 452, 454]);

/**
 * A throttling reply: one of the transient reply codes above with enhanced status 4.7.x (security
 * or policy: Gmail's "421 4.7.0 Try again later", "454 4.7.0 Too many login attempts", Exchange
 * Online's "4.7.x" rate answers) or 4.5.x (protocol: Exchange Online's "message submission rate"
 * and "4.5.3 too many recipients"). A bare 421 without an enhanced code stays a plain transient
 * failure: it is just as often a server going down.
 */
export function isThrottleReply(responseCode: number | undefined, response: string | undefined): boolean {
  if (responseCode === undefined || !THROTTLE_REPLY_CODES.has(responseCode)) return false;
  const status = enhancedStatus(response);
  return status !== undefined && status.cls === 4 && (status.subject === 7 || status.subject === 5);
}
