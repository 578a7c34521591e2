// PostgreSQL store (pg): for several replicas sharing the work. Claims use FOR UPDATE SKIP LOCKED.
import pg from 'pg';
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
  PaceState,
  Store,
} from './types.ts';
import { OUTBOX_STATES } from './types.ts';
import {
  ABANDONED_ERROR,
  ABANDONED_RESEND,
  emptyTotals,
  isoOrNull,
  listLimit,
  normalizeInstant,
  resolutionNote,
  validateClaim,
} from './common.ts';
import { StoreClosedError } from './errors.ts';
import { loadMigrations } from './migrations.ts';

type Row = Record<string, unknown>;

export interface PostgresStoreOptions {
  readOnly?: boolean;
  /** pool size; small, since one replica runs one dispatcher and one poller per rule */
  max?: number;
}

/** Parsed `postgres://...?schema=name`; the schema parameter is ours and is not passed to pg. */
export function parsePostgresUrl(url: string): { connectionString: string; schema: string | null } {
  const u = new URL(url);
  const schema = u.searchParams.get('schema');
  u.searchParams.delete('schema');
  if (schema !== null && !/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(schema)) {
    throw new Error(
      `store URL: schema must be a plain identifier (letters, digits, _), got ${JSON.stringify(schema)}`,
    );
  }
  return { connectionString: u.toString(), schema };
}

/** Deadlocks and serialization failures are safe to retry: the whole transaction rolled back. */
const RETRYABLE = new Set(['40P01', '40001']);

export class PostgresStore implements Store {
  readonly kind = 'postgres' as const;
  readonly schema: string | null;
  private readonly pool: pg.Pool;
  private readonly readOnly: boolean;
  private closed = false;
  private closing: Promise<void> | undefined;
  /** last error of an idle pooled connection (pg drops the client; we must not crash on it) */
  lastPoolError: Error | undefined;

  constructor(url: string, opts: PostgresStoreOptions = {}) {
    const { connectionString, schema } = parsePostgresUrl(url);
    this.schema = schema;
    this.readOnly = opts.readOnly ?? false;
    const settings: string[] = [];
    // search_path set at connection start-up, so every pooled connection sees the schema.
    if (schema) settings.push(`-c search_path=${schema}`);
    if (this.readOnly) settings.push('-c default_transaction_read_only=on');
    this.pool = new pg.Pool({
      connectionString,
      max: opts.max ?? 4,
      idleTimeoutMillis: 30_000,
      connectionTimeoutMillis: 10_000,
      ...(settings.length > 0 ? { options: settings.join(' ') } : {}),
    });
    this.pool.on('error', (err) => {
      this.lastPoolError = err;
    });
  }

  private check(method: string): void {
    if (this.closed) throw new StoreClosedError('postgres', method);
  }

  private async q(sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
    return this.pool.query(sql, params);
  }

