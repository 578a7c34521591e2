// Durable event storage and the event payloads of the emulated Streaming API.
//
// Shapes follow the Change Data Capture Developer Guide ("Change Event Message Structure",
// "Change Event Header Fields") and the Streaming API Developer Guide ("PushTopic Events",
// "Message Durability"). Retention: CDC events 72 h, PushTopic events 24 h (set by the caller).

import { randomUUID } from 'node:crypto';
import type { ChangeInfo, CompiledQuery, FieldValue, Org, OrgRecord } from './org.ts';

/** One retained event: what a client receives as the `data` of a Bayeux message on `channel`. */
export interface StoredEvent {
  replayId: number;
  /** epoch ms when the event was published, for retention */
  at: number;
  data: Record<string, unknown>;
}

/**
 * Replay ids come from a counter shared by all channels on one event bus: the whole CDC bus
 * shares one, each PushTopic has its own. Ids only increase; they need not be contiguous per
 * channel (Salesforce makes no such promise either).
 */
export class ReplayCounter {
  last = 0;
  next(): number {
    this.last += 1;
    return this.last;
  }
}

/** The retained events of one channel, oldest first. */
export class ChannelLog {
  readonly channel: string;
  readonly counter: ReplayCounter;
  readonly retentionMs: number;
  readonly maxEvents: number;
  readonly events: StoredEvent[] = [];

  constructor(channel: string, counter: ReplayCounter, retentionMs: number, maxEvents: number) {
    this.channel = channel;
    this.counter = counter;
    this.retentionMs = retentionMs;
    this.maxEvents = maxEvents;
  }

  append(event: StoredEvent): void {
    this.events.push(event);
    // A hard cap keeps memory bounded; the oldest events go first, as retention would drop them.
    if (this.events.length > this.maxEvents) this.events.splice(0, this.events.length - this.maxEvents);
  }

  /** Drops events published before `cutoff` (epoch ms). */
  dropBefore(cutoff: number): void {
    let n = 0;
    while (n < this.events.length && this.events[n]!.at < cutoff) n++;
    if (n > 0) this.events.splice(0, n);
  }

  prune(nowMs: number): void {
    this.dropBefore(nowMs - this.retentionMs);
  }

  /**
   * "Message Durability": -1 = new events only, -2 = all retained events, N = events after N.
   * N is valid only if it lies inside the retained window of this channel and was issued on its
   * bus: older than the oldest retained event (or nothing retained), or in the future, is invalid.
   */
  isValidReplayId(replayId: number): boolean {
    if (replayId === -1 || replayId === -2) return true;
    if (!Number.isSafeInteger(replayId) || replayId < 1) return false;
    const oldest = this.events[0];
    if (!oldest) return false;
    return replayId >= oldest.replayId && replayId <= this.counter.last;
  }

  /** The cursor a new subscription starts from: events with replayId > cursor are delivered. */
  cursorFor(replayId: number): number {
    if (replayId === -1) return this.counter.last;
    if (replayId === -2) return 0;
    return replayId;
  }

  /** Events with replayId > cursor, at most `limit`. */
  after(cursor: number, limit: number): StoredEvent[] {
    // binary search for the first event after the cursor
    let lo = 0;
    let hi = this.events.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.events[mid]!.replayId <= cursor) lo = mid + 1;
      else hi = mid;
    }
    return this.events.slice(lo, lo + limit);
  }

  hasAfter(cursor: number): boolean {
    const last = this.events[this.events.length - 1];
    return last !== undefined && last.replayId > cursor;
  }
}

// ---------------------------------------------------------------------------------------------
// Change Data Capture payloads

export type ChangeType = 'CREATE' | 'UPDATE' | 'DELETE' | 'UNDELETE';

/** Fields the change event body never carries: the Id travels in the header's recordIds. */
const CDC_SKIPPED = new Set(['Id', 'IsDeleted', 'SystemModstamp']);
/** Compound name subfields (CDC guide: "Compound Fields in Change Events"). */
const NAME_PARTS = ['Salutation', 'FirstName', 'MiddleName', 'LastName', 'Suffix'];
const ADDRESS_PARTS = ['Street', 'City', 'State', 'PostalCode', 'Country', 'Latitude', 'Longitude'];

