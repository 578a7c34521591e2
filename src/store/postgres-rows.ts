// The PostgreSQL store's row mapping (database rows to the Store contract's types) and the writes
// that commitBatch makes besides outbox rows (match states, digest items), kept apart from the
// connection and transaction handling in postgres.ts.
import type pg from 'pg';
import type {
  BatchExtra,
  Checkpoint,
  DigestContent,
  DigestItem,
  OutboxRow,
  OutboxState,
  ReplicaInfo,
  RuleLease,
} from './types.ts';
import { DIGEST_LIST_BYTES, isoOrNull, normalizeInstant } from './common.ts';

type Row = Record<string, unknown>;

export function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function iso(v: unknown): string {
  return isoOrNull(v as Date | string) ?? '';
}

export function toCheckpoint(r: Row): Checkpoint {
  return {
    rule: String(r.rule),
    floor: iso(r.floor),
    watermark: iso(r.watermark),
    lastId: (r.last_id as string | null | undefined) ?? null,
    replayId: (r.replay_id as string | null) ?? null,
    sweptAt: r.swept_at === null || r.swept_at === undefined ? null : iso(r.swept_at),
    updatedAt: iso(r.updated_at),
  };
}

export function toLease(r: Row): RuleLease {
  return {
    rule: String(r.rule),
    holder: String(r.holder),
    epoch: Number(r.epoch),
    acquiredAt: iso(r.acquired_at),
    expiresAt: iso(r.expires_at),
  };
}

export function toReplica(r: Row): ReplicaInfo {
  return {
    id: String(r.id),
    host: String(r.host),
    pid: Number(r.pid),
    startedAt: iso(r.started_at),
    seenAt: iso(r.seen_at),
    expiresAt: iso(r.expires_at),
  };
}

export function toOutboxRow(r: Row): OutboxRow {
  return {
    id: Number(r.id),
    rule: String(r.rule),
    object: String(r.object),
    recordId: String(r.record_id),
    recordCreatedDate: iso(r.record_created_date),
    channel: ((r.channel as string | null | undefined) ?? 'email') as OutboxRow['channel'],
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

/** inside commitBatch's transaction; sorted by record so overlapping batches lock in one order */
export async function writeMatchStates(c: pg.PoolClient, rule: string, extra: BatchExtra): Promise<void> {
  const states = [...(extra.matchStates ?? [])].sort((a, b) => cmp(a.recordId, b.recordId));
  if (states.length > 0) {
    await c.query(
      `INSERT INTO match_state (rule, record_id, matched, watched, system_modstamp)
       SELECT $1, * FROM unnest($2::text[], $3::boolean[], $4::jsonb[], $5::timestamptz[])
       ON CONFLICT (rule, record_id) DO UPDATE SET matched = excluded.matched, watched = excluded.watched,
         system_modstamp = excluded.system_modstamp
       WHERE excluded.system_modstamp > match_state.system_modstamp`,
      [
        rule,
        states.map((m) => m.recordId),
        states.map((m) => m.matched),
        states.map((m) => (m.watched === null ? null : JSON.stringify(m.watched))),
        states.map((m) => normalizeInstant(m.systemModstamp, `systemModstamp of ${m.recordId}`)),
      ],
    );
  }
  if (extra.pruneMatchStatesBefore !== undefined) {
    await c.query('DELETE FROM match_state WHERE rule = $1 AND system_modstamp < $2', [
      rule,
      normalizeInstant(extra.pruneMatchStatesBefore, 'pruneMatchStatesBefore'),
    ]);
  }
}

/** inside commitBatch's transaction; returns the items new to the rule's digest ledger */
export async function writeDigestItems(c: pg.PoolClient, rule: string, extra: BatchExtra): Promise<number> {
  const items = [...(extra.digestItems ?? [])].sort((a, b) => cmp(a.recordKey, b.recordKey));
  if (items.length === 0) return 0;
  const res = await c.query(
    `INSERT INTO digest_items (rule, record_key, object, record)
     SELECT $1, * FROM unnest($2::text[], $3::text[], $4::jsonb[])
     ON CONFLICT (rule, record_key) DO NOTHING`,
    [
      rule,
      items.map((i) => i.recordKey),
      items.map((i) => i.object),
      items.map((i) => JSON.stringify(i.record)),
    ],
  );
  return res.rowCount ?? 0;
}

/** `lock`: inside commitDigest, the open items are locked so a concurrent digest waits */
export async function readDigest(
  c: pg.PoolClient,
  rule: string,
  maxRecords: number,
  lock: boolean,
): Promise<DigestContent & { ids: number[] }> {
  const open = await c.query(
    `SELECT id FROM digest_items WHERE rule = $1 AND digest_outbox_id IS NULL ORDER BY id${lock ? ' FOR UPDATE' : ''}`,
    [rule],
  );
  const ids = (open.rows as Row[]).map((r) => Number(r.id));
  // the oldest maxRecords, while the ones before each weigh less than DIGEST_LIST_BYTES
  const listed = await c.query(
    `SELECT * FROM (
       SELECT *, sum(length(record::text)) OVER (ORDER BY id) - length(record::text) AS before
       FROM digest_items WHERE id = ANY($1::bigint[])) t
     WHERE before < $2 ORDER BY id`,
    [ids.slice(0, maxRecords), DIGEST_LIST_BYTES],
  );
  const items = (listed.rows as Row[]).map((r): DigestItem => ({
    id: Number(r.id),
    recordKey: String(r.record_key),
    object: String(r.object),
    record: r.record as Record<string, unknown>,
    collectedAt: (r.collected_at as Date).toISOString(),
  }));
  const last = await c.query('SELECT max(until) AS until FROM digests WHERE rule = $1', [rule]);
  const until = (last.rows[0] as Row | undefined)?.until;
  return { ids, items, count: ids.length, since: until instanceof Date ? until.toISOString() : null };
}
