// The Store contract: durable checkpoints and the outbox ledger. Implemented by SQLite (sqlite.ts)
// and PostgreSQL (postgres.ts); one contract test suite runs against both.
import type { ChannelName, OutboxMessage, SendResult } from '../types.ts';
export type { OutboxMessage } from '../types.ts';

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
  /** where it goes (default email); the ledger key is (rule, recordId, channel) */
  channel?: ChannelName;
  message: OutboxMessage | null;
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
  channel: ChannelName;
  state: OutboxState;
  message: OutboxMessage | null;
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
  /**
   * Id of the last record read at `watermark` (the cursor is the key (CreatedDate, Id)): every
   * record with key <= (watermark, lastId) visible when read has been enqueued. null: none known,
   * the watermark's second is read again.
   */
  lastId?: string | null;
  /** stream mode: last processed replay id */
  replayId: string | null;
  /** when the last complete lookback sweep started (see poller.ts); null before the first */
  sweptAt?: string | null;
  updatedAt: string;
}

export interface CheckpointUpdate {
  floor: string;
  watermark: string;
  /** the Id of the last record read at `watermark`; omitted = none (it goes with the watermark) */
  lastId?: string | null;
  /** undefined keeps the stored value */
  replayId?: string | null;
  /** undefined keeps the stored value */
  sweptAt?: string;
}

/**
 * on: updated rules: the state of one record when last seen, judged against at its next change
 * (rules/triggers.ts). `watched` null: the values are not known (a baseline without them).
 */
export interface MatchState {
  recordId: string;
  matched: boolean;
  watched: Record<string, unknown> | null;
  /** the record's SystemModstamp when seen (ISO-8601) */
  systemModstamp: string;
}

/** A matched record collected for a digest rule (instead of an email of its own). */
export interface DigestItemInput {
  /** the ledger key: `<Id>` (on: created) or `<Id>.<version>` (on: updated) */
  recordKey: string;
  object: string;
  /** what the digest template sees of it (JSON) */
  record: Record<string, unknown>;
}

export interface DigestItem extends DigestItemInput {
  id: number;
  collectedAt: string;
}

/** The open items of a digest rule: the oldest `maxRecords` of them, and how many there are. */
export interface DigestContent {
  items: DigestItem[];
  count: number;
  /** the previous digest's `until`, null before the first */
  since: string | null;
}

/** What an on: updated batch writes besides its rows, in the same transaction. */
export interface BatchExtra {
  /** digest rules: collected items (an item whose rule+recordKey exists already is skipped) */
  digestItems?: DigestItemInput[];
  /** upserted; a state never replaces one with a later SystemModstamp */
  matchStates?: MatchState[];
  /** delete the rule's states whose SystemModstamp is before this instant (retention) */
  pruneMatchStatesBefore?: string;
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
  /** only this channel's rows (none = all) */
  channel?: ChannelName;
}

export interface CycleOptions {
  owner: string;
  leaseMs: number;
  outcomes?: Outcome[];
  /** ids reserved by `owner` to move to sending now */
  start?: number[];
  /** due rows to claim straight to sending */
  claim?: number;
  /** due rows to reserve ahead */
  reserve?: number;
  /** claim and reserve only this channel's rows (none = all) */
  channel?: ChannelName;
  /** reserved ids to hand back */
  release?: number[];
  /**
   * After a cycle whose outcome is unknown (its connection died around COMMIT): the ids `owner`
   * still holds (sending, reserved, outcomes not yet written). Every other row leased to `owner`
   * (of `channel`, when given: each channel's dispatcher reclaims only its own)
   * was leased by that cycle and never handed to a connection, so it goes back: sending ->
   * pending without counting the attempt, reserved -> lease cleared. Runs after the outcomes and
   * before the claims of this cycle.
   */
  reclaim?: number[];
  now?: Date;
}