/** A stable, schema-id-looking string per object (real ones are 22 base64url chars). */
export function schemaIdFor(object: string): string {
  return Buffer.from(`${object}ChangeEventSchema000000`).toString('base64url').slice(0, 22);
}

function fieldTypes(org: Org, object: string): Map<string, string> {
  const def = org.describe(object);
  return new Map((def?.fields ?? []).map((f) => [f.name, f.type]));
}

/** Maps a flat field name to its compound parent and subfield, if it is part of one. */
export function compoundOf(object: string, field: string, present: Set<string>): [string, string] | null {
  if (object === 'Lead' || object === 'Contact' || object === 'User') {
    if (NAME_PARTS.includes(field) && present.has('Name')) return ['Name', field];
  }
  for (const part of ADDRESS_PARTS) {
    if (field.endsWith(part) && field.length >= part.length) {
      const prefix = field.slice(0, field.length - part.length);
      // only when the object really has the sibling Street/City set: avoids "Status" ~ "State"
      if (present.has(`${prefix}Street`) && present.has(`${prefix}City`)) return [`${prefix}Address`, part];
    }
  }
  return null;
}

function cdcValue(type: string | undefined, value: FieldValue): unknown {
  // CDC guide: datetime fields are ISO 8601 strings in UTC with milliseconds.
  if (type === 'datetime' && typeof value === 'number') return new Date(value).toISOString();
  return value;
}

let commitNumber = 10_000_000_000;

export interface ChangeEventInput {
  org: Org;
  record: OrgRecord;
  changeType: ChangeType;
  change: ChangeInfo;
  nowMs: number;
  replayId: number;
}

/** The `data` of a CDC event: { schema, payload: { ChangeEventHeader, ...fields }, event: { replayId } }. */
export function buildChangeEvent(input: ChangeEventInput): Record<string, unknown> {
  const { org, record, changeType, change, nowMs, replayId } = input;
  const types = fieldTypes(org, record.object);
  const present = new Set(types.keys());
  const payload: Record<string, unknown> = {};

  // CREATE and UNDELETE carry every non-null field; UPDATE only the changed ones (plus
  // LastModifiedDate, which every update changes); DELETE carries only the header.
  let names: string[];
  if (changeType === 'CREATE' || changeType === 'UNDELETE') {
    names = Object.keys(record.values).filter(
      (n) => record.values[n] !== null && record.values[n] !== undefined,
    );
  } else if (changeType === 'UPDATE') {
    names = [...new Set([...change.changedFields, 'LastModifiedDate'])];
  } else {
    names = [];
  }

  const changedFields: string[] = [];
  const nulledFields: string[] = [];
  for (const name of names) {
    if (CDC_SKIPPED.has(name)) continue;
    if (present.has('Name') && name === 'Name' && compoundOf(record.object, 'FirstName', present)) {
      continue; // the computed person Name is sent as the compound of its parts
    }
    const value = record.values[name] ?? null;
    const compound = compoundOf(record.object, name, present);
    const shown = compound ? `${compound[0]}.${compound[1]}` : name;
    if (changeType === 'UPDATE') {
      changedFields.push(shown);
      if (value === null) {
        nulledFields.push(shown);
        continue;
      }
    }
    const converted = cdcValue(types.get(name), value);
    if (compound) {
      const parent = (payload[compound[0]] ??= {}) as Record<string, unknown>;
      parent[compound[1]] = converted;
    } else {
      payload[name] = converted;
    }
  }

  const modified = record.values['LastModifiedDate'];
  const commitUser = record.values['LastModifiedById'] ?? record.values['CreatedById'] ?? org.defaultUserId;
  commitNumber += 1;
  return {
    schema: schemaIdFor(record.object),
    payload: {
      ChangeEventHeader: {
        entityName: record.object,
        recordIds: [record.Id],
        changeType,
        changeOrigin: 'com/salesforce/api/rest/62.0',
        transactionKey: randomUUID(),
        sequenceNumber: 1,
        commitTimestamp: typeof modified === 'number' ? modified : nowMs,
        commitNumber,
        commitUser,
        nulledFields,
        diffFields: [],
        changedFields,
      },
      ...payload,
    },
    event: { replayId },
  };
}

