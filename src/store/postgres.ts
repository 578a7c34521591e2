// PostgreSQL store (pg): for several replicas sharing the work. Claims use FOR UPDATE SKIP LOCKED.
import pg from 'pg';
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
import type { ChannelName } from '../types.ts';
import {
  abandonedMessages,
  tallyCounts,
  listLimit,
  normalizeInstant,
  outboxValues,
  resolutionNote,
  validateClaim,
  validateTtl,
} from './common.ts';
import { LeaseLostError, StoreClosedError, StoreUnavailableError } from './errors.ts';
import { loadMigrations } from './migrations.ts';
import {
  CONNECTION_RETRY_DELAYS_MS,
  describePostgresUrl,
  isConnectionError,
  parsePostgresUrl,
  RETRYABLE,
} from './postgres-connection.ts';

export { describePostgresUrl, isConnectionError, parsePostgresUrl } from './postgres-connection.ts';
import {
  cmp,
  iso,
  readDigest,
  toCheckpoint,
  toLease,
  toOutboxRow,
  toReplica,
  writeDigestItems,
  writeMatchStates,
} from './postgres-rows.ts';

type Row = Record<string, unknown>;

export interface PostgresStoreOptions {
  readOnly?: boolean;
  /** pool size; small, since one replica runs one dispatcher and one poller per rule */
  max?: number;
  /** shown in pg_stat_activity: which replica a connection belongs to */
  applicationName?: string;
  /** server-side statement_timeout (ms); default 30 s */
  statementTimeoutMs?: number;
  /** how long to wait for a new connection (ms); default 10 s */
  connectTimeoutMs?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms).unref());

interface Safety {
  /** the operation may run again after a dead connection (a read, or an idempotent write) */
  safe: boolean;
  method: string;
}

export class PostgresStore implements Store {
  readonly kind = 'postgres' as const;
  readonly schema: string | null;
  private readonly pool: pg.Pool;
  /** the most connections this store opens */
  readonly poolSize: number;
  private readonly readOnly: boolean;
  private closed = false;
  private closing: Promise<void> | undefined;
  /** last error of an idle pooled connection (pg drops the client; we must not crash on it) */
  lastPoolError: Error | undefined;
  /** last error of a connection that died while a statement or transaction held it */
  lastConnectionError: Error | undefined;
  /** the database is gone since the first failure of an operation for it; cleared by the next success */
  private down: { reason: string; since: string } | null = null;
  /** for messages: the database without credentials */
  readonly where: string;

  constructor(url: string, opts: PostgresStoreOptions = {}) {
    const { connectionString, schema } = parsePostgresUrl(url);
    this.schema = schema;
    this.readOnly = opts.readOnly ?? false;
    const settings: string[] = [];
    // search_path set at connection start-up, so every pooled connection sees the schema.
    if (schema) settings.push(`-c search_path=${schema}`);
    if (this.readOnly) settings.push('-c default_transaction_read_only=on');
    this.where = describePostgresUrl(connectionString);
    // TLS for managed PostgreSQL comes from the URL (pg-connection-string): sslmode=require |
    // verify-ca | verify-full, sslrootcert=<CA file>, sslcert/sslkey for client certificates.
    this.poolSize = opts.max ?? 4;
    this.pool = new pg.Pool({
      connectionString,
      max: this.poolSize,
      idleTimeoutMillis: 30_000,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000,
      application_name: opts.applicationName ?? 'lead-notifier',
      statement_timeout: opts.statementTimeoutMs ?? 30_000,
      // a transaction left open by a stuck client must not hold row locks for ever
      idle_in_transaction_session_timeout: 60_000,
      // TCP keepalives notice a peer that vanished (failover) instead of waiting on a dead socket
      keepAlive: true,
      ...(settings.length > 0 ? { options: settings.join(' ') } : {}),
    });
    // An idle pooled connection that dies: pg-pool discards it and emits here; without a listener
    // the process would crash. The next checkout opens a fresh connection.
    this.pool.on('error', (err) => {
      this.lastPoolError = err;
    });
  }

  private check(method: string): void {
    if (this.closed) throw new StoreClosedError('postgres', method);
  }

  /** One statement on a pooled connection (pg-pool guards a client it lends to pool.query). */
  private async q(
    sql: string,
    params: unknown[] = [],
    safety: Safety = { safe: true, method: 'query' },
  ): Promise<pg.QueryResult> {
    return this.withReconnect(safety, () => this.pool.query(sql, params));
  }