  private async tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.pool.connect();
      try {
        await client.query('BEGIN');
        const out = await fn(client);
        await client.query('COMMIT');
        client.release();
        return out;
      } catch (err) {
        try {
          await client.query('ROLLBACK');
          client.release();
        } catch (rollbackErr) {
          client.release(rollbackErr as Error); // broken connection: discard it
        }
        const code = (err as { code?: string }).code;
        if (code && RETRYABLE.has(code) && attempt < 3) continue;
        throw err;
      }
    }
  }

  async migrate(): Promise<void> {
    this.check('migrate');
    const migrations = loadMigrations('postgres');
    if (this.readOnly) return;
    if (this.schema) {
      // Concurrent CREATE SCHEMA IF NOT EXISTS can still collide on the catalog: serialise it.
      await this.tx(async (c) => {
        await c.query(`SELECT pg_advisory_xact_lock(hashtext('lead_notifier_schema'), hashtext($1))`, [
          this.schema,
        ]);
        await c.query(`CREATE SCHEMA IF NOT EXISTS "${this.schema}"`);
      });
    }
    await this.tx(async (c) => {
      // Replicas starting together queue here; the second one then finds everything applied.
      await c.query(
        `SELECT pg_advisory_xact_lock(hashtext('lead_notifier_migrations'), hashtext(current_schema()))`,
      );
      await c.query(
        `CREATE TABLE IF NOT EXISTS lead_notifier_migrations (
           version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      const { rows } = await c.query('SELECT coalesce(max(version), 0) AS v FROM lead_notifier_migrations');
      const latest = Number((rows[0] as { v: number }).v);
      for (const m of migrations) {
        if (m.version <= latest) continue;
        // The migration row goes in first: should two runners ever get here, the second fails on the
        // primary key before touching the schema.
        await c.query('INSERT INTO lead_notifier_migrations (version, name) VALUES ($1, $2)', [
          m.version,
          m.name,
        ]);
        await c.query(m.sql);
      }
    });
  }

  async getCheckpoint(rule: string): Promise<Checkpoint | null> {
    this.check('getCheckpoint');
    const { rows } = await this.q('SELECT * FROM checkpoints WHERE rule = $1', [rule]);
    return rows[0] ? toCheckpoint(rows[0] as Row) : null;
  }

  async listCheckpoints(): Promise<Checkpoint[]> {
    this.check('listCheckpoints');
    const { rows } = await this.q('SELECT * FROM checkpoints ORDER BY rule');
    return (rows as Row[]).map(toCheckpoint);
  }

  async commitBatch(
    rule: string,
    rows: NewOutboxRow[],
    checkpoint: CheckpointUpdate,
  ): Promise<{ inserted: number }> {
    this.check('commitBatch');
    const floor = normalizeInstant(checkpoint.floor, 'checkpoint floor');
    const watermark = normalizeInstant(checkpoint.watermark, 'checkpoint watermark');
    // Sorted by key: overlapping batches then take row locks in the same order and cannot deadlock.
    const sorted = [...rows].sort((a, b) => cmp(a.rule, b.rule) || cmp(a.recordId, b.recordId));
    const cols = {
      rule: [] as unknown[],
      object: [] as unknown[],
      recordId: [] as unknown[],
      created: [] as unknown[],
      state: [] as unknown[],
      message: [] as unknown[],
      lastError: [] as unknown[],
      lastErrorCode: [] as unknown[],
    };
    for (const r of sorted) {
      cols.rule.push(r.rule);
      cols.object.push(r.object);
      cols.recordId.push(r.recordId);
      cols.created.push(normalizeInstant(r.recordCreatedDate, `recordCreatedDate of ${r.recordId}`));
      cols.state.push(r.state);
      cols.message.push(r.message === null || r.message === undefined ? null : JSON.stringify(r.message));
      cols.lastError.push(r.lastError ?? null);
      cols.lastErrorCode.push(r.lastErrorCode ?? null);
    }
    return this.tx(async (c) => {
      // Checkpoint first: batches for one rule serialise on its row, and a failing insert below
      // rolls this back too.
      await c.query(
        `INSERT INTO checkpoints (rule, floor, watermark, replay_id, swept_at, updated_at) VALUES ($1, $2, $3, $4, $6, now())
         ON CONFLICT (rule) DO UPDATE SET floor = excluded.floor, watermark = excluded.watermark,
           replay_id = CASE WHEN $5 THEN excluded.replay_id ELSE checkpoints.replay_id END,
           swept_at = COALESCE(excluded.swept_at, checkpoints.swept_at),
           updated_at = excluded.updated_at`,
        [
          rule,
          floor,
          watermark,
          checkpoint.replayId ?? null,
          checkpoint.replayId !== undefined,
          checkpoint.sweptAt === undefined
            ? null
            : normalizeInstant(checkpoint.sweptAt, 'checkpoint sweptAt'),
        ],
      );
      if (sorted.length === 0) return { inserted: 0 };
      // One statement for the whole batch (unnest of column arrays): one round trip for 2,000 rows.
      const res = await c.query(
        `INSERT INTO outbox (rule, object, record_id, record_created_date, state, message, last_error, last_error_code)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::json[], $7::text[], $8::text[])
         ON CONFLICT (rule, record_id) DO NOTHING`,
        [
          cols.rule,
          cols.object,
          cols.recordId,
          cols.created,
          cols.state,
          cols.message,
          cols.lastError,
          cols.lastErrorCode,
        ],
      );
      return { inserted: res.rowCount ?? 0 };
    });
  }

  async claimDue(opts: ClaimOptions): Promise<OutboxRow[]> {
    this.check('claimDue');
    validateClaim(opts.limit, opts.leaseMs);
    if (opts.limit === 0) return [];
    const rules = opts.rules && opts.rules.length > 0 ? opts.rules : null;
    // Without an explicit `now` the database clock decides, so replicas with skewed clocks agree on leases.
    const { rows } = await this.q(
      `WITH t AS (SELECT coalesce($1::timestamptz, now()) AS now),
       due AS (
         SELECT id FROM outbox, t
         WHERE state IN ('pending', 'failed') AND (next_attempt_at IS NULL OR next_attempt_at <= t.now)
           AND ($2::text[] IS NULL OR rule = ANY($2::text[]))
         ORDER BY id LIMIT $3
         FOR UPDATE OF outbox SKIP LOCKED)
       UPDATE outbox o SET state = 'sending', lease_owner = $4,
         lease_until = t.now + $5::double precision * interval '1 millisecond',
         attempts = o.attempts + 1, updated_at = t.now
       FROM due, t WHERE o.id = due.id
       RETURNING o.*`,
      [opts.now ?? null, rules, opts.limit, opts.owner, opts.leaseMs],
    );
    return (rows as Row[]).map(toOutboxRow).sort((a, b) => a.id - b.id);
  }

  async recordOutcomes(owner: string, outcomes: Outcome[]): Promise<void> {
    this.check('recordOutcomes');
    if (outcomes.length === 0) return;
    const guard = `WHERE id = $1 AND state = 'sending' AND lease_owner = $2`;
    const clear = `lease_owner = NULL, lease_until = NULL, updated_at = now()`;
    await this.tx(async (c) => {
      for (const o of outcomes) {
        switch (o.kind) {
          case 'sent':
            await c.query(
              `UPDATE outbox SET state = 'sent', result = $3, sent_at = now(), ${clear} ${guard}`,
              [o.id, owner, JSON.stringify(o.result)],
            );
            break;
          case 'retry':
            await c.query(
              `UPDATE outbox SET state = 'failed', last_error = $3, next_attempt_at = $4, last_error_code = $5, ${clear} ${guard}`,
              [o.id, owner, o.error, o.nextAttemptAt, o.code ?? null],
            );
            break;
          case 'dead':
            await c.query(
              `UPDATE outbox SET state = 'dead', last_error = $3, last_error_code = $4, ${clear} ${guard}`,
              [o.id, owner, o.error, o.code ?? null],
            );
            break;
          case 'release':
            await c.query(
              `UPDATE outbox SET state = 'pending', attempts = greatest(attempts - 1, 0), last_error = $3,
                 next_attempt_at = $4, last_error_code = $5, ${clear} ${guard}`,
              [o.id, owner, o.error, o.nextAttemptAt, o.code ?? null],
            );
            break;
          case 'uncertain':
            await c.query(
              `UPDATE outbox SET state = 'unknown', last_error = $3, last_error_code = $4, ${clear} ${guard}`,
              [o.id, owner, o.error, o.code ?? null],
            );
            break;
          default:
            throw new TypeError(`unknown outcome kind: ${JSON.stringify((o as { kind: unknown }).kind)}`);
        }
      }
    });
  }

  /** `all` is ignored: other replicas may be alive and sending, so only expired leases count. */
  async recoverAbandoned(opts: { now?: Date; resendRules?: string[]; all?: boolean }): Promise<number[]> {
    this.check('recoverAbandoned');
    const { rows } = await this.q(
      `UPDATE outbox SET
         state = CASE WHEN rule = ANY($2::text[]) THEN 'pending' ELSE 'unknown' END,
         last_error = CASE WHEN rule = ANY($2::text[]) THEN $3 ELSE $4 END,
         last_error_code = 'EABANDONED',
         next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL, updated_at = now()
       WHERE state = 'sending' AND lease_until < coalesce($1::timestamptz, now())
       RETURNING id`,
      [opts.now ?? null, opts.resendRules ?? [], ABANDONED_RESEND, ABANDONED_ERROR],
    );
    return (rows as { id: string }[]).map((r) => Number(r.id)).sort((a, b) => a - b);
  }

  async counts(): Promise<OutboxCounts> {
    this.check('counts');
    const { rows } = await this.q('SELECT rule, state, count(*)::int AS n FROM outbox GROUP BY rule, state');
    const out: OutboxCounts = { byRule: {}, total: emptyTotals() };
    for (const r of rows as { rule: string; state: OutboxState; n: number }[]) {
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
    const { rows } = await this.q(
      `SELECT * FROM outbox WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR rule = $2)
       ORDER BY id DESC LIMIT $3`,
      [filter.state ?? null, filter.rule ?? null, listLimit(filter.limit)],
    );
    return (rows as Row[]).map(toOutboxRow);
  }

  async existingRecordIds(rule: string, recordIds: string[]): Promise<Set<string>> {
    this.check('existingRecordIds');
    const found = new Set<string>();
    if (recordIds.length === 0) return found;
    const { rows } = await this.q(
      'SELECT record_id FROM outbox WHERE rule = $1 AND record_id = ANY($2::text[])',
      [rule, recordIds],
    );
    for (const r of rows as Row[]) found.add(String(r.record_id));
    return found;
  }

  async get(id: number): Promise<OutboxRow | null> {
    this.check('get');
    const { rows } = await this.q('SELECT * FROM outbox WHERE id = $1', [id]);
    return rows[0] ? toOutboxRow(rows[0] as Row) : null;
  }

  async retry(id: number): Promise<boolean> {
    this.check('retry');
    // last_error is kept as history; rows without a message (render failed) cannot be sent.
    const res = await this.q(
      `UPDATE outbox SET state = 'pending', next_attempt_at = now(), lease_owner = NULL, lease_until = NULL, updated_at = now()
       WHERE id = $1 AND state IN ('dead', 'failed', 'unknown') AND message IS NOT NULL`,
      [id],
    );
    return res.rowCount === 1;
  }

  async retryAllDead(): Promise<number> {
    this.check('retryAllDead');
    const res = await this.q(
      `UPDATE outbox SET state = 'pending', next_attempt_at = now(), updated_at = now()
       WHERE state = 'dead' AND message IS NOT NULL`,
    );
    return res.rowCount ?? 0;
  }

  async resolve(id: number, as: 'sent' | 'dead', note?: string): Promise<boolean> {
    this.check('resolve');
    if (as !== 'sent' && as !== 'dead') throw new RangeError("resolve: as must be 'sent' or 'dead'");
    return this.tx(async (c) => {
      const { rows } = await c.query(
        `SELECT last_error FROM outbox WHERE id = $1 AND state = 'unknown' FOR UPDATE`,
        [id],
      );
      const row = rows[0] as { last_error: string | null } | undefined;
      if (!row) return false;
      await c.query(`UPDATE outbox SET state = $2, last_error = $3, updated_at = now() WHERE id = $1`, [
        id,
        as,
        resolutionNote(row.last_error, as, note),
      ]);
      return true;
    });
  }

  async lastErrors(limit: number): Promise<OutboxRow[]> {
    this.check('lastErrors');
    const { rows } = await this.q(
      `SELECT * FROM outbox WHERE state IN ('dead', 'failed', 'unknown') AND last_error IS NOT NULL
       ORDER BY updated_at DESC, id DESC LIMIT $1`,
      [listLimit(limit)],
    );
    return (rows as Row[]).map(toOutboxRow);
  }

  async nextDueAt(): Promise<Date | null> {
    this.check('nextDueAt');
    const { rows } = await this.q(
      `SELECT min(next_attempt_at) AS t FROM outbox WHERE state IN ('failed', 'pending') AND next_attempt_at IS NOT NULL`,
    );
    const t = (rows[0] as { t: Date | null } | undefined)?.t;
    return t ? new Date(t) : null;
  }

  // -- the send pacer's state (delivery/pacer.ts)

  async updateSendPace<T>(
    key: string,
    step: (state: PaceState | null, nowMs: number) => { state: PaceState; result: T },
  ): Promise<{ state: PaceState; result: T; now: number }> {
    this.check('updateSendPace');
    return this.tx(async (c) => {
      await c.query('INSERT INTO send_pace (key) VALUES ($1) ON CONFLICT (key) DO NOTHING', [key]);
      // the row lock queues replicas; the database's clock is the one they all read
      const r = await c.query(
        `SELECT state, (extract(epoch from clock_timestamp()) * 1000)::float8 AS now_ms
         FROM send_pace WHERE key = $1 FOR UPDATE`,
        [key],
      );
      const row = r.rows[0] as Row;
      const now = Math.floor(Number(row.now_ms));
      const out = step((row.state as PaceState | null) ?? null, now);
      await c.query('UPDATE send_pace SET state = $2, updated_at = now() WHERE key = $1', [
        key,
        JSON.stringify(out.state),
      ]);
      return { ...out, now };
    });
  }

  async readSendPace(key: string): Promise<PaceState | null> {
    this.check('readSendPace');
    const r = await this.q('SELECT state FROM send_pace WHERE key = $1', [key]);
    return ((r.rows[0] as Row | undefined)?.state as PaceState | null | undefined) ?? null;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.closing ??= this.pool.end();
    await this.closing;
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function iso(v: unknown): string {
  return isoOrNull(v as Date | string) ?? '';
}

function toCheckpoint(r: Row): Checkpoint {
  return {
    rule: String(r.rule),
    floor: iso(r.floor),
    watermark: iso(r.watermark),
    replayId: (r.replay_id as string | null) ?? null,
    sweptAt: r.swept_at === null || r.swept_at === undefined ? null : iso(r.swept_at),
    updatedAt: iso(r.updated_at),
  };
}

function toOutboxRow(r: Row): OutboxRow {
  return {
    id: Number(r.id),
    rule: String(r.rule),
    object: String(r.object),
    recordId: String(r.record_id),
    recordCreatedDate: iso(r.record_created_date),
    state: r.state as OutboxState,
    message: (r.message as OutboxRow['message']) ?? null,
    attempts: Number(r.attempts),
    nextAttemptAt: isoOrNull(r.next_attempt_at as Date | null),
    leaseOwner: (r.lease_owner as string | null) ?? null,
    leaseUntil: isoOrNull(r.lease_until as Date | null),
    lastError: (r.last_error as string | null) ?? null,
    lastErrorCode: (r.last_error_code as string | null) ?? null,
    result: (r.result as OutboxRow['result']) ?? null,
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
    sentAt: isoOrNull(r.sent_at as Date | null),
  };
}
