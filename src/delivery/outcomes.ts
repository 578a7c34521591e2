// The retry policy: pure functions from a failed send to the row's outcome (and what the dispatcher
// must do besides: slow down, open the channel's circuit). The dispatcher applies them.
import type { SendError } from '../sinks/types.ts';
import type { Outcome, OutboxRow } from '../store/index.ts';

/**
 * Exponential backoff with full jitter ("Exponential Backoff And Jitter", AWS Architecture Blog):
 * a uniform random delay in [0, min(max, base * 2^(attempt-1))]. Spreads the retries of many rows
 * that failed together instead of sending them back in one wave.
 */
export function backoffDelay(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, Math.min(attempt - 1, 40)));
  return Math.floor(random() * exp);
}

/**
 * The text kept as the row's last error: the classification, nodemailer's code and command, and the
 * server's reply verbatim (an operator needs the reply to act on a dead row). No credentials are
 * part of any of these.
 */
export function describeFailure(e: SendError): string {
  const parts: string[] = [e.kind];
  if (e.code) parts.push(e.code);
  if (e.command) parts.push(`at ${e.command}`);
  const head = parts.join(' ');
  return e.response ? `${head}: ${e.response}` : `${head}: ${e.message}`;
}

const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/** Nothing answered, or the server turned the connection away at the greeting (421). */
export function isServerUnreachable(e: SendError): boolean {
  if (e.kind !== 'retry') return false;
  if (e.code === 'EDNS') return true;
  if (e.originalCode && UNREACHABLE_CODES.has(e.originalCode)) return true;
  // SMTP: the connect or greeting timed out, or 421 at the greeting; HTTP channels: the connect timed out
  if (e.command === 'CONN' && (e.code === 'ETIMEDOUT' || e.code === 'EHTTPTIMEOUT' || e.responseCode === 421))
    return true;
  return false;
}

/** The delivery config's limits, as the policy reads them. */
export interface RetryPolicy {
  maxAttempts: number;
  /** as configured (quoted in the error), and in ms */
  maxAge: string;
  maxAgeMs: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
}

/**
 * What a failed send does to its row. `effect`: throttle (the pacer slows down), auth or
 * unreachable (the channel's circuit opens; the row is released without spending its attempt).
 */
export function failureOutcome(
  row: Pick<OutboxRow, 'id' | 'attempts' | 'createdAt'>,
  e: SendError,
  p: RetryPolicy,
  now: number = Date.now(),
): { outcome: Outcome & { error: string }; effect?: 'throttle' | 'auth' | 'unreachable' } {
  const error = describeFailure(e);
  const code = e.code ?? 'ESEND';
  const tooOld = () => now - Date.parse(row.createdAt) >= p.maxAgeMs;
  const dead = (why: string) => ({
    outcome: { id: row.id, kind: 'dead' as const, error: `gave up after ${why}: ${error}`, code },
  });
  const release = { id: row.id, kind: 'release' as const, error, code, nextAttemptAt: new Date(now) };
  switch (e.kind) {
    case 'dead':
      return { outcome: { id: row.id, kind: 'dead', error, code } };
    case 'uncertain':
      return { outcome: { id: row.id, kind: 'uncertain', error, code } };
    case 'throttle':
      // the relay said "later": the row stays pending, its attempt not spent
      return tooOld()
        ? { ...dead(`${p.maxAge} (maxAge)`), effect: 'throttle' }
        : { outcome: release, effect: 'throttle' };
    case 'auth':
      return { outcome: release, effect: 'auth' };
    case 'retry': {
      // The server is not there at all: that says nothing about this row, so it must not use up
      // the row's attempts (an hour-long outage would dead-letter good mail). Pause like auth.
      if (isServerUnreachable(e)) return { outcome: release, effect: 'unreachable' };
      // the claim counted this attempt already
      if (row.attempts >= p.maxAttempts) return dead(`${row.attempts} attempts`);
      if (tooOld()) return dead(`${p.maxAge} (maxAge)`);
      // the receiver's Retry-After is a floor under the backoff, never shortened by it
      const delay = Math.max(
        backoffDelay(row.attempts, p.backoffBaseMs, p.backoffMaxMs),
        e.retryAfterMs ?? 0,
      );
      return { outcome: { id: row.id, kind: 'retry', error, code, nextAttemptAt: new Date(now + delay) } };
    }
  }
}
