// SQLite store (node:sqlite, WAL): the default embedded store for a single daemon.
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite';
import type {
  Checkpoint,
  CheckpointUpdate,
  ClaimOptions,
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
  Store,
} from './types.ts';
import { OUTBOX_STATES } from './types.ts';
import {
  ABANDONED_ERROR,
  ABANDONED_RESEND,
  emptyTotals,
  listLimit,
  normalizeInstant,
  resolutionNote,
  validateClaim,
  validateTtl,
} from './common.ts';
import { LeaseLostError, StoreClosedError, StoreCorruptError } from './errors.ts';
import type { FileLock } from './lock.ts';
import { loadMigrations } from './migrations.ts';

type Row = Record<string, SQLInputValue>;

export interface SqliteStoreOptions {
  readOnly?: boolean;
  /** held for the store's lifetime and released on close() */
  lock?: FileLock;
}

export class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;
  readonly path: string;
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
      // synchronous=FULL, not NORMAL: in WAL mode NORMAL survives a process crash but may lose the
      // last commits on power loss or an OS crash. Losing a committed `sent` outcome would make the
      // row look unsent after reboot and risk a duplicate email; FULL costs one fsync per
      // transaction, and we commit per batch (claim, outcomes, enqueue), which is cheap next to SMTP.
      this.db.exec('PRAGMA synchronous = FULL');
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
      `INSERT INTO outbox (rule, object, record_id, record_created_date, state, message, last_error, last_error_code, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (rule, record_id) DO NOTHING`,
    );
    const upsert = this.stmt(
      `INSERT INTO checkpoints (rule, floor, watermark, replay_id, swept_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (rule) DO UPDATE SET floor = excluded.floor, watermark = excluded.watermark,
         replay_id = CASE WHEN ? THEN excluded.replay_id ELSE checkpoints.replay_id END,
         swept_at = COALESCE(excluded.swept_at, checkpoints.swept_at),
         updated_at = excluded.updated_at`,
    );
    return this.tx(() => {
      // BEGIN IMMEDIATE holds the write lock, so no lease can change hands during this check.
      if (fence && !this.holds(rule, fence, now)) throw new LeaseLostError(rule, fence.holder, fence.epoch);
      upsert.run(rule, floor, watermark, checkpoint.replayId ?? null, sweptAt, now, setReplay);
      let inserted = 0;
      for (const r of rows) {
        const res = insert.run(
          r.rule,
          r.object,
          r.recordId,
          normalizeInstant(r.recordCreatedDate, `recordCreatedDate of ${r.recordId}`),
          r.state,
          r.message === null || r.message === undefined ? null : JSON.stringify(r.message),
          r.lastError ?? null,
          r.lastErrorCode ?? null,
          now,
          now,
        );
        inserted += Number(res.changes);
      }
      return { inserted };
    });
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
           AND (? IS NULL OR rule IN (SELECT value FROM json_each(?)))
         ORDER BY id LIMIT ?)
       RETURNING *`,
    );
    const rows = this.tx(
      () => claim.all(opts.owner, leaseUntil, nowIso, nowIso, rules, rules, opts.limit) as Row[],
    );
    return rows.map(toOutboxRow).sort((a, b) => a.id - b.id);
  }

  async recordOutcomes(owner: string, outcomes: Outcome[]): Promise<void> {
    this.check('recordOutcomes');
    if (outcomes.length === 0) return;
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
    this.tx(() => {
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
    const all = opts.all ? 1 : 0;
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
       RETURNING id`,
    );
    const changedAt = new Date().toISOString();
    const dead = opts.deadOwners ? 1 : 0;
    const rows = this.tx(
      () =>
        recover.all(
          resend,
          resend,
          ABANDONED_RESEND,
          ABANDONED_ERROR,
          changedAt,
          all,
          now,
          dead,
          resend,
          now,
        ) as {
          id: number;
        }[],
    );
    return rows.map((r) => r.id).sort((a, b) => a - b);
  }

  async counts(): Promise<OutboxCounts> {
    this.check('counts');
    const rows = this.stmt('SELECT rule, state, count(*) AS n FROM outbox GROUP BY rule, state').all() as {
      rule: string;
      state: OutboxState;
      n: number;
    }[];
    const out: OutboxCounts = { byRule: {}, total: emptyTotals() };
    for (const r of rows) {
      (out.byRule[r.rule] ??= {})[r.state] = r.n;
      out.total[r.state] += r.n;
    }
    return out;
  }

  async list(filter: OutboxFilter): Promise<OutboxRow[]> {
    this.check('list');
    if (filter.state !== undefined && !OUTBOX_STATES.includes(filter.state)) {
      throw new RangeError(`state must be one of ${OUTBOX_STATES.join(', ')}`);
    }
    const rows = this.stmt(
      `SELECT * FROM outbox WHERE (? IS NULL OR state = ?) AND (? IS NULL OR rule = ?) ORDER BY id DESC LIMIT ?`,
    ).all(
      filter.state ?? null,
      filter.state ?? null,
      filter.rule ?? null,
      filter.rule ?? null,
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

  async nextDueAt(): Promise<Date | null> {
    this.check('nextDueAt');
    // pending rows carry next_attempt_at after a `release` (circuit open); claimDue honours it too.
    const row = this.stmt(
      `SELECT min(next_attempt_at) AS t FROM outbox WHERE state IN ('failed', 'pending') AND next_attempt_at IS NOT NULL`,
    ).get() as { t: string | null };
    return row.t ? new Date(row.t) : null;
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

function str(v: SQLInputValue | undefined): string {
  return String(v);
}
function strOrNull(v: SQLInputValue | undefined): string | null {
  return v === null || v === undefined ? null : String(v);
}
function json<T>(v: SQLInputValue | undefined): T | null {
  return v === null || v === undefined ? null : (JSON.parse(String(v)) as T);
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

function toLease(r: Row): RuleLease {
  return {
    rule: str(r.rule),
    holder: str(r.holder),
    epoch: Number(r.epoch),
    acquiredAt: str(r.acquired_at),
    expiresAt: str(r.expires_at),
  };
}

function toReplica(r: Row): ReplicaInfo {
  return {
    id: str(r.id),
    host: str(r.host),
    pid: Number(r.pid),
    startedAt: str(r.started_at),
    seenAt: str(r.seen_at),
    expiresAt: str(r.expires_at),
  };
}

function toCheckpoint(r: Row): Checkpoint {
  return {
    rule: str(r.rule),
    floor: str(r.floor),
    watermark: str(r.watermark),
    replayId: strOrNull(r.replay_id),
    sweptAt: strOrNull(r.swept_at),
    updatedAt: str(r.updated_at),
  };
}

function toOutboxRow(r: Row): OutboxRow {
  return {
    id: Number(r.id),
    rule: str(r.rule),
    object: str(r.object),
    recordId: str(r.record_id),
    recordCreatedDate: str(r.record_created_date),
    state: str(r.state) as OutboxState,
    message: json(r.message),
    attempts: Number(r.attempts),
    nextAttemptAt: strOrNull(r.next_attempt_at),
    leaseOwner: strOrNull(r.lease_owner),
    leaseUntil: strOrNull(r.lease_until),
    lastError: strOrNull(r.last_error),
    lastErrorCode: strOrNull(r.last_error_code),
    result: json(r.result),
    createdAt: str(r.created_at),
    updatedAt: str(r.updated_at),
    sentAt: strOrNull(r.sent_at),
  };
}
