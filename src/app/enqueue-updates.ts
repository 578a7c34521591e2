// The enqueue step of an `on: updated` rule: judge each observed change against the record's
// stored state (rules/triggers.ts), render a notification for each qualifying change, and hand
// back the rows and the new states, which the Enqueuer writes with the checkpoint in ONE
// transaction. Runs inside the Enqueuer's serialised commit, so the states read here are the
// ones the commit replaces.
import type { Logger } from 'pino';
import type { RuleConfig } from '../config/index.ts';
import { decideUpdate, STATE_RETENTION_MS, updateLedgerKey, type ObservedRecord } from '../rules/triggers.ts';
import type { BatchExtra, MatchState, NewOutboxRow, Store } from '../store/index.ts';
import type { CompiledRule } from '../templates/index.ts';
import { parseDuration } from '../util/duration.ts';
import { notificationRows } from './notification-rows.ts';
import { digestItem } from './digest.ts';

export interface UpdatePlan {
  rows: NewOutboxRow[];
  extra: BatchExtra;
}

export async function planUpdates(
  o: { rule: RuleConfig; compiled: CompiledRule; store: Store; logger: Logger; now: Date; collect?: boolean },
  floor: string,
  observed: ObservedRecord[],
): Promise<UpdatePlan> {
  const ids = [...new Set(observed.map((x) => x.record.id))];
  const states = await o.store.getMatchStates(o.rule.name, ids);
  const decided: Array<{
    observed: ObservedRecord;
    previous: Record<string, unknown>;
    changedFields: string[];
  }> = [];
  const next = new Map<string, MatchState>();
  // in (SystemModstamp, Id) order, so two versions of one record in a batch are judged in turn
  for (const obs of observed) {
    const id = obs.record.id;
    const d = decideUpdate(o.rule, next.get(id) ?? states.get(id), obs, { floor });
    if (!d) continue;
    next.set(id, d.next);
    if (d.fire) decided.push({ observed: obs, previous: d.previous, changedFields: d.changedFields });
  }
  const extra: BatchExtra = { matchStates: [...next.values()] };
  if (o.collect) {
    // a digest rule collects each qualifying change; the digest item ledger keeps it once
    extra.digestItems = decided.map((d) =>
      digestItem(d.observed.record, updateLedgerKey(d.observed.record.id, d.observed.record.systemModstamp), {
        previous: d.previous,
        changedFields: d.changedFields,
      }),
    );
    return { rows: [], extra: withPrune(extra, o.rule, observed) };
  }
  // re-reads of a change already notified are not rendered again
  const keys = decided.map((d) => updateLedgerKey(d.observed.record.id, d.observed.record.systemModstamp));
  const known = await o.store.existingRecordIds(o.rule.name, keys);
  const fresh = decided.filter((_, i) => !known.has(keys[i]!));
  const threads = await o.store.firstMessageIds([...new Set(fresh.map((d) => d.observed.record.id))]);
  const rows = fresh.flatMap((d) => {
    const { record } = d.observed;
    const key = updateLedgerKey(record.id, record.systemModstamp);
    const base = {
      rule: o.rule.name,
      object: record.object,
      recordId: key,
      recordCreatedDate: record.createdDate,
    };
    const threadTo = threads.get(record.id);
    return notificationRows(
      o.compiled,
      record,
      base,
      {
        now: o.now,
        messageKey: key,
        extra: { previous: d.previous, changedFields: d.changedFields },
        ...(threadTo ? { threadTo } : {}),
      },
      o.logger,
    );
  });
  return { rows, extra: withPrune(extra, o.rule, observed) };
}

/**
 * States of records unchanged for lookback + retention go: such a record's next change is a
 * first sight again (rules/triggers.ts). Measured on Salesforce's clock: the newest change read.
 */
function withPrune(extra: BatchExtra, rule: RuleConfig, observed: ObservedRecord[]): BatchExtra {
  const newest = Math.max(...observed.map((x) => Date.parse(x.record.systemModstamp)));
  if (Number.isFinite(newest)) {
    const before = newest - parseDuration(rule.lookback) - STATE_RETENTION_MS;
    extra.pruneMatchStatesBefore = new Date(before).toISOString();
  }
  return extra;
}