export interface CycleResult {
  /** the `start` ids that were still reserved by the owner, now sending */
  started: number[];
  /** claimed rows, now sending (attempts counted) */
  claimed: OutboxRow[];
  /** reserved rows (attempts not yet counted) */
  reserved: OutboxRow[];
  /** with `reclaim`: the ids given back */
  reclaimed?: number[];
}

export interface OutboxFilter {
  state?: OutboxState;
  rule?: string;
  channel?: ChannelName;
  limit?: number;
}

export interface OutboxCounts {
  /** by rule, then state */
  byRule: Record<string, Partial<Record<OutboxState, number>>>;
  /** by channel, then state */
  byChannel: Partial<Record<ChannelName, Partial<Record<OutboxState, number>>>>;
  total: Record<OutboxState, number>;
}

/** One accepted Send API request (http/send-api.ts) to enqueue with its outbox row. */
export interface SendApiRequest {
  /** the public message id (unique); also the outbox row's recordId */
  id: string;
  /** the token's name (never its value) */
  token: string;
  /** the Idempotency-Key, scoped to the token; null: none */
  idempotencyKey: string | null;
  /** sha256 (hex) of the canonical JSON body: the same key with another hash is a conflict ('-' without a key) */
  bodyHash: string;
  /** the email, an ordinary pending row (rule `api:<token>`) */
  row: NewOutboxRow;
}

/**
 * What became of a SendApiRequest: `created` (row written), `replay` (the token's key was used
 * before with the same body: nothing written, the first message's id), `conflict` (the key was
 * used before with another body: nothing written).
 */
export type SendApiOutcome =
  | { kind: 'created'; id: string; outboxId: number }
  | { kind: 'replay'; id: string; outboxId: number }
  | { kind: 'conflict'; id: string };

/** A Send API message as its token may see it. */
export interface SendApiMessage {
  id: string;
  token: string;
  createdAt: string;
  /** the outbox row (null if an operator removed it) */
  row: OutboxRow | null;
}

/**
 * Durable checkpoints and the outbox. Implemented by SQLite (src/store/sqlite.ts) and
 * PostgreSQL (src/store/postgres.ts); one contract test suite runs against both.
 */
