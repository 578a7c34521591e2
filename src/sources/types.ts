// The source contract. A source (the Salesforce poller or streamer) reads records and hands them
// on with the checkpoint they let advance; it never renders or writes outbox rows itself. The
// application's enqueue step (app/enqueue.ts) does the ledger check, the render and ONE
// transaction with the checkpoint, and its answer is the source's acknowledgement: only then
// does the source read on (the cursor is saved as the last step, after the rows are safe).
import type { Checkpoint, CheckpointUpdate } from '../store/index.ts';
import type { ObservedRecord } from '../rules/triggers.ts';
import type { SourceRecord } from '../types.ts';

export interface SourceBatch {
  records: SourceRecord[];
  /**
   * on: updated rules: the changed records read, each with whether it matches `where` now, in
   * (SystemModstamp, Id) order; the enqueue step judges each against the stored state.
   */
  observed?: ObservedRecord[];
  /**
   * The checkpoint to store with the rows. A function is called inside the serialised commit with
   * the checkpoint as stored then (stream batches keep the poller's watermark that way).
   */
  checkpoint: CheckpointUpdate | ((current: Checkpoint | null) => CheckpointUpdate);
}

export interface BatchAck {
  /** rows new to the ledger */
  inserted: number;
  /** of those, rows dead-lettered at render time */
  dead: number;
}

/** Where a source hands its batches: resolves once the batch and its checkpoint are committed. */
export type BatchSink = (batch: SourceBatch) => Promise<BatchAck>;
