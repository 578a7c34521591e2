// Avro decoding of Pub/Sub API change events (Pub/Sub API guide, "Event Data Serialization with
// Apache Avro"): each event names its schema by id; the schema (JSON) comes from GetSchema once
// per id and is kept, so a schema change (a new field) just means a new id and one more fetch.
import avro from 'avsc';
import type { Type } from 'avsc';
import { decodeBitmapFields } from './bitmap.ts';
import type { AvroFieldLike } from './bitmap.ts';

export type ChangeType =
  | 'CREATE'
  | 'UPDATE'
  | 'DELETE'
  | 'UNDELETE'
  | 'GAP_CREATE'
  | 'GAP_UPDATE'
  | 'GAP_DELETE'
  | 'GAP_UNDELETE'
  | 'GAP_OVERFLOW';

/** One decoded change event, as the streamer hands it on. */
export interface DecodedChange {
  entityName: string;
  changeType: ChangeType | string;
  recordIds: string[];
  /** field names ("Status", "Name.FirstName"), decoded from the header's bitmaps */
  changedFields: string[];
  nulledFields: string[];
  diffFields: string[];
  /** epoch ms */
  commitTimestamp: number;
  /** the body's non-null fields as Avro gave them: datetimes epoch ms, dates epoch days */
  fields: Record<string, unknown>;
  /** base64 of the event's replay id */
  replayId: string;
}

interface DecodedSchema {
  type: Type;
  fields: AvroFieldLike[];
}

export class SchemaCache {
  private readonly schemas = new Map<string, Promise<DecodedSchema>>();
  private readonly fetchSchema: (schemaId: string) => Promise<string>;

  constructor(fetchSchema: (schemaId: string) => Promise<string>) {
    this.fetchSchema = fetchSchema;
  }

  get size(): number {
    return this.schemas.size;
  }

  schema(schemaId: string): Promise<DecodedSchema> {
    let p = this.schemas.get(schemaId);
    if (!p) {
      p = this.fetchSchema(schemaId).then((json) => compileSchema(json));
      // a failed fetch is not cached: the next event asks again
      p.catch(() => this.schemas.delete(schemaId));
      this.schemas.set(schemaId, p);
    }
    return p;
  }

  async decode(schemaId: string, payload: Buffer, replayId: Buffer): Promise<DecodedChange> {
    return decodeChange(await this.schema(schemaId), payload, replayId);
  }
}

export function compileSchema(json: string): DecodedSchema {
  const parsed = JSON.parse(json) as { fields?: AvroFieldLike[] };
  return { type: avro.Type.forSchema(parsed as avro.Schema), fields: parsed.fields ?? [] };
}

interface RawHeader {
  entityName?: string;
  changeType?: string;
  recordIds?: string[];
  changedFields?: string[];
  nulledFields?: string[];
  diffFields?: string[];
  commitTimestamp?: number;
}

export function decodeChange(schema: DecodedSchema, payload: Buffer, replayId: Buffer): DecodedChange {
  // Record data is untrusted: avsc refuses a payload that does not match the schema.
  const value = schema.type.fromBuffer(payload) as Record<string, unknown>;
  const header = (value['ChangeEventHeader'] ?? {}) as RawHeader;
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (k !== 'ChangeEventHeader' && v !== null && v !== undefined) fields[k] = v;
  }
  return {
    entityName: header.entityName ?? '',
    changeType: header.changeType ?? '',
    recordIds: (header.recordIds ?? []).filter((x) => typeof x === 'string'),
    changedFields: decodeBitmapFields(schema.fields, header.changedFields ?? []),
    nulledFields: decodeBitmapFields(schema.fields, header.nulledFields ?? []),
    diffFields: decodeBitmapFields(schema.fields, header.diffFields ?? []),
    commitTimestamp: Number(header.commitTimestamp ?? 0),
    fields,
    replayId: replayId.toString('base64'),
  };
}
