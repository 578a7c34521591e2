// The enqueue step between a source and the outbox: for one rule, take a batch of records, skip
// those the ledger already holds, render a notification for each new one, and write the rows and
// the source's checkpoint in ONE store transaction. Batches of a rule are committed one at a
// time, in order, so a poll page and a stream batch never interleave their checkpoint writes.
import type { Logger } from 'pino';
import type { RuleConfig } from '../config/index.ts';
import type { BatchAck, SourceBatch } from '../sources/types.ts';
import type { BatchExtra, LeaseFence, NewOutboxRow, Store } from '../store/index.ts';
import type { CompiledRule } from '../templates/index.ts';
import type { SourceRecord } from '../types.ts';
import { notificationRows } from './notification-rows.ts';
import { digestItem, sendDigest } from './digest.ts';
import { planUpdates } from './enqueue-updates.ts';

export interface EnqueuerOptions {
  rule: RuleConfig;
  compiled: CompiledRule;
  store: Store;
  logger: Logger;
  now?: () => Date;
  /** called after each committed batch that enqueued rows (wakes the dispatcher) */
  onEnqueued?: (count: number) => void;
  /**
   * the rule's lease epoch for the write (cluster/leadership.ts); throws when this replica does
   * not lead the rule, so nothing is read, rendered or written under a stale view
   */
  fence?: () => LeaseFence;
}

export class Enqueuer {
  private readonly o: EnqueuerOptions;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(o: EnqueuerOptions) {
    this.o = o;
  }

  /** Commit one batch (the source's acknowledgement). */
  readonly commit = (batch: SourceBatch): Promise<BatchAck> => this.serialized(() => this.commitNow(batch));

  private async commitNow(batch: SourceBatch): Promise<BatchAck> {
    // not the leader any more: stop before reading or rendering anything (fence() throws)
    this.o.fence?.();
    const checkpoint =
      typeof batch.checkpoint === 'function'
        ? batch.checkpoint(await this.o.store.getCheckpoint(this.o.rule.name))
        : batch.checkpoint;
    const collect = this.o.rule.digest !== undefined;
    // a digest rule collects its records (the digest renders them later); others render now
    let rows = collect ? [] : await this.newRows(batch.records);
    const extra: BatchExtra = collect ? { digestItems: batch.records.map((r) => digestItem(r, r.id)) } : {};
    if (batch.observed && batch.observed.length > 0) {
      const now = this.o.now ? this.o.now() : new Date();
      const plan = await planUpdates({ ...this.o, now, collect }, checkpoint.floor, batch.observed);
      rows = [...rows, ...plan.rows];
      Object.assign(extra, plan.extra, {
        digestItems: [...(extra.digestItems ?? []), ...(plan.extra.digestItems ?? [])],
      });
    }
    // taken again at the write: the store refuses it if the epoch is no longer current
    const fence = this.o.fence?.();
    const { inserted } = await this.o.store.commitBatch(this.o.rule.name, rows, checkpoint, extra, fence);
    if (inserted > 0) this.o.onEnqueued?.(inserted);
    return { inserted, dead: rows.filter((r) => r.state === 'dead').length };
  }

  /**
   * Digest rules: the digest due at `until` (its scheduled time), serialised with the batches so
   * it covers exactly what was committed before it.
   */
  digest(until: Date): Promise<{ outboxId: number | null; count: number }> {
    return this.serialized(async () => {
      const now = this.o.now ? this.o.now() : new Date();
      const res = await sendDigest(this.o, until, now);
      if (res.outboxId !== null) this.o.onEnqueued?.(1);
      return res;
    });
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  /**
   * Rows for the records the ledger does not hold yet. Re-read records (lookback sweeps, replayed
   * events) are not rendered again; the insert would skip them anyway.
   */
  private async newRows(records: SourceRecord[]): Promise<NewOutboxRow[]> {
    if (records.length === 0) return [];
    const unique = [...new Map(records.map((r) => [r.id, r])).values()];
    const known = await this.o.store.existingRecordIds(
      this.o.rule.name,
      unique.map((r) => r.id),
    );
    const now = this.o.now ? this.o.now() : new Date();
    return unique
      .filter((r) => !known.has(r.id))
      .flatMap((r) =>
        notificationRows(
          this.o.compiled,
          r,
          { rule: this.o.rule.name, object: r.object, recordId: r.id, recordCreatedDate: r.createdDate },
          { now },
          this.o.logger,
        ),
      );
  }
}
