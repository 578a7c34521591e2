// The Store contract: durable checkpoints and the outbox ledger. Implemented by SQLite (sqlite.ts)
// and PostgreSQL (postgres.ts); one contract test suite runs against both.
import type { RenderedMessage, SendResult } from '../types.ts';

/**
 * pending: never tried; sending: leased to a dispatcher; sent: accepted by the server;
 * failed: a transient failure, retried at next_attempt_at; dead: permanent failure, not retried;
 * unknown: found `sending` after a crash, not re-sent unless onUncertain is resend ("uncertain").
 */
export type OutboxState = 'pending' | 'sending' | 'sent' | 'failed' | 'dead' | 'unknown';
export const OUTBOX_STATES: readonly OutboxState[] = [
  'pending',
  'sending',
  'sent',
  'failed',
  'dead',
  'unknown',
];

/** A row to enqueue. A row whose render failed is enqueued as dead with the reason. */
export interface NewOutboxRow {
  rule: string;
  object: string;
  recordId: string;
  recordCreatedDate: string;
  message: RenderedMessage | null;
  state: 'pending' | 'dead';
  lastError?: string;
  /** the failure's code (util/errors.ts CODES) when state is dead */
  lastErrorCode?: string;
}

export interface OutboxRow {
  id: number;
  rule: string;
  object: string;
  recordId: string;
  recordCreatedDate: string;
  state: OutboxState;
  message: RenderedMessage | null;
  attempts: number;
  nextAttemptAt: string | null;
  leaseOwner: string | null;
  leaseUntil: string | null;
  lastError: string | null;
  /** the code (util/errors.ts CODES) of the last failure, e.g. ECONNECTION, EENVELOPE, ERECIPIENT */
  lastErrorCode: string | null;
  /** server reply and recipients for sent rows: { response, accepted, rejected } */
  result: SendResult | null;
  createdAt: string;
  updatedAt: string;
  sentAt: string | null;
}

export interface Checkpoint {
  rule: string;
  /** records created before this instant are never notified (startFrom, fixed at first start) */
  floor: string;
  /** every record with CreatedDate < watermark that was visible when read has been enqueued */
  watermark: string;
  /** stream mode: last processed replay id */
  replayId: string | null;
  /** when the last complete lookback sweep started (see poller.ts); null before the first */
  sweptAt?: string | null;
  updatedAt: string;
}

export interface CheckpointUpdate {
  floor: string;
  watermark: string;
  /** undefined keeps the stored value */
  replayId?: string | null;
  /** undefined keeps the stored value */
  sweptAt?: string;
}

/** A rule's poll leadership: one holder at a time, on the database's clock. */
export interface RuleLease {
  rule: string;
  holder: string;
  /** raised each time the lease changes hands or is taken again after it expired */
  epoch: number;
  acquiredAt: string;
  expiresAt: string;
}

/** What a leader's checkpoint write carries: refused unless it is the rule's current, live lease. */
export interface LeaseFence {
  holder: string;
  epoch: number;
}

/** A `run` process as last seen by the store (its heartbeat). */
export interface ReplicaInfo {
  id: string;
  host: string;
  pid: number;
  startedAt: string;
  seenAt: string;
  /** considered gone after this instant (its rows `sending` may then be recovered) */
  expiresAt: string;
}

export interface ClaimOptions {
  /** unique per process */
  owner: string;
  limit: number;
  leaseMs: number;
  now?: Date;
  /** only these rules (none = all) */
  rules?: string[];
}

export interface OutboxFilter {
  state?: OutboxState;
  rule?: string;
  limit?: number;
}

export interface OutboxCounts {
  /** by rule, then state */
  byRule: Record<string, Partial<Record<OutboxState, number>>>;
  total: Record<OutboxState, number>;
}

/**
 * Durable checkpoints and the outbox. Implemented by SQLite (src/store/sqlite.ts) and
 * PostgreSQL (src/store/postgres.ts); one contract test suite runs against both.
 */
