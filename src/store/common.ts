// Helpers shared by the SQLite and PostgreSQL stores.
import type { ChannelName } from '../types.ts';
import type { NewOutboxRow, OutboxCounts, OutboxState } from './types.ts';

export const ABANDONED_ERROR = 'process stopped while sending; delivery uncertain';
export const ABANDONED_RESEND = 'process stopped while sending; re-sending (onUncertain: resend)';
/** this process's own row, whose send lease ran out while it was paused or stalled */
export const ABANDONED_SELF =
  "this process's send lease expired while it was paused or stalled (the send may have gone out); delivery uncertain";
export const ABANDONED_SELF_RESEND =
  "this process's send lease expired while it was paused or stalled; re-sending (onUncertain: resend)";

/** The messages recoverAbandoned writes: another process's rows, or (onlySelf) this one's own. */
export function abandonedMessages(onlySelf: boolean | undefined): { uncertain: string; resend: string } {
  return onlySelf
    ? { uncertain: ABANDONED_SELF, resend: ABANDONED_SELF_RESEND }
    : { uncertain: ABANDONED_ERROR, resend: ABANDONED_RESEND };
}
export const DEFAULT_LIST_LIMIT = 100;
/**
 * What the records a digest lists may weigh, as the length of their stored JSON: the oldest
 * `maxRecords` of them up to this (always at least one); the rest are counted (`more`). A digest
 * is read, rendered (text and HTML), stored and sent in one piece under the daemon's 48 MB heap
 * cap (util/heap.ts): 500 records of 32,000 characters ran it out of heap; at 1 MB a digest of
 * them is sent at 156 MB peak RSS (33 listed, 500 counted).
 */
export const DIGEST_LIST_BYTES = 1024 * 1024;
export const ERROR_STATES: readonly OutboxState[] = ['dead', 'failed', 'unknown'];

/**
 * Every instant the stores keep is normalised to ISO-8601 UTC with milliseconds, so both backends
 * return the same string for the same instant (Salesforce writes `2024-05-01T12:00:00.000+0000`,
 * which becomes `2024-05-01T12:00:00.000Z`).
 */
export function normalizeInstant(value: string | Date, what: string): string {
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime()))
    throw new TypeError(`${what} is not a valid instant: ${JSON.stringify(value)}`);
  return date.toISOString();
}

/**
 * A new outbox row's values in the order both stores' INSERTs name the columns: rule, object,
 * record_id, record_created_date, state, message (JSON), last_error, last_error_code.
 */
export function outboxValues(
  r: NewOutboxRow,
  what = `recordCreatedDate of ${r.recordId}`,
): [string, string, string, string, string, string | null, string | null, string | null] {
  return [
    r.rule,
    r.object,
    r.recordId,
    normalizeInstant(r.recordCreatedDate, what),
    r.state,
    r.message === null || r.message === undefined ? null : JSON.stringify(r.message),
    r.lastError ?? null,
    r.lastErrorCode ?? null,
  ];
}

export function isoOrNull(value: string | Date | null | undefined): string | null {
  if (value === null || value === undefined) return null;
  return value instanceof Date ? value.toISOString() : value;
}

/** Operator resolution note kept in last_error, after whatever was there. */
export function resolutionNote(
  previous: string | null,
  as: 'sent' | 'dead',
  note: string | undefined,
): string {
  const line = `resolved as ${as} by operator${note ? `: ${note}` : ''}`;
  return previous ? `${previous}\n${line}` : line;
}

export function validateClaim(limit: number, leaseMs: number): void {
  if (!Number.isInteger(limit) || limit < 0) throw new RangeError('limit must be a non-negative integer');
  if (!Number.isFinite(leaseMs) || leaseMs <= 0) throw new RangeError('leaseMs must be a positive number');
}

export function validateTtl(ttlMs: number): void {
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw new RangeError('ttlMs must be a positive number');
}

export function listLimit(limit: number | undefined): number {
  const n = limit ?? DEFAULT_LIST_LIMIT;
  if (!Number.isInteger(n) || n < 0) throw new RangeError('limit must be a non-negative integer');
  return n;
}

export function emptyTotals(): Record<OutboxState, number> {
  return { pending: 0, sending: 0, sent: 0, failed: 0, dead: 0, unknown: 0 };
}

/** counts() from rows grouped by rule, channel and state (both stores) */
export function tallyCounts(
  rows: { rule: string; channel: ChannelName; state: OutboxState; n: number }[],
): OutboxCounts {
  const out: OutboxCounts = { byRule: {}, byChannel: {}, total: emptyTotals() };
  for (const r of rows) {
    const byRule = (out.byRule[r.rule] ??= {});
    byRule[r.state] = (byRule[r.state] ?? 0) + r.n;
    const byChannel = (out.byChannel[r.channel] ??= {});
    byChannel[r.state] = (byChannel[r.state] ?? 0) + r.n;
    out.total[r.state] += r.n;
  }
  return out;
}
