// Turning REST API query results into SourceRecords, refusing anything malformed: a reply we
// cannot understand must not move the cursor.
import type { SourceRecord } from '../../types.ts';
import { isSalesforceId } from './ids.ts';

export class MalformedReplyError extends Error {
  override name = 'MalformedReplyError';
  readonly code = 'EMALFORMED';
}

export interface QueryPage {
  totalSize: number;
  done: boolean;
  nextRecordsUrl?: string;
  records: Record<string, unknown>[];
}

export function asQueryPage(body: unknown): QueryPage {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new MalformedReplyError(`query reply is not a JSON object: ${preview(body)}`);
  }
  const b = body as Record<string, unknown>;
  if (!Array.isArray(b.records)) throw new MalformedReplyError('query reply has no records array');
  if (typeof b.done !== 'boolean') throw new MalformedReplyError('query reply has no done flag');
  if (!b.done && typeof b.nextRecordsUrl !== 'string') {
    throw new MalformedReplyError('query reply is not done but has no nextRecordsUrl');
  }
  return {
    totalSize: typeof b.totalSize === 'number' ? b.totalSize : b.records.length,
    done: b.done,
    ...(typeof b.nextRecordsUrl === 'string' ? { nextRecordsUrl: b.nextRecordsUrl } : {}),
    records: b.records as Record<string, unknown>[],
  };
}

function stripAttributes(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stripAttributes);
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (k !== 'attributes') out[k] = stripAttributes(v);
    }
    return out;
  }
  return value;
}

/** Salesforce datetimes look like 2026-11-24T06:48:57.000+0000; returns a canonical ISO string. */
export function parseSfDateTime(value: unknown, what: string): string {
  const ms = typeof value === 'string' ? Date.parse(value) : NaN;
  if (Number.isNaN(ms)) throw new MalformedReplyError(`${what} is not a datetime: ${preview(value)}`);
  return new Date(ms).toISOString();
}

export function toSourceRecord(object: string, raw: Record<string, unknown>): SourceRecord {
  if (!raw || typeof raw !== 'object')
    throw new MalformedReplyError(`record is not an object: ${preview(raw)}`);
  const id = raw.Id;
  if (!isSalesforceId(id)) {
    throw new MalformedReplyError(`record has no valid Id: ${preview(id)}`);
  }
  return {
    object,
    id,
    createdDate: parseSfDateTime(raw.CreatedDate, `${object} ${id} CreatedDate`),
    systemModstamp:
      raw.SystemModstamp === undefined
        ? parseSfDateTime(raw.CreatedDate, 'CreatedDate')
        : parseSfDateTime(raw.SystemModstamp, `${object} ${id} SystemModstamp`),
    fields: stripAttributes(raw) as Record<string, unknown>,
  };
}

function preview(v: unknown): string {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return (s ?? String(v)).slice(0, 120);
}
