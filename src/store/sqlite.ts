// SQLite store (node:sqlite, WAL): the default embedded store for a single daemon.
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite';
import type {
  BatchExtra,
  Checkpoint,
  CheckpointUpdate,
  ClaimOptions,
  DigestContent,
  MatchState,
  CycleOptions,
  CycleResult,
  NewOutboxRow,
  Outcome,
  OutboxCounts,
  OutboxFilter,
  OutboxRow,
  OutboxState,
  LeaseFence,
  RecoverOptions,
  ReplicaInfo,
  RuleLease,
  PaceState,
  SendApiMessage,
  SendApiOutcome,
  SendApiRequest,
  Store,
} from './types.ts';
import { OUTBOX_STATES } from './types.ts';
import { CHANNEL_NAMES, type ChannelName } from '../types.ts';
import {
  abandonedMessages,
  DIGEST_LIST_BYTES,
  listLimit,
  normalizeInstant,
  outboxValues,
  resolutionNote,
  tallyCounts,
  validateClaim,
  validateTtl,
} from './common.ts';
import { LeaseLostError, StoreClosedError, StoreCorruptError } from './errors.ts';
import type { FileLock } from './lock.ts';
import { loadMigrations } from './migrations.ts';
import { json, str, toCheckpoint, toDigestItem, toLease, toOutboxRow, toReplica } from './sqlite-rows.ts';

type Row = Record<string, SQLInputValue>;

export interface SqliteStoreOptions {
  readOnly?: boolean;
  /** held for the store's lifetime and released on close() */
  lock?: FileLock;
  /** PRAGMA synchronous (default normal); see sqliteOptions in index.ts */
  synchronous?: 'full' | 'normal';
}

/**
 * The claim queries' channel filter, written into the SQL like their LIMIT (one cached statement
 * per channel): a bound `(? IS NULL OR channel = ?)` keeps SQLite from using the per-channel
 * partial index. Only a known channel name gets here.
 */
function channelClause(channel: ChannelName | undefined): string {
  if (channel === undefined) return '';
  if (!CHANNEL_NAMES.includes(channel)) throw new Error(`unknown channel ${String(channel)}`);
  return `AND channel = '${channel}'`;
}

