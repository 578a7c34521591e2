// Pure helpers the dispatcher uses to turn a failed send into an outcome.
import type { SendError } from '../sinks/types.ts';

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