export interface Store {
  readonly kind: 'sqlite' | 'postgres';
  /**
   * A database server the store cannot reach right now (its last operation failed for a dead or
   * refused connection, none has succeeded since); null while it works. A file store has none.
   */
  connectionProblem?(): { reason: string; since: string } | null;
  /** create/upgrade the schema; safe when replicas start together */
  migrate(): Promise<void>;
  getCheckpoint(rule: string): Promise<Checkpoint | null>;
  listCheckpoints(): Promise<Checkpoint[]>;
  /**
   * ONE transaction: insert rows (a row whose rule+recordId+channel exists already is skipped) and set
   * the rule's checkpoint, plus, for on: updated rules, the match states in `extra`. Returns how
   * many rows were new.
   */
  commitBatch(
    rule: string,
    rows: NewOutboxRow[],
    checkpoint: CheckpointUpdate,
    extra?: BatchExtra,
    /** when given, the transaction is refused (LeaseLostError, nothing written) unless this is the rule's live lease */
    fence?: LeaseFence,
  ): Promise<{ inserted: number }>;
  /**
   * Digest rules: ONE transaction that reads the open items, lets `build` render the digest
   * from them (null: nothing to send), inserts that row (key rule + recordId; an existing one
   * means this digest went out already: nothing changes) and marks every item read as covered
   * by it. Returns the new row's id (null when none) and how many items it covers.
   */
  commitDigest(
    rule: string,
    opts: { until: string; maxRecords: number; build: (content: DigestContent) => NewOutboxRow | null },
  ): Promise<{ outboxId: number | null; count: number }>;
  /** the open items a digest would take now (dry-run, send-test, status) */
  openDigestItems(rule: string, maxRecords: number): Promise<DigestContent>;
  /** the rule's stored match states of these records (on: updated) */
  getMatchStates(rule: string, recordIds: string[]): Promise<Map<string, MatchState>>;
  /**
   * The Message-ID of each record's first notification (the earliest row keyed `<Id>` or
   * `<Id>.<version>`, whatever the rule), for In-Reply-To / References of later ones.
   */
  firstMessageIds(recordIds: string[]): Promise<Map<string, string>>;
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
  /** which of these record ids the rule's ledger already holds on any channel (lets a re-read skip rendering) */
  existingRecordIds(rule: string, recordIds: string[]): Promise<Set<string>>;
  /** pending rows, and failed rows whose next attempt is due -> sending, leased to `owner`; attempts+1 */
  claimDue(opts: ClaimOptions): Promise<OutboxRow[]>;
  /** outcome writes; each only applies while `owner` holds the lease. Several in one transaction. */
  recordOutcomes(owner: string, outcomes: Outcome[]): Promise<void>;
  /**
   * The dispatcher's group commit, ONE transaction: write `outcomes`; move the rows `start` names
   * (reserved earlier by `owner`) to `sending` (attempts+1, lease renewed); claim `claim` more due
   * rows straight to `sending`; reserve `reserve` more due rows for `owner` (leased but still
   * pending/failed, attempts unchanged: after a crash they are simply due again, never unknown);
   * un-reserve the rows `release` names. `sending` is only ever a row handed to a connection.
   */
  cycle(opts: CycleOptions): Promise<CycleResult>;
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
  /**
   * The Send API's group commit, ONE transaction for all of `requests`, in order: each is checked
   * against its token's Idempotency-Key (an earlier request, in the store or earlier in this
   * batch, with the same key: `replay` when the body hash matches, else `conflict`, nothing
   * written), otherwise its outbox row and its send_api_messages row are inserted together.
   */
  enqueueSendRequests(requests: SendApiRequest[]): Promise<SendApiOutcome[]>;
  /** the token's message by public id; another token's (or an unknown) id: null */
  getSendApiMessage(token: string, id: string): Promise<SendApiMessage | null>;
  /** earliest nextAttemptAt among failed rows (of one channel when given), or null; lets the dispatcher sleep exactly */
  nextDueAt(channel?: ChannelName): Promise<Date | null>;
  close(): Promise<void>;

  // the send pacer's state (delivery/pacer.ts), one row per key

  /**
   * Atomically reads the pace state (null before the first update), lets `step` change it at
   * `nowMs` (the database's clock on PostgreSQL, so replicas agree), and writes it back. Replicas
   * updating the same key wait for each other.
   */
  updateSendPace<T>(
    key: string,
    step: (state: PaceState | null, nowMs: number) => { state: PaceState; result: T },
  ): Promise<{ state: PaceState; result: T; now: number }>;
  /** the pace state as stored, or null */
  readSendPace(key: string): Promise<PaceState | null>;
}

/** The send pacer's state: see delivery/pacer.ts. Instants are ms since the epoch. */
export interface PaceState {
  /** sends the bucket holds (at most its burst), as of `at` */
  tokens: number;
  at: number;
  /** >= 1: the pace is the limit divided by this after throttling; it decays back to 1 */
  slowdown: number;
  throttledAt: number;
  /** no sends before this */
  pausedUntil: number;
  /** throttling reactions in a row (each doubles the pause) */
  strikes: number;
  /** [hour since the epoch, sends] over the rolling daily window */
  hours: [number, number][];
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
  /**
   * this process's lease owner id: its own rows are never taken for a dead replica's (it knows
   * it is alive), only ever by their expired row lease
   */
  self?: string;
  /**
   * with `self`: only this process's own rows whose row lease expired (it was paused or stalled
   * past `delivery.leaseMs`), with a message saying so; `deadOwners` and `all` do not apply
   */
  onlySelf?: boolean;
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