export class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;
  readonly path: string;
  readonly synchronous: 'full' | 'normal';
  private readonly db: DatabaseSync;
  private readonly readOnly: boolean;
  private lock: FileLock | undefined;
  private closed = false;
  private readonly statements = new Map<string, StatementSync>();

  constructor(path: string, opts: SqliteStoreOptions = {}) {
    this.path = path;
    this.readOnly = opts.readOnly ?? false;
    this.lock = opts.lock;
    // timeout = busy_timeout: wait up to 5 s for another connection's write lock instead of failing.
    try {
      this.db = new DatabaseSync(path, {
        readOnly: this.readOnly,
        timeout: 5_000,
        enableForeignKeyConstraints: true,
      });
    } catch (err) {
      throw unreadable(path, err) ?? err;
    }
    try {
      this.db.exec('PRAGMA busy_timeout = 5000');
      this.db.exec('PRAGMA foreign_keys = ON');
      if (!this.readOnly) {
        // WAL: readers (`status`, `outbox list`) never block the daemon's writer, nor it them.
        this.db.exec('PRAGMA journal_mode = WAL');
      }
      // synchronous=NORMAL by default: in WAL mode a commit is written to the WAL file without an
      // fsync, so it survives a killed process (kill -9, OOM) but the last commits before a power
      // cut or OS crash may be lost; a lost `sending` mark could then make a row that went out look
      // unsent after the reboot (a duplicate). `?synchronous=full` fsyncs every commit and closes
      // that gap; bench/throughput.ts measures both (bench/RESULTS.md).
      this.synchronous = opts.synchronous ?? 'normal';
      this.db.exec(`PRAGMA synchronous = ${this.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
    } catch (err) {
      this.db.close();
      throw unreadable(path, err) ?? err;
    }
  }

  private stmt(sql: string): StatementSync {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  private check(method: string): void {
    if (this.closed) throw new StoreClosedError('sqlite', method);
  }

  /** BEGIN IMMEDIATE takes the write lock up front, so the busy timeout applies (no upgrade deadlock). */
  private tx<T>(fn: () => T): T {
    this.db.exec('BEGIN IMMEDIATE');
    try {
      const out = fn();
      this.db.exec('COMMIT');
      return out;
    } catch (err) {
      if (this.db.isTransaction) this.db.exec('ROLLBACK');
      throw err;
    }
  }

  async migrate(): Promise<void> {
    this.check('migrate');
    try {
      this.migrateNow();
    } catch (err) {
      throw unreadable(this.path, err) ?? err;
    }
  }

  private migrateNow(): void {
    const migrations = loadMigrations('sqlite');
    if (this.readOnly) {
      const latest = this.appliedVersion();
      const wanted = migrations.length;
      if (latest < wanted) {
        throw new Error(
          `store ${this.path} has schema version ${latest}, expected ${wanted}: run the daemon once to upgrade it`,
        );
      }
      return;
    }
    this.tx(() => {
      this.db.exec(
        'CREATE TABLE IF NOT EXISTS lead_notifier_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT',
      );
      const latest = this.appliedVersion();
      for (const m of migrations) {
        if (m.version <= latest) continue;
        this.db
          .prepare('INSERT INTO lead_notifier_migrations (version, name, applied_at) VALUES (?, ?, ?)')
          .run(m.version, m.name, new Date().toISOString());
        this.db.exec(m.sql);
      }
    });
    this.statements.clear();
  }

  private appliedVersion(): number {
    const exists = this.db
      .prepare("SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = 'lead_notifier_migrations'")
      .get();
    if (!exists) return 0;
    const row = this.db.prepare('SELECT max(version) AS v FROM lead_notifier_migrations').get() as {
      v: number | null;
    };
    return row.v ?? 0;
  }

  async getCheckpoint(rule: string): Promise<Checkpoint | null> {
    this.check('getCheckpoint');
    const row = this.stmt('SELECT * FROM checkpoints WHERE rule = ?').get(rule) as Row | undefined;
    return row ? toCheckpoint(row) : null;
  }

  async listCheckpoints(): Promise<Checkpoint[]> {
    this.check('listCheckpoints');
    return (this.stmt('SELECT * FROM checkpoints ORDER BY rule').all() as Row[]).map(toCheckpoint);
  }

  async commitBatch(
    rule: string,
    rows: NewOutboxRow[],
    checkpoint: CheckpointUpdate,
    extra?: BatchExtra,
    fence?: LeaseFence,
  ): Promise<{ inserted: number }> {
    this.check('commitBatch');
    const floor = normalizeInstant(checkpoint.floor, 'checkpoint floor');
    const watermark = normalizeInstant(checkpoint.watermark, 'checkpoint watermark');
    const now = new Date().toISOString();
    const setReplay = checkpoint.replayId !== undefined ? 1 : 0;
    const sweptAt =
      checkpoint.sweptAt === undefined ? null : normalizeInstant(checkpoint.sweptAt, 'checkpoint sweptAt');
    const insert = this.stmt(
      `INSERT INTO outbox (rule, object, record_id, record_created_date, state, message, last_error, last_error_code, created_at, updated_at, channel)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (rule, record_id, channel) DO NOTHING`,
    );
    const upsert = this.stmt(
      `INSERT INTO checkpoints (rule, floor, watermark, last_id, replay_id, swept_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (rule) DO UPDATE SET floor = excluded.floor, watermark = excluded.watermark,
         last_id = excluded.last_id,
         replay_id = CASE WHEN ? THEN excluded.replay_id ELSE checkpoints.replay_id END,
         swept_at = COALESCE(excluded.swept_at, checkpoints.swept_at),
         updated_at = excluded.updated_at`,
    );
    return this.tx(() => {
      // BEGIN IMMEDIATE holds the write lock, so no lease can change hands during this check.
      if (fence && !this.holds(rule, fence, now)) throw new LeaseLostError(rule, fence.holder, fence.epoch);
      upsert.run(
        rule,
        floor,
        watermark,
        checkpoint.lastId ?? null,
        checkpoint.replayId ?? null,
        sweptAt,
        now,
        setReplay,
      );
      let inserted = 0;
      for (const r of rows) {
        const res = insert.run(...outboxValues(r), now, now, r.channel ?? 'email');
        inserted += Number(res.changes);
      }
      if (extra) {
        this.writeMatchStates(rule, extra);
        inserted += this.writeDigestItems(rule, extra, now);
      }
      return { inserted };
    });
  }

  /** inside commitBatch's transaction */
  private writeMatchStates(rule: string, extra: BatchExtra): void {
    const upsert = this.stmt(
      `INSERT INTO match_state (rule, record_id, matched, watched, system_modstamp) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (rule, record_id) DO UPDATE SET matched = excluded.matched, watched = excluded.watched,
         system_modstamp = excluded.system_modstamp
       WHERE excluded.system_modstamp > match_state.system_modstamp`,
    );
    for (const m of extra.matchStates ?? []) {
      upsert.run(
        rule,
        m.recordId,
        m.matched ? 1 : 0,
        m.watched === null ? null : JSON.stringify(m.watched),
        normalizeInstant(m.systemModstamp, `systemModstamp of ${m.recordId}`),
      );
    }
    if (extra.pruneMatchStatesBefore !== undefined) {
      this.stmt('DELETE FROM match_state WHERE rule = ? AND system_modstamp < ?').run(
        rule,
        normalizeInstant(extra.pruneMatchStatesBefore, 'pruneMatchStatesBefore'),
      );
    }
  }

  /** inside commitBatch's transaction; returns the items new to the rule's digest ledger */
  private writeDigestItems(rule: string, extra: BatchExtra, now: string): number {
    const insert = this.stmt(
      `INSERT INTO digest_items (rule, record_key, object, record, collected_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (rule, record_key) DO NOTHING`,
    );
    let n = 0;
    for (const item of extra.digestItems ?? []) {
      n += Number(insert.run(rule, item.recordKey, item.object, JSON.stringify(item.record), now).changes);
    }
    return n;
  }

  private readDigest(rule: string, maxRecords: number): DigestContent & { ids: number[] } {
    const ids = (
      this.stmt('SELECT id FROM digest_items WHERE rule = ? AND digest_outbox_id IS NULL ORDER BY id').all(
        rule,
      ) as Row[]
    ).map((r) => Number(r.id));
    // the oldest maxRecords, while the ones before each weigh less than DIGEST_LIST_BYTES
    const items = (
      this.stmt(
        `SELECT * FROM (
           SELECT *, sum(length(record)) OVER (ORDER BY id) - length(record) AS before
           FROM digest_items WHERE rule = ? AND digest_outbox_id IS NULL ORDER BY id LIMIT ?)
         WHERE before < ? ORDER BY id`,
      ).all(rule, maxRecords, DIGEST_LIST_BYTES) as Row[]
    ).map(toDigestItem);
    const last = this.stmt('SELECT max(until) AS until FROM digests WHERE rule = ?').get(rule) as Row;
    return { ids, items, count: ids.length, since: last.until === null ? null : String(last.until) };
  }

  async openDigestItems(rule: string, maxRecords: number): Promise<DigestContent> {
    this.check('openDigestItems');
    const { items, count, since } = this.readDigest(rule, maxRecords);
    return { items, count, since };
  }

  async commitDigest(
    rule: string,
    opts: { until: string; maxRecords: number; build: (content: DigestContent) => NewOutboxRow | null },
  ): Promise<{ outboxId: number | null; count: number }> {
    this.check('commitDigest');
    const until = normalizeInstant(opts.until, 'digest until');
    return this.tx(() => {
      const { ids, items, count, since } = this.readDigest(rule, opts.maxRecords);
      const row = opts.build({ items, count, since });
      if (!row) return { outboxId: null, count: 0 };
      const now = new Date().toISOString();
      const res = this.stmt(
        `INSERT INTO outbox (rule, object, record_id, record_created_date, state, message, last_error, last_error_code, created_at, updated_at, channel)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (rule, record_id, channel) DO NOTHING`,
      ).run(...outboxValues(row, 'digest recordCreatedDate'), now, now, row.channel ?? 'email');
      // this digest (rule + key) went out already, e.g. before a restart in the same second
      if (Number(res.changes) === 0) return { outboxId: null, count: 0 };
      const outboxId = Number(res.lastInsertRowid);
      const mark = this.stmt('UPDATE digest_items SET digest_outbox_id = ? WHERE id = ?');
      for (const id of ids) mark.run(outboxId, id);
      this.stmt('INSERT INTO digests (rule, until, outbox_id, count) VALUES (?, ?, ?, ?)').run(
        rule,
        until,
        outboxId,
        count,
      );
      return { outboxId, count };
    });
  }

  async getMatchStates(rule: string, recordIds: string[]): Promise<Map<string, MatchState>> {
    this.check('getMatchStates');
    const out = new Map<string, MatchState>();
    if (recordIds.length === 0) return out;
    const rows = this.stmt(
      'SELECT * FROM match_state WHERE rule = ? AND record_id IN (SELECT value FROM json_each(?))',
    ).all(rule, JSON.stringify(recordIds)) as Row[];
    for (const r of rows) {
      out.set(String(r.record_id), {
        recordId: String(r.record_id),
        matched: r.matched === 1,
        watched: r.watched === null ? null : (JSON.parse(String(r.watched)) as Record<string, unknown>),
        systemModstamp: String(r.system_modstamp),
      });
    }
    return out;
  }

  async firstMessageIds(recordIds: string[]): Promise<Map<string, string>> {
    this.check('firstMessageIds');
    const out = new Map<string, string>();
    // the record's rows are keyed `<Id>` (created) or `<Id>.<version>` (updates): the range
    // [Id, Id + '/') holds exactly those ('.' sorts just before '/'), and uses the index
    const stmt = this.stmt(
      `SELECT json_extract(message, '$.messageId') AS message_id FROM outbox
       WHERE record_id >= ? AND record_id < ? AND message IS NOT NULL AND channel = 'email' ORDER BY id LIMIT 1`,
    );
    for (const id of new Set(recordIds)) {
      const r = stmt.get(id, `${id}/`) as Row | undefined;
      if (r && typeof r.message_id === 'string') out.set(id, r.message_id);
    }
    return out;
  }

  async claimDue(opts: ClaimOptions): Promise<OutboxRow[]> {
    this.check('claimDue');
    validateClaim(opts.limit, opts.leaseMs);
    if (opts.limit === 0) return [];
    const now = opts.now ?? new Date();
    const nowIso = now.toISOString();
    const leaseUntil = new Date(now.getTime() + opts.leaseMs).toISOString();
    const rules = opts.rules && opts.rules.length > 0 ? JSON.stringify(opts.rules) : null;
    const claim = this.stmt(
      `UPDATE outbox SET state = 'sending', lease_owner = ?, lease_until = ?, attempts = attempts + 1, updated_at = ?
       WHERE id IN (
         SELECT id FROM outbox
         WHERE state IN ('pending', 'failed') AND (next_attempt_at IS NULL OR next_attempt_at <= ?)
           AND (lease_until IS NULL OR lease_until < ?)
           AND (? IS NULL OR rule IN (SELECT value FROM json_each(?)))
           ${channelClause(opts.channel)}
         ORDER BY id LIMIT ${opts.limit})
       RETURNING *`,
    );
    const rows = this.tx(
      () => claim.all(opts.owner, leaseUntil, nowIso, nowIso, nowIso, rules, rules) as Row[],
    );
    return rows.map(toOutboxRow).sort((a, b) => a.id - b.id);
  }

  async recordOutcomes(owner: string, outcomes: Outcome[]): Promise<void> {
    this.check('recordOutcomes');
    if (outcomes.length === 0) return;
    this.tx(() => this.writeOutcomes(owner, outcomes));
  }

  /** inside a transaction */
  private writeOutcomes(owner: string, outcomes: Outcome[]): void {
    const now = new Date().toISOString();
    const guard = `WHERE id = ? AND state = 'sending' AND lease_owner = ?`;
    const clear = `lease_owner = NULL, lease_until = NULL, updated_at = ?`;
    const sent = this.stmt(`UPDATE outbox SET state = 'sent', result = ?, sent_at = ?, ${clear} ${guard}`);
    const retry = this.stmt(
      `UPDATE outbox SET state = 'failed', last_error = ?, last_error_code = ?, next_attempt_at = ?, ${clear} ${guard}`,
    );
    const dead = this.stmt(
      `UPDATE outbox SET state = 'dead', last_error = ?, last_error_code = ?, ${clear} ${guard}`,
    );
    const release = this.stmt(
      `UPDATE outbox SET state = 'pending', attempts = max(attempts - 1, 0), last_error = ?, last_error_code = ?, next_attempt_at = ?, ${clear} ${guard}`,
    );
    const uncertain = this.stmt(
      `UPDATE outbox SET state = 'unknown', last_error = ?, last_error_code = ?, ${clear} ${guard}`,
    );
    {
      for (const o of outcomes) {
        switch (o.kind) {
          case 'sent':
            sent.run(JSON.stringify(o.result), now, now, o.id, owner);
            break;
          case 'retry':
            retry.run(o.error, o.code ?? null, o.nextAttemptAt.toISOString(), now, o.id, owner);
            break;
          case 'dead':
            dead.run(o.error, o.code ?? null, now, o.id, owner);
            break;
          case 'release':
            release.run(o.error, o.code ?? null, o.nextAttemptAt.toISOString(), now, o.id, owner);
            break;
          case 'uncertain':
            uncertain.run(o.error, o.code ?? null, now, o.id, owner);
            break;
          default:
            throw new TypeError(`unknown outcome kind: ${JSON.stringify((o as { kind: unknown }).kind)}`);
        }
      }
    }
  }

  async cycle(opts: CycleOptions): Promise<CycleResult> {
    this.check('cycle');
    const claim = opts.claim ?? 0;
    const reserve = opts.reserve ?? 0;
    validateClaim(claim, opts.leaseMs);
    validateClaim(reserve, opts.leaseMs);
    const now = opts.now ?? new Date();
    const nowIso = now.toISOString();
    const leaseUntil = new Date(now.getTime() + opts.leaseMs).toISOString();
    const start = this.stmt(
      `UPDATE outbox SET state = 'sending', attempts = attempts + 1, lease_until = ?, updated_at = ?
       WHERE id = ? AND state IN ('pending', 'failed') AND lease_owner = ? RETURNING id`,
    );
    const release = this.stmt(
      `UPDATE outbox SET lease_owner = NULL, lease_until = NULL, updated_at = ?
       WHERE id = ? AND state IN ('pending', 'failed') AND lease_owner = ?`,
    );
    // claim: due rows straight to sending; reserve: the next due rows only take the lease.
    // The LIMIT is written into the SQL (a validated integer; one cached statement per count), not
    // bound: SQLite plans with a bound LIMIT's value, so every new binding of it expires the
    // statement and the next step prepares it again (a sixth of a tick's CPU, measured).
    const due = (limit: number) => `SELECT id FROM outbox
         WHERE state IN ('pending', 'failed') AND (next_attempt_at IS NULL OR next_attempt_at <= ?)
           AND (lease_until IS NULL OR lease_until < ?)
           ${channelClause(opts.channel)}
         ORDER BY id LIMIT ${limit}`;
    const channel = opts.channel ?? null;
    const claimStmt = this.stmt(
      `UPDATE outbox SET state = 'sending', attempts = attempts + 1, lease_owner = ?, lease_until = ?, updated_at = ?
       WHERE id IN (${due(claim)}) RETURNING *`,
    );
    const reserveStmt = this.stmt(
      `UPDATE outbox SET lease_owner = ?, lease_until = ?, updated_at = ? WHERE id IN (${due(reserve)}) RETURNING *`,
    );
    const reclaimStmt = this.stmt(
      `UPDATE outbox SET lease_owner = NULL, lease_until = NULL, updated_at = ?,
         state = CASE WHEN state = 'sending' THEN 'pending' ELSE state END,
         attempts = CASE WHEN state = 'sending' THEN max(attempts - 1, 0) ELSE attempts END
       WHERE lease_owner = ? AND state IN ('sending', 'pending', 'failed')
         AND (? IS NULL OR channel = ?)
         AND id NOT IN (SELECT value FROM json_each(?)) RETURNING id`,
    );
    return this.tx(() => {
      if (opts.outcomes?.length) this.writeOutcomes(opts.owner, opts.outcomes);
      for (const id of opts.release ?? []) release.run(nowIso, id, opts.owner);
      const reclaimed = opts.reclaim
        ? (
            reclaimStmt.all(nowIso, opts.owner, channel, channel, JSON.stringify(opts.reclaim)) as {
              id: number;
            }[]
          )
            .map((r) => r.id)
            .sort((a, b) => a - b)
        : undefined;
      const started: number[] = [];
      for (const id of opts.start ?? []) {
        if (start.get(leaseUntil, nowIso, id, opts.owner)) started.push(id);
      }
      const byId = (x: OutboxRow, y: OutboxRow) => x.id - y.id;
      const claimed =
        claim > 0
          ? (claimStmt.all(opts.owner, leaseUntil, nowIso, nowIso, nowIso) as Row[])
              .map(toOutboxRow)
              .sort(byId)
          : [];
      const reserved =
        reserve > 0
          ? (reserveStmt.all(opts.owner, leaseUntil, nowIso, nowIso, nowIso) as Row[])
              .map(toOutboxRow)
              .sort(byId)
          : [];
      return { started, claimed, reserved, ...(reclaimed ? { reclaimed } : {}) };
    });
  }

  private holds(rule: string, fence: LeaseFence, nowIso: string): boolean {
    return (
      this.stmt(
        'SELECT 1 AS x FROM rule_leases WHERE rule = ? AND holder = ? AND epoch = ? AND expires_at > ?',
      ).get(rule, fence.holder, fence.epoch, nowIso) !== undefined
    );
  }

  // Leases on this process's clock: one daemon holds a SQLite store (the file lock), so there is
  // no other clock to disagree with; the semantics are PostgreSQL's.
  async acquireLease(rule: string, holder: string, ttlMs: number): Promise<RuleLease | null> {
    this.check('acquireLease');
    validateTtl(ttlMs);
    const now = new Date();
    const nowIso = now.toISOString();
    const until = new Date(now.getTime() + ttlMs).toISOString();
    return this.tx(() => {
      const cur = this.stmt('SELECT * FROM rule_leases WHERE rule = ?').get(rule) as Row | undefined;
      // Opened exclusively, the file lock proves any other holder is a process that died: take over
      // at once (a new epoch) rather than wait out its lease.
      const live =
        cur !== undefined && str(cur.expires_at) > nowIso && (!this.lock || str(cur.holder) === holder);
      if (live && str(cur.holder) !== holder) return null;
      const epoch = cur === undefined ? 1 : live ? Number(cur.epoch) : Number(cur.epoch) + 1;
      const acquiredAt = live ? str(cur.acquired_at) : nowIso;
      this.stmt(
        `INSERT INTO rule_leases (rule, holder, epoch, acquired_at, expires_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (rule) DO UPDATE SET holder = excluded.holder, epoch = excluded.epoch,
           acquired_at = excluded.acquired_at, expires_at = excluded.expires_at`,
      ).run(rule, holder, epoch, acquiredAt, until);
      return { rule, holder, epoch, acquiredAt, expiresAt: until };
    });
  }

  async releaseLease(rule: string, fence: LeaseFence): Promise<void> {
    this.check('releaseLease');
    const now = new Date().toISOString();
    this.stmt(
      'UPDATE rule_leases SET expires_at = ? WHERE rule = ? AND holder = ? AND epoch = ? AND expires_at > ?',
    ).run(now, rule, fence.holder, fence.epoch, now);
  }

  async listLeases(): Promise<RuleLease[]> {
    this.check('listLeases');
    return (this.stmt('SELECT * FROM rule_leases ORDER BY rule').all() as Row[]).map(toLease);
  }

  async heartbeat(replica: { id: string; host: string; pid: number }, ttlMs: number): Promise<ReplicaInfo[]> {
    this.check('heartbeat');
    validateTtl(ttlMs);
    const now = new Date();
    const nowIso = now.toISOString();
    const until = new Date(now.getTime() + ttlMs).toISOString();
    const dayAgo = new Date(now.getTime() - 86_400_000).toISOString();
    return this.tx(() => {
      this.stmt(
        `INSERT INTO cluster_replicas (id, host, pid, started_at, seen_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at, expires_at = excluded.expires_at`,
      ).run(replica.id, replica.host, replica.pid, nowIso, nowIso, until);
      this.stmt('DELETE FROM cluster_replicas WHERE seen_at < ?').run(dayAgo);
      // exclusively held: every other replica on record is gone (the file lock says so)
      if (this.lock)
        this.stmt('UPDATE cluster_replicas SET expires_at = ? WHERE id <> ? AND expires_at > ?').run(
          nowIso,
          replica.id,
          nowIso,
        );
      return (
        this.stmt('SELECT * FROM cluster_replicas WHERE id = ? OR expires_at > ? ORDER BY id').all(
          replica.id,
          nowIso,
        ) as Row[]
      ).map(toReplica);
    });
  }

  async listReplicas(): Promise<ReplicaInfo[]> {
    this.check('listReplicas');
    const dayAgo = new Date(Date.now() - 86_400_000).toISOString();
    return (
      this.stmt('SELECT * FROM cluster_replicas WHERE seen_at >= ? ORDER BY seen_at DESC, id').all(
        dayAgo,
      ) as Row[]
    ).map(toReplica);
  }

  async removeReplica(id: string): Promise<void> {
    this.check('removeReplica');
    const now = new Date().toISOString();
    this.tx(() => {
      this.stmt('UPDATE rule_leases SET expires_at = ? WHERE holder = ? AND expires_at > ?').run(
        now,
        id,
        now,
      );
      this.stmt('DELETE FROM cluster_replicas WHERE id = ?').run(id);
    });
  }

  async recoverAbandoned(opts: RecoverOptions): Promise<number[]> {
    this.check('recoverAbandoned');
    const now = (opts.now ?? new Date()).toISOString();
    const onlySelf = opts.onlySelf === true && opts.self !== undefined;
    const msg = abandonedMessages(onlySelf);
    const all = opts.all && !onlySelf ? 1 : 0;
    const resend = JSON.stringify(opts.resendRules ?? []);
    const recover = this.stmt(
      `UPDATE outbox SET
         state = CASE WHEN rule IN (SELECT value FROM json_each(?)) THEN 'pending' ELSE 'unknown' END,
         last_error = CASE WHEN rule IN (SELECT value FROM json_each(?)) THEN ? ELSE ? END,
         last_error_code = 'EABANDONED',
         next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL, updated_at = ?
       WHERE state = 'sending' AND (? OR lease_until < ?
         OR (? AND rule NOT IN (SELECT value FROM json_each(?)) AND lease_owner IN (
           SELECT id FROM cluster_replicas
           WHERE julianday(expires_at) + (julianday(expires_at) - julianday(seen_at)) < julianday(?))))
         AND (? IS NULL OR CASE WHEN ? THEN lease_owner = ? ELSE lease_owner IS NOT ? END)
       RETURNING id`,
    );
    const changedAt = new Date().toISOString();
    const dead = opts.deadOwners && !onlySelf ? 1 : 0;
    const self = opts.self ?? null;
    // rows a dead process had only reserved (claimed ahead, never handed to a connection) are due
    const unreserve = this.stmt(
      `UPDATE outbox SET lease_owner = NULL, lease_until = NULL
       WHERE state IN ('pending', 'failed') AND lease_owner IS NOT NULL AND (? OR lease_until < ?)`,
    );
    const rows = this.tx(() => {
      unreserve.run(all, now);
      return recover.all(
        resend,
        resend,
        msg.resend,
        msg.uncertain,
        changedAt,
        all,
        now,
        dead,
        resend,
        now,
        self,
        onlySelf ? 1 : 0,
        self,
        self,
      ) as {
        id: number;
      }[];
    });
    return rows.map((r) => r.id).sort((a, b) => a - b);
  }

  async counts(): Promise<OutboxCounts> {
    this.check('counts');
    const rows = this.stmt(
      'SELECT rule, channel, state, count(*) AS n FROM outbox GROUP BY rule, channel, state',
    ).all() as { rule: string; channel: ChannelName; state: OutboxState; n: number }[];
    return tallyCounts(rows);
  }

  async list(filter: OutboxFilter): Promise<OutboxRow[]> {
    this.check('list');
    if (filter.state !== undefined && !OUTBOX_STATES.includes(filter.state)) {
      throw new RangeError(`state must be one of ${OUTBOX_STATES.join(', ')}`);
    }
    const rows = this.stmt(
      `SELECT * FROM outbox WHERE (? IS NULL OR state = ?) AND (? IS NULL OR rule = ?) AND (? IS NULL OR channel = ?)
       ORDER BY id DESC LIMIT ?`,
    ).all(
      filter.state ?? null,
      filter.state ?? null,
      filter.rule ?? null,
      filter.rule ?? null,
      filter.channel ?? null,
      filter.channel ?? null,
      listLimit(filter.limit),
    ) as Row[];
    return rows.map(toOutboxRow);
  }

  async existingRecordIds(rule: string, recordIds: string[]): Promise<Set<string>> {
    this.check('existingRecordIds');
    const found = new Set<string>();
    if (recordIds.length === 0) return found;
    const stmt = this.stmt(
      'SELECT record_id FROM outbox WHERE rule = ? AND record_id IN (SELECT value FROM json_each(?))',
    );
    for (const r of stmt.all(rule, JSON.stringify(recordIds)) as Row[]) found.add(String(r.record_id));
    return found;
  }

  async get(id: number): Promise<OutboxRow | null> {
    this.check('get');
    const row = this.stmt('SELECT * FROM outbox WHERE id = ?').get(id) as Row | undefined;
    return row ? toOutboxRow(row) : null;
  }

  async retry(id: number): Promise<boolean> {
    this.check('retry');
    const now = new Date().toISOString();
    // last_error is kept as history; rows without a message (render failed) cannot be sent.
    const res = this.tx(() =>
      this.stmt(
        `UPDATE outbox SET state = 'pending', next_attempt_at = ?, lease_owner = NULL, lease_until = NULL, updated_at = ?
         WHERE id = ? AND state IN ('dead', 'failed', 'unknown') AND message IS NOT NULL`,
      ).run(now, now, id),
    );
    return Number(res.changes) === 1;
  }

  async retryAllDead(): Promise<number> {
    this.check('retryAllDead');
    const now = new Date().toISOString();
    const res = this.tx(() =>
      this.stmt(
        `UPDATE outbox SET state = 'pending', next_attempt_at = ?, updated_at = ?
         WHERE state = 'dead' AND message IS NOT NULL`,
      ).run(now, now),
    );
    return Number(res.changes);
  }

  async resolve(id: number, as: 'sent' | 'dead', note?: string): Promise<boolean> {
    this.check('resolve');
    if (as !== 'sent' && as !== 'dead') throw new RangeError("resolve: as must be 'sent' or 'dead'");
    const now = new Date().toISOString();
    return this.tx(() => {
      const row = this.stmt(`SELECT last_error FROM outbox WHERE id = ? AND state = 'unknown'`).get(id) as
        { last_error: string | null } | undefined;
      if (!row) return false;
      this.stmt(
        `UPDATE outbox SET state = ?, last_error = ?, updated_at = ? WHERE id = ? AND state = 'unknown'`,
      ).run(as, resolutionNote(row.last_error, as, note), now, id);
      return true;
    });
  }

  async lastErrors(limit: number): Promise<OutboxRow[]> {
    this.check('lastErrors');
    const rows = this.stmt(
      `SELECT * FROM outbox WHERE state IN ('dead', 'failed', 'unknown') AND last_error IS NOT NULL
       ORDER BY updated_at DESC, id DESC LIMIT ?`,
    ).all(listLimit(limit)) as Row[];
    return rows.map(toOutboxRow);
  }

  async nextDueAt(channel?: ChannelName): Promise<Date | null> {
    this.check('nextDueAt');
    // pending rows carry next_attempt_at after a `release` (circuit open); claimDue honours it too.
    const row = this.stmt(
      `SELECT min(next_attempt_at) AS t FROM outbox WHERE state IN ('pending', 'failed') AND next_attempt_at IS NOT NULL
       AND (? IS NULL OR channel = ?)`,
    ).get(channel ?? null, channel ?? null) as { t: string | null };
    return row.t ? new Date(row.t) : null;
  }

  // -- the Send API (http/send-api.ts)

  async enqueueSendRequests(requests: SendApiRequest[]): Promise<SendApiOutcome[]> {
    this.check('enqueueSendRequests');
    if (requests.length === 0) return [];
    const now = new Date().toISOString();
    const prior = this.stmt(
      'SELECT id, body_hash, outbox_id FROM send_api_messages WHERE token = ? AND idempotency_key = ?',
    );
    // a plain INSERT: the id is new (a UUID, or derived from a key looked up just above), so a
    // clash on the outbox's unique key would be a bug and rolls the whole batch back
    const insertRow = this.stmt(
      `INSERT INTO outbox (rule, object, record_id, record_created_date, state, message, last_error, last_error_code, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
    );
    const insertMessage = this.stmt(
      `INSERT INTO send_api_messages (id, token, idempotency_key, body_hash, outbox_id, created_at)
       VALUES (?, ?, ?, ?, ?, ?)`,
    );
    return this.tx(() =>
      requests.map((r): SendApiOutcome => {
        if (r.idempotencyKey !== null) {
          const seen = prior.get(r.token, r.idempotencyKey) as Row | undefined;
          if (seen) {
            return str(seen.body_hash) === r.bodyHash
              ? { kind: 'replay', id: str(seen.id), outboxId: Number(seen.outbox_id) }
              : { kind: 'conflict', id: str(seen.id) };
          }
        }
        const { row } = r;
        const inserted = insertRow.get(...outboxValues(row), now, now) as Row;
        const outboxId = Number(inserted.id);
        insertMessage.run(r.id, r.token, r.idempotencyKey, r.bodyHash, outboxId, now);
        return { kind: 'created', id: r.id, outboxId };
      }),
    );
  }

  async getSendApiMessage(token: string, id: string): Promise<SendApiMessage | null> {
    this.check('getSendApiMessage');
    const m = this.stmt(
      'SELECT id, token, outbox_id, created_at FROM send_api_messages WHERE id = ? AND token = ?',
    ).get(id, token) as Row | undefined;
    if (!m) return null;
    const row = this.stmt('SELECT * FROM outbox WHERE id = ?').get(Number(m.outbox_id)) as Row | undefined;
    return {
      id: str(m.id),
      token: str(m.token),
      createdAt: str(m.created_at),
      row: row ? toOutboxRow(row) : null,
    };
  }

  // -- the send pacer's state (delivery/pacer.ts)

  async updateSendPace<T>(
    key: string,
    step: (state: PaceState | null, nowMs: number) => { state: PaceState; result: T },
  ): Promise<{ state: PaceState; result: T; now: number }> {
    this.check('updateSendPace');
    return this.tx(() => {
      const now = Date.now();
      const row = this.stmt('SELECT state FROM send_pace WHERE key = ?').get(key) as Row | undefined;
      const out = step(row ? json<PaceState>(row.state) : null, now);
      this.stmt(
        `INSERT INTO send_pace (key, state, updated_at) VALUES (?, ?, ?)
         ON CONFLICT (key) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`,
      ).run(key, JSON.stringify(out.state), new Date(now).toISOString());
      return { ...out, now };
    });
  }

  async readSendPace(key: string): Promise<PaceState | null> {
    this.check('readSendPace');
    const row = this.stmt('SELECT state FROM send_pace WHERE key = ?').get(key) as Row | undefined;
    return row ? json<PaceState>(row.state) : null;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.statements.clear();
    try {
      this.db.close();
    } finally {
      this.lock?.release();
      this.lock = undefined;
    }
  }
}

// SQLite result codes meaning "this file is not (or no longer) a database we can read":
// SQLITE_CORRUPT 11, SQLITE_CANTOPEN 14, SQLITE_NOTADB 26. Nothing has been written when they occur.
const UNREADABLE_CODES = new Set([11, 14, 26]);

function unreadable(path: string, err: unknown): StoreCorruptError | undefined {
  const code = (err as { errcode?: unknown } | null)?.errcode;
  return typeof code === 'number' && UNREADABLE_CODES.has(code & 0xff)
    ? new StoreCorruptError(path, err)
    : undefined;
}
