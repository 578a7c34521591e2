// The SQLite store's row mapping: database rows to the Store contract's types.
import type { SQLInputValue } from 'node:sqlite';
import type { Checkpoint, DigestItem, OutboxRow, OutboxState, ReplicaInfo, RuleLease } from './types.ts';

type Row = Record<string, SQLInputValue>;

export function str(v: SQLInputValue | undefined): string {
  return String(v);
}
export function strOrNull(v: SQLInputValue | undefined): string | null {
  return v === null || v === undefined ? null : String(v);
}
export function json<T>(v: SQLInputValue | undefined): T | null {
  return v === null || v === undefined ? null : (JSON.parse(String(v)) as T);
}

export function toLease(r: Row): RuleLease {
  return {
    rule: str(r.rule),
    holder: str(r.holder),
    epoch: Number(r.epoch),
    acquiredAt: str(r.acquired_at),
    expiresAt: str(r.expires_at),
  };
}

export function toReplica(r: Row): ReplicaInfo {
  return {
    id: str(r.id),
    host: str(r.host),
    pid: Number(r.pid),
    startedAt: str(r.started_at),
    seenAt: str(r.seen_at),
    expiresAt: str(r.expires_at),
  };
}

export function toCheckpoint(r: Row): Checkpoint {
  return {
    rule: str(r.rule),
    floor: str(r.floor),
    watermark: str(r.watermark),
    lastId: strOrNull(r.last_id),
    replayId: strOrNull(r.replay_id),
    sweptAt: strOrNull(r.swept_at),
    updatedAt: str(r.updated_at),
  };
}

export function toOutboxRow(r: Row): OutboxRow {
  return {
    id: Number(r.id),
    rule: str(r.rule),
    object: str(r.object),
    recordId: str(r.record_id),
    recordCreatedDate: str(r.record_created_date),
    channel: (strOrNull(r.channel) ?? 'email') as OutboxRow['channel'],
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

export function toDigestItem(r: Row): DigestItem {
  return {
    id: Number(r.id),
    recordKey: String(r.record_key),
    object: String(r.object),
    record: JSON.parse(String(r.record)) as Record<string, unknown>,
    collectedAt: String(r.collected_at),
  };
}