// ---------------------------------------------------------------------------------------------
// PushTopic

export type PushTopicEventType = 'created' | 'updated' | 'deleted' | 'undeleted';

export interface PushTopicDef {
  id: string;
  name: string;
  query: string;
  compiled: CompiledQuery;
  /** canonical names of the fields in the WHERE clause */
  whereFields: Set<string>;
  isActive: boolean;
  notifyFor: Record<PushTopicEventType, boolean>;
  /** 'All' | 'Referenced' | 'Select' | 'Where' (Streaming API guide, "Event Notification Rules") */
  notifyForFields: string;
}

/** Canonical field names referenced in the WHERE clause of `soql` (identifiers outside quotes). */
export function whereFieldsOf(soql: string, fieldNames: string[]): Set<string> {
  const canonical = new Map(fieldNames.map((n) => [n.toLowerCase(), n]));
  const withoutStrings = soql.replace(/'(?:[^'\\]|\\.)*'/g, "''");
  const m = /\bwhere\b([\s\S]*?)(?:\border\s+by\b|\blimit\b|\boffset\b|$)/i.exec(withoutStrings);
  const out = new Set<string>();
  if (!m?.[1]) return out;
  for (const word of m[1].match(/[A-Za-z_][A-Za-z0-9_.]*/g) ?? []) {
    const name = canonical.get(word.toLowerCase());
    if (name) out.add(name);
  }
  return out;
}

export function pushTopicFromRecord(org: Org, r: OrgRecord): PushTopicDef | Error {
  const v = r.values;
  const name = typeof v['Name'] === 'string' ? v['Name'] : '';
  const query = typeof v['Query'] === 'string' ? v['Query'] : '';
  let compiled: CompiledQuery;
  try {
    compiled = org.compile(query);
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
  const fields = (org.describe(compiled.object)?.fields ?? []).map((f) => f.name);
  const flag = (key: string): boolean => v[key] !== false; // defaults are true (Streaming API guide)
  return {
    id: r.Id,
    name,
    query,
    compiled,
    whereFields: whereFieldsOf(query, fields),
    isActive: flag('IsActive'),
    notifyFor: {
      created: flag('NotifyForOperationCreate'),
      updated: flag('NotifyForOperationUpdate'),
      deleted: flag('NotifyForOperationDelete'),
      undeleted: flag('NotifyForOperationUndelete'),
    },
    notifyForFields: typeof v['NotifyForFields'] === 'string' ? v['NotifyForFields'] : 'Referenced',
  };
}

/**
 * Whether an update notifies, per NotifyForFields: All = any change; Referenced = a field in SELECT
 * or WHERE changed; Select = a SELECT field; Where = a WHERE field. The record must match WHERE.
 */
export function updateNotifies(topic: PushTopicDef, changedFields: string[]): boolean {
  const selected = new Set(topic.compiled.fields);
  const mode = topic.notifyForFields.toLowerCase();
  if (mode === 'all') return true;
  return changedFields.some((f) => {
    if (mode === 'select') return selected.has(f);
    if (mode === 'where') return topic.whereFields.has(f);
    return selected.has(f) || topic.whereFields.has(f);
  });
}

/** The `data` of a PushTopic event: { event: { createdDate, replayId, type }, sobject }. */
export function buildPushTopicEvent(
  topic: PushTopicDef,
  record: OrgRecord,
  type: PushTopicEventType,
  nowMs: number,
  replayId: number,
): Record<string, unknown> {
  const projected = topic.compiled.project(record);
  const { attributes: _attributes, ...fields } = projected;
  return {
    event: { createdDate: new Date(nowMs).toISOString(), replayId, type },
    sobject: { Id: record.Id, ...fields },
  };
}