  /**
   * Run `op`; when its connection died (or none could be had), run it again after a backoff if
   * it is safe to, else, or once the attempts are spent, raise StoreUnavailableError: a retryable
   * failure of the caller's step, never a crash.
   */
  private async withReconnect<T>(safety: Safety, op: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        const out = await op();
        this.down = null;
        return out;
      } catch (err) {
        if (!isConnectionError(err)) throw err;
        this.lastConnectionError = err as Error;
        this.down ??= {
          reason: `PostgreSQL store ${this.where} unreachable: ${(err as Error).message}`,
          since: new Date().toISOString(),
        };
        const delay = CONNECTION_RETRY_DELAYS_MS[attempt];
        if (!safety.safe || delay === undefined || this.closed) {
          throw new StoreUnavailableError(`PostgreSQL store ${this.where}`, safety.method, err);
        }
        await sleep(delay);
      }
    }
  }

  /**
   * Why the store cannot be used right now: an operation failed because its connection died or
   * none could be made, and none has succeeded since. Null while it works.
   */
  connectionProblem(): { reason: string; since: string } | null {
    return this.down;
  }

  private async tx<T>(
    fn: (c: pg.PoolClient) => Promise<T>,
    safety: Safety = { safe: false, method: 'transaction' },
  ): Promise<T> {
    return this.withReconnect(safety, () => this.txOnce(fn));
  }

  /**
   * Check a client out with an 'error' listener attached in the same tick. pg-pool only guards
   * idle clients, and with the promise form of connect() the listener would be added a microtask
   * later: the server's FATAL message can arrive in the same socket read as the previous query's
   * reply and be emitted in between, an unhandled 'error' that kills the process.
   */
  private checkout(): Promise<{
    client: pg.PoolClient;
    guard: { broken?: Error };
    onError: (e: Error) => void;
  }> {
    return new Promise((resolve, reject) => {
      this.pool.connect((err, client) => {
        if (err || !client) {
          reject(err ?? new Error('pool gave no client'));
          return;
        }
        const guard: { broken?: Error } = {};
        const onError = (e: Error) => {
          guard.broken = e;
          this.lastConnectionError = e;
        };
        client.on('error', onError);
        resolve({ client, guard, onError });
      });
    });
  }

  private async txOnce<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      // The listener only has to remember the error: the failing query rejects as well. A client
      // that saw one is discarded on release.
      const { client, guard, onError } = await this.checkout();
      const release = (err?: Error) => {
        client.removeListener('error', onError);
        client.release(err ?? guard.broken);
      };
      try {
        await client.query('BEGIN');
        const out = await fn(client);
        await client.query('COMMIT');
        release();
        return out;
      } catch (err) {
        try {
          if (!guard.broken) await client.query('ROLLBACK');
          release();
        } catch (rollbackErr) {
          release(rollbackErr as Error); // broken connection: discard it
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
      await this.tx(
        async (c) => {
          await c.query(`SELECT pg_advisory_xact_lock(hashtext('lead_notifier_schema'), hashtext($1))`, [
            this.schema,
          ]);
          await c.query(`CREATE SCHEMA IF NOT EXISTS "${this.schema}"`);
        },
        { safe: true, method: 'migrate' },
      );
    }
    await this.tx(
      async (c) => {
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
      },
      { safe: true, method: 'migrate' },
    );
  }

  /**
   * What the server allows against what this pool may take: `free` is max_connections less the
   * superuser reserve and the connections open now (every replica's, and everyone else's).
   */
  async connectionBudget(): Promise<{
    max: number;
    reserved: number;
    open: number;
    free: number;
    pool: number;
  }> {
    this.check('connectionBudget');
    const { rows } = await this.q(
      `SELECT current_setting('max_connections')::int AS max,
              current_setting('superuser_reserved_connections')::int AS reserved,
              (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend') AS open`,
    );
    const r = rows[0] as { max: number; reserved: number; open: number };
    return { ...r, free: r.max - r.reserved - r.open, pool: this.poolSize };
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
    extra?: BatchExtra,
    fence?: LeaseFence,
  ): Promise<{ inserted: number }> {
    this.check('commitBatch');
    const floor = normalizeInstant(checkpoint.floor, 'checkpoint floor');
    const watermark = normalizeInstant(checkpoint.watermark, 'checkpoint watermark');
    // Sorted by key: overlapping batches then take row locks in the same order and cannot deadlock.
    const sorted = [...rows].sort(
      (a, b) =>
        cmp(a.rule, b.rule) || cmp(a.recordId, b.recordId) || cmp(a.channel ?? 'email', b.channel ?? 'email'),
    );
    const cols = {
      rule: [] as unknown[],
      object: [] as unknown[],
      recordId: [] as unknown[],
      created: [] as unknown[],
      state: [] as unknown[],
      message: [] as unknown[],
      lastError: [] as unknown[],
      lastErrorCode: [] as unknown[],
      channel: [] as unknown[],
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
      cols.channel.push(r.channel ?? 'email');
    }
    return this.tx(
      async (c) => {
        if (fence) {
          // FOR SHARE: a replica taking the lease over (an UPDATE of this row) waits until this
          // commit is done, so no write of the old epoch can land after the new epoch began.
          const held = await c.query(
            `SELECT 1 FROM rule_leases WHERE rule = $1 AND holder = $2 AND epoch = $3 AND expires_at > now() FOR SHARE`,
            [rule, fence.holder, fence.epoch],
          );
          if (held.rowCount !== 1) throw new LeaseLostError(rule, fence.holder, fence.epoch);
        }
        // Checkpoint first: batches for one rule serialise on its row, and a failing insert below
        // rolls this back too.
        await c.query(
          `INSERT INTO checkpoints (rule, floor, watermark, replay_id, swept_at, last_id, updated_at) VALUES ($1, $2, $3, $4, $6, $7, now())
         ON CONFLICT (rule) DO UPDATE SET floor = excluded.floor, watermark = excluded.watermark,
           last_id = excluded.last_id,
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
            checkpoint.lastId ?? null,
          ],
        );
        let items = 0;
        if (extra) {
          await writeMatchStates(c, rule, extra);
          items = await writeDigestItems(c, rule, extra);
        }
        if (sorted.length === 0) return { inserted: items };
        // One statement for the whole batch (unnest of column arrays): one round trip for 2,000 rows.
        const res = await c.query(
          `INSERT INTO outbox (rule, object, record_id, record_created_date, state, message, last_error, last_error_code, channel)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::json[], $7::text[], $8::text[], $9::text[])
         ON CONFLICT (rule, record_id, channel) DO NOTHING`,
          [
            cols.rule,
            cols.object,
            cols.recordId,
            cols.created,
            cols.state,
            cols.message,
            cols.lastError,
            cols.lastErrorCode,
            cols.channel,
          ],
        );
        return { inserted: (res.rowCount ?? 0) + items };
      },
      // the ledger, the match states' modstamp guard, the digest items' key and the fence make a
      // repeat harmless
      { safe: true, method: 'commitBatch' },
    );
  }

  async openDigestItems(rule: string, maxRecords: number): Promise<DigestContent> {
    this.check('openDigestItems');
    const c = await this.pool.connect();
    try {
      const { items, count, since } = await readDigest(c, rule, maxRecords, false);
      return { items, count, since };
    } finally {
      c.release();
    }
  }

  async commitDigest(
    rule: string,
    opts: { until: string; maxRecords: number; build: (content: DigestContent) => NewOutboxRow | null },
  ): Promise<{ outboxId: number | null; count: number }> {
    this.check('commitDigest');
    const until = normalizeInstant(opts.until, 'digest until');
    return this.tx(async (c) => {
      const { ids, items, count, since } = await readDigest(c, rule, opts.maxRecords, true);
      const row = opts.build({ items, count, since });
      if (!row) return { outboxId: null, count: 0 };
      const res = await c.query(
        `INSERT INTO outbox (rule, object, record_id, record_created_date, state, message, last_error, last_error_code, channel)
         VALUES ($1, $2, $3, $4, $5, $6::json, $7, $8, $9) ON CONFLICT (rule, record_id, channel) DO NOTHING RETURNING id`,
        [...outboxValues(row, 'digest recordCreatedDate'), row.channel ?? 'email'],
      );
      // this digest (rule + key) went out already (another replica, or before a restart)
      const inserted = res.rows[0] as Row | undefined;
      if (!inserted) return { outboxId: null, count: 0 };
      const outboxId = Number(inserted.id);
      await c.query('UPDATE digest_items SET digest_outbox_id = $1 WHERE id = ANY($2::bigint[])', [
        outboxId,
        ids,
      ]);
      await c.query('INSERT INTO digests (rule, until, outbox_id, count) VALUES ($1, $2, $3, $4)', [
        rule,
        until,
        outboxId,
        count,
      ]);
      return { outboxId, count };
    });
  }

  async getMatchStates(rule: string, recordIds: string[]): Promise<Map<string, MatchState>> {
    this.check('getMatchStates');
    const out = new Map<string, MatchState>();
    if (recordIds.length === 0) return out;
    const { rows } = await this.q(
      'SELECT * FROM match_state WHERE rule = $1 AND record_id = ANY($2::text[])',
      [rule, recordIds],
    );
    for (const r of rows as Row[]) {
      out.set(String(r.record_id), {
        recordId: String(r.record_id),
        matched: r.matched === true,
        watched: (r.watched ?? null) as Record<string, unknown> | null,
        systemModstamp: (r.system_modstamp as Date).toISOString(),
      });
    }
    return out;
  }

  async firstMessageIds(recordIds: string[]): Promise<Map<string, string>> {
    this.check('firstMessageIds');
    const out = new Map<string, string>();
    if (recordIds.length === 0) return out;
    const { rows } = await this.q(
      // rows keyed `<Id>` (created) or `<Id>.<version>` (updates); the text_pattern_ops index
      // serves both the equality and the prefix match
      `SELECT DISTINCT ON (i.id) i.id AS record_id, o.message->>'messageId' AS message_id
       FROM unnest($1::text[]) AS i(id)
       JOIN outbox o ON (o.record_id = i.id OR o.record_id LIKE i.id || '.%') AND o.message IS NOT NULL
         AND o.channel = 'email'
       ORDER BY i.id, o.id`,
      [recordIds],
    );
    for (const r of rows as Row[]) {
      if (typeof r.message_id === 'string') out.set(String(r.record_id), r.message_id);
    }
    return out;
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
           AND (lease_until IS NULL OR lease_until < t.now)
           AND ($2::text[] IS NULL OR rule = ANY($2::text[]))
           AND ($6::text IS NULL OR channel = $6)
         ORDER BY id LIMIT $3
         FOR UPDATE OF outbox SKIP LOCKED)
       UPDATE outbox o SET state = 'sending', lease_owner = $4,
         lease_until = t.now + $5::double precision * interval '1 millisecond',
         attempts = o.attempts + 1, updated_at = t.now
       FROM due, t WHERE o.id = due.id
       RETURNING o.*`,
      [opts.now ?? null, rules, opts.limit, opts.owner, opts.leaseMs, opts.channel ?? null],
      // not repeated: a claim that committed but whose reply was lost would lease rows twice over
      { safe: false, method: 'claimDue' },
    );
    return (rows as Row[]).map(toOutboxRow).sort((a, b) => a.id - b.id);
  }

  async recordOutcomes(owner: string, outcomes: Outcome[]): Promise<void> {
    this.check('recordOutcomes');
    if (outcomes.length === 0) return;
    // owner-fenced: a repeat changes nothing
    await this.tx((c) => this.writeOutcomes(c, owner, outcomes), { safe: true, method: 'recordOutcomes' });
  }

  /** inside a transaction */
  private async writeOutcomes(c: pg.PoolClient, owner: string, outcomes: Outcome[]): Promise<void> {
    const guard = `WHERE id = $1 AND state = 'sending' AND lease_owner = $2`;
    const clear = `lease_owner = NULL, lease_until = NULL, updated_at = now()`;
    {
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
    }
  }

  async cycle(opts: CycleOptions): Promise<CycleResult> {
    this.check('cycle');
    const claim = opts.claim ?? 0;
    const reserve = opts.reserve ?? 0;
    validateClaim(claim + reserve, opts.leaseMs);
    const lease = `coalesce($1::timestamptz, now()) + $2::double precision * interval '1 millisecond'`;
    return this.tx(
      async (c) => {
        if (opts.outcomes?.length) await this.writeOutcomes(c, opts.owner, opts.outcomes);
        if (opts.release?.length) {
          await c.query(
            `UPDATE outbox SET lease_owner = NULL, lease_until = NULL, updated_at = now()
           WHERE id = ANY($1::bigint[]) AND state IN ('pending', 'failed') AND lease_owner = $2`,
            [opts.release, opts.owner],
          );
        }
        let reclaimed: number[] | undefined;
        if (opts.reclaim) {
          // a failed row keeps its state; a sending one was never sent: pending, attempt not counted
          const { rows } = await c.query(
            `UPDATE outbox SET lease_owner = NULL, lease_until = NULL, updated_at = now(),
               state = CASE WHEN state = 'sending' THEN 'pending' ELSE state END,
               attempts = CASE WHEN state = 'sending' THEN greatest(attempts - 1, 0) ELSE attempts END
             WHERE lease_owner = $1 AND state IN ('sending', 'pending', 'failed') AND NOT id = ANY($2::bigint[])
               AND ($3::text IS NULL OR channel = $3)
             RETURNING id`,
            [opts.owner, opts.reclaim, opts.channel ?? null],
          );
          reclaimed = (rows as { id: string }[]).map((r) => Number(r.id)).sort((a, b) => a - b);
        }
        let started: number[] = [];
        if (opts.start?.length) {
          const { rows } = await c.query(
            `UPDATE outbox SET state = 'sending', attempts = attempts + 1, lease_until = ${lease}, updated_at = now()
           WHERE id = ANY($3::bigint[]) AND state IN ('pending', 'failed') AND lease_owner = $4
           RETURNING id`,
            [opts.now ?? null, opts.leaseMs, opts.start, opts.owner],
          );
          started = (rows as { id: string }[]).map((r) => Number(r.id)).sort((a, b) => a - b);
        }
        const claimed: OutboxRow[] = [];
        const reserved: OutboxRow[] = [];
        if (claim + reserve > 0) {
          // the first `claim` due rows go to sending, the next `reserve` only take the lease
          const { rows } = await c.query(
            `WITH t AS (SELECT coalesce($1::timestamptz, now()) AS now),
           due AS (
             SELECT id, row_number() OVER (ORDER BY id) AS n FROM (
               SELECT id FROM outbox, t
               WHERE state IN ('pending', 'failed') AND (next_attempt_at IS NULL OR next_attempt_at <= t.now)
                 AND (lease_until IS NULL OR lease_until < t.now)
                 AND ($6::text IS NULL OR channel = $6)
               ORDER BY id LIMIT $3
               FOR UPDATE OF outbox SKIP LOCKED) d)
           UPDATE outbox o SET lease_owner = $4, lease_until = ${lease}, updated_at = t.now,
             state = CASE WHEN due.n <= $5 THEN 'sending' ELSE o.state END,
             attempts = CASE WHEN due.n <= $5 THEN o.attempts + 1 ELSE o.attempts END
           FROM due, t WHERE o.id = due.id
           RETURNING o.*`,
            [opts.now ?? null, opts.leaseMs, claim + reserve, opts.owner, claim, opts.channel ?? null],
          );
          for (const r of (rows as Row[]).map(toOutboxRow).sort((a, b) => a.id - b.id)) {
            (r.state === 'sending' ? claimed : reserved).push(r);
          }
        }
        return { started, claimed, reserved, ...(reclaimed ? { reclaimed } : {}) };
      },
      // not repeated: a cycle that committed but whose reply was lost would claim rows twice over
      { safe: false, method: 'cycle' },
    );
  }

  /** `all` is ignored: other replicas may be alive and sending, so only expired leases count. */
  async recoverAbandoned(opts: RecoverOptions): Promise<number[]> {
    this.check('recoverAbandoned');
    const onlySelf = opts.onlySelf === true && opts.self !== undefined;
    const msg = abandonedMessages(onlySelf);
    const { rows } = await this.q(
      `WITH t AS (SELECT coalesce($1::timestamptz, now()) AS now)
       UPDATE outbox SET
         state = CASE WHEN rule = ANY($2::text[]) THEN 'pending' ELSE 'unknown' END,
         last_error = CASE WHEN rule = ANY($2::text[]) THEN $3 ELSE $4 END,
         last_error_code = 'EABANDONED',
         next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL, updated_at = now()
       FROM t
       WHERE state = 'sending' AND (lease_until < t.now
         OR ($5 AND NOT rule = ANY($2::text[]) AND lease_owner IN (
           SELECT id FROM cluster_replicas WHERE expires_at + (expires_at - seen_at) < t.now)))
         AND ($6::text IS NULL OR CASE WHEN $7 THEN lease_owner = $6 ELSE lease_owner IS DISTINCT FROM $6 END)
       RETURNING id`,
      [
        opts.now ?? null,
        opts.resendRules ?? [],
        msg.resend,
        msg.uncertain,
        (opts.deadOwners ?? false) && !onlySelf,
        opts.self ?? null,
        onlySelf,
      ],
      { safe: true, method: 'recoverAbandoned' },
    );
    return (rows as { id: string }[]).map((r) => Number(r.id)).sort((a, b) => a - b);
  }

  async acquireLease(rule: string, holder: string, ttlMs: number): Promise<RuleLease | null> {
    this.check('acquireLease');
    validateTtl(ttlMs);
    // One statement on the database clock: take a free or expired lease (a new epoch), or extend
    // our own live one (same epoch). Another holder's live lease: no row comes back.
    // It waits for a row lock at most a sixth of the ttl: an enqueue transaction holds the lease
    // row (FOR SHARE) while it waits, and a renewal stuck behind it must not stall the others.
    const { rows } = await this.tx(
      async (c) => {
        await c.query(`SELECT set_config('lock_timeout', $1, true)`, [
          `${Math.max(100, Math.floor(ttlMs / 6))}ms`,
        ]);
        return c.query(
          `INSERT INTO rule_leases AS l (rule, holder, epoch, acquired_at, expires_at)
       VALUES ($1, $2, 1, now(), now() + $3::double precision * interval '1 millisecond')
       ON CONFLICT (rule) DO UPDATE SET
         holder = excluded.holder,
         epoch = CASE WHEN l.holder = excluded.holder AND l.expires_at > now() THEN l.epoch ELSE l.epoch + 1 END,
         acquired_at = CASE WHEN l.holder = excluded.holder AND l.expires_at > now() THEN l.acquired_at ELSE now() END,
         expires_at = excluded.expires_at
       WHERE l.expires_at <= now() OR l.holder = excluded.holder
       RETURNING *`,
          [rule, holder, ttlMs],
        );
      },
      { safe: true, method: 'acquireLease' }, // repeating it for the same holder only extends
    );
    return rows[0] ? toLease(rows[0] as Row) : null;
  }

  async releaseLease(rule: string, fence: LeaseFence): Promise<void> {
    this.check('releaseLease');
    await this.q(
      `UPDATE rule_leases SET expires_at = now() WHERE rule = $1 AND holder = $2 AND epoch = $3 AND expires_at > now()`,
      [rule, fence.holder, fence.epoch],
      { safe: true, method: 'releaseLease' },
    );
  }

  async listLeases(): Promise<RuleLease[]> {
    this.check('listLeases');
    const { rows } = await this.q('SELECT * FROM rule_leases ORDER BY rule');
    return (rows as Row[]).map(toLease);
  }

  async heartbeat(replica: { id: string; host: string; pid: number }, ttlMs: number): Promise<ReplicaInfo[]> {
    this.check('heartbeat');
    validateTtl(ttlMs);
    const { rows } = await this.q(
      `WITH beat AS (
         INSERT INTO cluster_replicas AS r (id, host, pid, started_at, seen_at, expires_at)
         VALUES ($1, $2, $3, now(), now(), now() + $4::double precision * interval '1 millisecond')
         ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at, expires_at = excluded.expires_at
         RETURNING *),
       pruned AS (DELETE FROM cluster_replicas WHERE seen_at < now() - interval '1 day')
       SELECT * FROM beat
       UNION ALL
       SELECT * FROM cluster_replicas WHERE id <> $1 AND expires_at > now()`,
      [replica.id, replica.host, replica.pid, ttlMs],
      { safe: true, method: 'heartbeat' },
    );
    return (rows as Row[]).map(toReplica).sort((a, b) => cmp(a.id, b.id));
  }

  async listReplicas(): Promise<ReplicaInfo[]> {
    this.check('listReplicas');
    const { rows } = await this.q(
      `SELECT * FROM cluster_replicas WHERE seen_at >= now() - interval '1 day' ORDER BY seen_at DESC, id`,
    );
    return (rows as Row[]).map(toReplica);
  }

  async removeReplica(id: string): Promise<void> {
    this.check('removeReplica');
    await this.tx(
      async (c) => {
        await c.query('UPDATE rule_leases SET expires_at = now() WHERE holder = $1 AND expires_at > now()', [
          id,
        ]);
        await c.query('DELETE FROM cluster_replicas WHERE id = $1', [id]);
      },
      { safe: true, method: 'removeReplica' },
    );
  }

  async counts(): Promise<OutboxCounts> {
    this.check('counts');
    const { rows } = await this.q(
      'SELECT rule, channel, state, count(*)::int AS n FROM outbox GROUP BY rule, channel, state',
    );
    return tallyCounts(rows as { rule: string; channel: ChannelName; state: OutboxState; n: number }[]);
  }

  async list(filter: OutboxFilter): Promise<OutboxRow[]> {
    this.check('list');
    if (filter.state !== undefined && !OUTBOX_STATES.includes(filter.state)) {
      throw new RangeError(`state must be one of ${OUTBOX_STATES.join(', ')}`);
    }
    const { rows } = await this.q(
      `SELECT * FROM outbox WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR rule = $2)
         AND ($4::text IS NULL OR channel = $4)
       ORDER BY id DESC LIMIT $3`,
      [filter.state ?? null, filter.rule ?? null, listLimit(filter.limit), filter.channel ?? null],
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
      { safe: false, method: 'retry' },
    );
    return res.rowCount === 1;
  }

  async retryAllDead(): Promise<number> {
    this.check('retryAllDead');
    const res = await this.q(
      `UPDATE outbox SET state = 'pending', next_attempt_at = now(), updated_at = now()
       WHERE state = 'dead' AND message IS NOT NULL`,
      [],
      { safe: false, method: 'retryAllDead' },
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

  async nextDueAt(channel?: ChannelName): Promise<Date | null> {
    this.check('nextDueAt');
    const { rows } = await this.q(
      `SELECT min(next_attempt_at) AS t FROM outbox WHERE state IN ('pending', 'failed') AND next_attempt_at IS NOT NULL
         AND ($1::text IS NULL OR channel = $1)`,
      [channel ?? null],
    );
    const t = (rows[0] as { t: Date | null } | undefined)?.t;
    return t ? new Date(t) : null;
  }

  // -- the Send API (http/send-api.ts)

  async enqueueSendRequests(requests: SendApiRequest[]): Promise<SendApiOutcome[]> {
    this.check('enqueueSendRequests');
    if (requests.length === 0) return [];
    // Replicas may get the same key at once: each key's advisory lock (taken in sorted order, so
    // two batches cannot deadlock) serialises them, and the second sees the first's row.
    const keys = [
      ...new Set(
        requests.filter((r) => r.idempotencyKey !== null).map((r) => `${r.token}:${r.idempotencyKey}`),
      ),
    ].sort(cmp);
    return this.tx(async (c) => {
      for (const k of keys) {
        await c.query(`SELECT pg_advisory_xact_lock(hashtext('lead_notifier_send_api'), hashtext($1))`, [k]);
      }
      const out: SendApiOutcome[] = [];
      for (const r of requests) {
        if (r.idempotencyKey !== null) {
          const { rows } = await c.query(
            'SELECT id, body_hash, outbox_id FROM send_api_messages WHERE token = $1 AND idempotency_key = $2',
            [r.token, r.idempotencyKey],
          );
          const seen = rows[0] as Row | undefined;
          if (seen) {
            out.push(
              seen.body_hash === r.bodyHash
                ? { kind: 'replay', id: String(seen.id), outboxId: Number(seen.outbox_id) }
                : { kind: 'conflict', id: String(seen.id) },
            );
            continue;
          }
        }
        const { row } = r;
        // one statement for both rows; a plain INSERT: a clash would be a bug and rolls back the batch
        const { rows } = await c.query(
          `WITH o AS (
             INSERT INTO outbox (rule, object, record_id, record_created_date, state, message, last_error, last_error_code)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id
           )
           INSERT INTO send_api_messages (id, token, idempotency_key, body_hash, outbox_id)
           SELECT $9, $10, $11, $12, o.id FROM o RETURNING outbox_id`,
          [...outboxValues(row), r.id, r.token, r.idempotencyKey, r.bodyHash],
        );
        out.push({ kind: 'created', id: r.id, outboxId: Number((rows[0] as Row).outbox_id) });
      }
      return out;
    });
  }

  async getSendApiMessage(token: string, id: string): Promise<SendApiMessage | null> {
    this.check('getSendApiMessage');
    const { rows } = await this.q(
      'SELECT id, token, outbox_id, created_at FROM send_api_messages WHERE id = $1 AND token = $2',
      [id, token],
    );
    const m = rows[0] as Row | undefined;
    if (!m) return null;
    return {
      id: String(m.id),
      token: String(m.token),
      createdAt: iso(m.created_at),
      row: await this.get(Number(m.outbox_id)),
    };
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