export interface Store {
  readonly kind: 'sqlite' | 'postgres';
  /** create/upgrade the schema; safe when replicas start together */
  migrate(): Promise<void>;
  getCheckpoint(rule: string): Promise<Checkpoint | null>;
  listCheckpoints(): Promise<Checkpoint[]>;
  /**
   * ONE transaction: insert rows (a row whose rule+recordId exists already is skipped) and set
   * the rule's checkpoint. Returns how many rows were new.
   */
  commitBatch(
    rule: string,
    rows: NewOutboxRow[],
    checkpoint: CheckpointUpdate,
    /** when given, the transaction is refused (LeaseLostError, nothing written) unless this is the rule's live lease */
    fence?: LeaseFence,
  ): Promise<{ inserted: number }>;
  /**
   * Take the rule's lease for `holder` when it is free or expired (epoch + 1), or extend it when
   * `holder` holds it and it is live (same epoch), to now + ttlMs on the store's clock. Returns the
   * lease as it stands, or null when another holder's lease is live.
   */
  acquireLease(rule: string, holder: string, ttlMs: number): Promise<RuleLease | null>;
  /** end the lease now so another replica can take it; only while `fence` is the current lease */
  releaseLease(rule: string, fence: LeaseFence): Promise<void>;
  listLeases(): Promise<RuleLease[]>;
  /** this replica is alive until now + ttlMs; returns every replica alive now (this one included) */
  heartbeat(replica: { id: string; host: string; pid: number }, ttlMs: number): Promise<ReplicaInfo[]>;
  /** replicas seen in the last day, most recent first */
  listReplicas(): Promise<ReplicaInfo[]>;
  /** a clean stop: forget the replica and end its leases */
  removeReplica(id: string): Promise<void>;
  /** which of these record ids the rule's ledger already holds (lets a re-read skip rendering) */
  existingRecordIds(rule: string, recordIds: string[]): Promise<Set<string>>;
  /** pending rows, and failed rows whose next attempt is due -> sending, leased to `owner`; attempts+1 */
  claimDue(opts: ClaimOptions): Promise<OutboxRow[]>;
  /** outcome writes; each only applies while `owner` holds the lease. Several in one transaction. */
  recordOutcomes(owner: string, outcomes: Outcome[]): Promise<void>;
  /**
   * rows still `sending` whose lease has expired (or, for a single-process store opened
   * exclusively, any `sending` row at start-up; or, with `deadOwners`, any row of a replica whose
   * heartbeat expired) become `unknown`, or `pending` when the row's rule is in `resendRules`.
   * Returns the ids changed.
   */
  recoverAbandoned(opts: RecoverOptions): Promise<number[]>;
  counts(): Promise<OutboxCounts>;
  list(filter: OutboxFilter): Promise<OutboxRow[]>;
  get(id: number): Promise<OutboxRow | null>;
  /** dead/failed/unknown -> pending (attempts kept), due now */
  retry(id: number): Promise<boolean>;
  retryAllDead(): Promise<number>;
  /** unknown -> sent | dead, by an operator */
  resolve(id: number, as: 'sent' | 'dead', note?: string): Promise<boolean>;
  /** the most recent errors (dead/failed/unknown rows with lastError), newest first */
  lastErrors(limit: number): Promise<OutboxRow[]>;
  /** earliest nextAttemptAt among failed rows, or null; lets the dispatcher sleep exactly */
  nextDueAt(): Promise<Date | null>;
  close(): Promise<void>;
}

export interface RecoverOptions {
  now?: Date;
  resendRules?: string[];
  /** single-process store held exclusively: every `sending` row at start-up is abandoned */
  all?: boolean;
  /**
   * also rows whose lease owner is a replica whose heartbeat expired a whole heartbeat ttl ago
   * (it died; one merely cut off from the database for a moment keeps its rows): reported unknown
   * without waiting for the row's own, longer lease. Resend rules still wait for the row
   * lease, so a paused-not-dead replica's send is never repeated early.
   */
  deadOwners?: boolean;
}

/** `code`: the failure's code (util/errors.ts CODES), kept in the row's last_error_code column. */
export type Outcome =
  | { id: number; kind: 'sent'; result: SendResult }
  | { id: number; kind: 'retry'; error: string; code?: string; nextAttemptAt: Date }
  | { id: number; kind: 'dead'; error: string; code?: string }
  /** circuit open: back to pending without counting the attempt */
  | { id: number; kind: 'release'; error: string; code?: string; nextAttemptAt: Date }
  /** the connection broke after the message data went out: it may have been delivered -> unknown */
  | { id: number; kind: 'uncertain'; error: string; code?: string };
