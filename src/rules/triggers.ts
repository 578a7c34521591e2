// When an `on: updated` rule fires: pure functions from (the record's state when last seen, the
// record as read now) to "notify this change or not". Salesforce Flow's "only when a record is
// updated to meet the condition requirements" is the model:
//   - `where` only: fire when the record matches now and did not before the change;
//   - `changed: [F, ...]`: fire on every change of one of those fields while `where` holds.
// The source tells whether the record matches `where` now (it asks Salesforce, which evaluates
// the SOQL); this module never evaluates SOQL itself.
//
// The ledger key of a notification is (rule, record, the change's SystemModstamp): a re-read of
// the same version is the same key, so it can never send twice, and the next qualifying change
// has a new key. A state only moves forward: an observation whose SystemModstamp is earlier than
// the stored one, or the same observation at the same SystemModstamp, is a re-read (a lookback
// sweep, a replayed event) and decides nothing.
import type { RuleConfig } from '../config/index.ts';
import type { MatchState } from '../store/index.ts';
import type { SourceRecord } from '../types.ts';

/**
 * How long the state of a record that has not changed is kept (beyond the rule's lookback). After
 * that the record's next change is judged as a first sight: a baseline, nothing sent (see
 * decideUpdate) unless it was created within this window.
 */
export const STATE_RETENTION_MS = 30 * 24 * 60 * 60 * 1000;

/** A record as read for an updated rule: whether it matches `where` now. */
export interface ObservedRecord {
  record: SourceRecord;
  matches: boolean;
}

export interface UpdateDecision {
  fire: boolean;
  /** the watched fields' values before the change, where known ({} when not) */
  previous: Record<string, unknown>;
  /** the watched fields whose value differs from the state before */
  changedFields: string[];
  /** the state to store */
  next: MatchState;
}

/** The fields whose previous values a rule keeps: `changed`, else what it selects. */
export function watchedFields(rule: Pick<RuleConfig, 'changed' | 'select'>): string[] {
  return [...new Set(rule.changed ?? rule.select)];
}

/** A field by API path in a REST record (relationships nested: Owner.Manager.Email). */
export function valueAt(fields: Record<string, unknown>, path: string): unknown {
  let cur: unknown = fields;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return null;
    const obj = cur as Record<string, unknown>;
    // SOQL names are case-insensitive; the REST reply uses canonical case, the config may not
    const key = part in obj ? part : Object.keys(obj).find((k) => k.toLowerCase() === part.toLowerCase());
    cur = key === undefined ? null : obj[key];
  }
  return cur ?? null;
}

function watchedValues(fields: Record<string, unknown>, watched: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of watched) out[f] = valueAt(fields, f);
  return out;
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

/** the stored state and a new observation say the same (matched, and every watched value known to both) */
function sameObservation(state: MatchState, next: MatchState): boolean {
  if (state.matched !== next.matched) return false;
  if (!state.watched || !next.watched) return true;
  for (const f of Object.keys(next.watched)) {
    if (f in state.watched && !same(state.watched[f], next.watched[f])) return false;
  }
  return true;
}

export interface DecideContext {
  /** the rule's floor (checkpoint): records created before it were there before the rule */
  floor: string;
}

/**
 * The decision for one observed record, or null when the observation is not newer than the
 * stored state (a re-read: nothing to decide, nothing to store). At the stored SystemModstamp, an
 * observation that differs from the state is a second change within that second (newer).
 *
 * First sight (no stored state) is the baseline and sends nothing, with one exception: a record
 * created after the rule's floor (and within the state retention before this change, so that its
 * state cannot have been pruned) whose SystemModstamp is later
 * than its CreatedDate has been changed since it was created, and the rule never saw it match:
 * its baseline is "did not match, values unknown", so a `where` rule fires if it matches now.
 * A `changed` rule cannot tell which fields such a change touched and does not fire.
 */
export function decideUpdate(
  rule: Pick<RuleConfig, 'changed' | 'select'>,
  state: MatchState | undefined,
  observed: ObservedRecord,
  ctx: DecideContext,
): UpdateDecision | null {
  const { record, matches } = observed;
  const modstamp = Date.parse(record.systemModstamp);
  const stored = state ? Date.parse(state.systemModstamp) : undefined;
  if (stored !== undefined && modstamp < stored) return null;
  const watched = watchedFields(rule);
  const values = watchedValues(record.fields, watched);
  const next: MatchState = {
    recordId: record.id,
    matched: matches,
    watched: values,
    systemModstamp: record.systemModstamp,
  };
  // SystemModstamp has second resolution: a record changed twice within one second reads with
  // the same stamp as the state its first change left. The same observation again is a re-read;
  // a different one (it matches now and did not, or a watched value moved) is that later change.
  if (stored !== undefined && modstamp === stored && sameObservation(state!, next)) return null;
  let before: { matched: boolean; watched: Record<string, unknown> | null };
  if (state) before = state;
  else {
    const created = Date.parse(record.createdDate);
    // times from Salesforce's clock only (the change's own SystemModstamp), never ours
    const recent = created >= Date.parse(ctx.floor) && created >= modstamp - STATE_RETENTION_MS;
    if (!recent || modstamp <= created) {
      return { fire: false, previous: {}, changedFields: [], next };
    }
    before = { matched: false, watched: null };
  }
  const previous: Record<string, unknown> = {};
  const changedFields: string[] = [];
  if (before.watched) {
    for (const f of watched) {
      if (!(f in before.watched)) continue; // the rule watches a field it did not before
      previous[f] = before.watched[f] ?? null;
      if (!same(before.watched[f], values[f])) changedFields.push(f);
    }
  }
  const fire = rule.changed ? matches && changedFields.length > 0 : matches && !before.matched;
  return { fire, previous, changedFields, next };
}

/** SystemModstamp as a ledger version: 2024-05-01T10:00:00.000Z -> 20240501T100000Z */
export function changeVersion(systemModstamp: string): string {
  return new Date(systemModstamp)
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z')
    .replace(/[-:]/g, '');
}

/** The outbox key of an update notification: `<recordId>.<version>` (also its Idempotency-Key tail). */
export function updateLedgerKey(recordId: string, systemModstamp: string): string {
  return `${recordId}.${changeVersion(systemModstamp)}`;
}
