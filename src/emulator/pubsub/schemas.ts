// Avro schemas and payloads of change events as the Pub/Sub API serves them (Pub/Sub API guide,
// "Event Data Serialization with Apache Avro", "Bitmap Fields in Change Events", "Date Fields";
// CDC guide, "Change Event Header Fields"). One schema per object, built from its describe: the
// ChangeEventHeader at position 0, then every field as a ["null", T] union in describe order, with
// compound fields (person Name, addresses) as one nested record at the position of their first
// part. Datetimes are epoch ms (long), dates epoch days (int).
import { createHash } from 'node:crypto';
import { randomUUID } from 'node:crypto';
import avro from 'avsc';
import type { Type } from 'avsc';
import { encodeBitmapFields } from '../../sources/salesforce/pubsub/bitmap.ts';
import type { AvroFieldLike } from '../../sources/salesforce/pubsub/bitmap.ts';
import { compoundOf } from '../cometd-events.ts';
import type { ChangeType } from '../cometd-events.ts';
import type { Org, OrgRecord } from '../org.ts';

/** Fields a change event body never carries: the Id travels in the header's recordIds. */
const SKIPPED = new Set(['Id', 'IsDeleted', 'SystemModstamp']);

const HEADER_SCHEMA = {
  type: 'record',
  name: 'ChangeEventHeader',
  namespace: 'com.sforce.eventbus',
  fields: [
    { name: 'entityName', type: 'string' },
    { name: 'recordIds', type: { type: 'array', items: 'string' } },
    {
      name: 'changeType',
      type: {
        type: 'enum',
        name: 'ChangeType',
        namespace: 'com.sforce.eventbus',
        symbols: [
          'CREATE',
          'DELETE',
          'GAP_CREATE',
          'GAP_DELETE',
          'GAP_OVERFLOW',
          'GAP_UNDELETE',
          'GAP_UPDATE',
          'UNDELETE',
          'UPDATE',
        ],
      },
    },
    { name: 'changeOrigin', type: 'string' },
    { name: 'transactionKey', type: 'string' },
    { name: 'sequenceNumber', type: 'int' },
    { name: 'commitTimestamp', type: 'long' },
    { name: 'commitNumber', type: 'long' },
    { name: 'commitUser', type: 'string' },
    { name: 'nulledFields', type: { type: 'array', items: 'string' } },
    { name: 'diffFields', type: { type: 'array', items: 'string' } },
    { name: 'changedFields', type: { type: 'array', items: 'string' } },
  ],
};

function avroType(sfType: string | undefined): string {
  switch (sfType) {
    case 'boolean':
      return 'boolean';
    case 'int':
      return 'int';
    case 'double':
    case 'currency':
    case 'percent':
      return 'double';
    case 'date':
      return 'int';
    case 'datetime':
      return 'long';
    default:
      return 'string';
  }
}

interface PlainField {
  kind: 'plain';
  name: string;
  sfType: string | undefined;
}
interface CompoundField {
  kind: 'compound';
  name: string;
  /** subfield name -> the flat org field it comes from */
  parts: Array<{ name: string; source: string; sfType: string | undefined }>;
}

export interface ObjectSchema {
  object: string;
  topic: string;
  schemaId: string;
  schemaJson: string;
  type: Type;
  fields: AvroFieldLike[];
  layout: Array<PlainField | CompoundField>;
  /** flat org field name -> name in change events ("FirstName" -> "Name.FirstName") */
  eventName: Map<string, string>;
}

export function buildObjectSchema(org: Org, object: string): ObjectSchema | undefined {
  const def = org.describe(object);
  if (!def) return undefined;
  const types = new Map(def.fields.map((f) => [f.name, f.type as string]));
  const present = new Set(types.keys());
  const layout: Array<PlainField | CompoundField> = [];
  const compounds = new Map<string, CompoundField>();
  const eventName = new Map<string, string>();
  const personName = compoundOf(def.name, 'FirstName', present) !== null;
  for (const f of def.fields) {
    if (SKIPPED.has(f.name)) continue;
    if (personName && f.name === 'Name') {
      // the computed person Name is the compound of its parts
      if (!compounds.has('Name')) {
        const c: CompoundField = { kind: 'compound', name: 'Name', parts: [] };
        compounds.set('Name', c);
        layout.push(c);
      }
      continue;
    }
    const compound = compoundOf(def.name, f.name, present);
    if (compound) {
      let c = compounds.get(compound[0]);
      if (!c) {
        c = { kind: 'compound', name: compound[0], parts: [] };
        compounds.set(compound[0], c);
        layout.push(c);
      }
      c.parts.push({ name: compound[1], source: f.name, sfType: f.type });
      eventName.set(f.name, `${compound[0]}.${compound[1]}`);
      continue;
    }
    layout.push({ kind: 'plain', name: f.name, sfType: f.type });
    eventName.set(f.name, f.name);
  }
  const fields: AvroFieldLike[] = [{ name: 'ChangeEventHeader', type: HEADER_SCHEMA }];
  for (const item of layout) {
    if (item.kind === 'plain') {
      fields.push({ name: item.name, type: ['null', avroType(item.sfType)], default: null } as AvroFieldLike);
    } else {
      const recordName = item.name === 'Name' ? 'Switchable_PersonName' : 'Address';
      fields.push({
        name: item.name,
        type: [
          'null',
          {
            type: 'record',
            name: `${recordName}_${def.name}_${item.name}`,
            fields: item.parts.map((p) => ({
              name: p.name,
              type: ['null', avroType(p.sfType)],
              default: null,
            })),
          },
        ],
        default: null,
      } as AvroFieldLike);
    }
  }
  const schema = {
    type: 'record',
    name: `${def.name}ChangeEvent`,
    namespace: 'com.sforce.eventbus',
    fields,
  };
  const schemaJson = JSON.stringify(schema);
  return {
    object: def.name,
    topic: `/data/${def.name}ChangeEvent`,
    // a fingerprint of the schema text: a changed object definition is a new schema id
    schemaId: createHash('sha256').update(schemaJson).digest('base64url').slice(0, 22),
    schemaJson,
    type: avro.Type.forSchema(schema as avro.Schema),
    fields,
    layout,
    eventName,
  };
}

function avroValue(sfType: string | undefined, value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (sfType === 'date' && typeof value === 'string') return Math.floor(Date.parse(value) / 86_400_000);
  if (sfType === 'datetime') return typeof value === 'number' ? value : Date.parse(String(value));
  if (avroType(sfType) === 'string') return String(value);
  return value;
}

let commitNumber = 20_000_000_000;

export interface EncodedChange {
  id: string;
  payload: Buffer;
  /** the header as encoded, for tests and logs */
  header: Record<string, unknown>;
}

/**
 * One change event in Avro. CREATE and UNDELETE carry every non-null field, UPDATE the changed
 * ones (plus LastModifiedDate) with their bitmaps, DELETE only the header.
 */
export function encodeChange(
  org: Org,
  schema: ObjectSchema,
  record: OrgRecord,
  changeType: ChangeType,
  changed: string[],
  nowMs: number,
): EncodedChange {
  const values = record.values as Record<string, unknown>;
  let include: Set<string>;
  if (changeType === 'CREATE' || changeType === 'UNDELETE') {
    include = new Set(Object.keys(values).filter((k) => values[k] !== null && values[k] !== undefined));
  } else if (changeType === 'UPDATE') {
    include = new Set([...changed, 'LastModifiedDate']);
  } else {
    include = new Set();
  }
  const body: Record<string, unknown> = {};
  const changedNames: string[] = [];
  const nulledNames: string[] = [];
  for (const item of schema.layout) {
    if (item.kind === 'plain') {
      if (!include.has(item.name)) {
        body[item.name] = null;
        continue;
      }
      body[item.name] = avroValue(item.sfType, values[item.name]);
      if (changeType === 'UPDATE') {
        changedNames.push(item.name);
        if (body[item.name] === null) nulledNames.push(item.name);
      }
      continue;
    }
    const nested: Record<string, unknown> = {};
    let any = false;
    for (const p of item.parts) {
      const v = include.has(p.source) ? avroValue(p.sfType, values[p.source]) : null;
      nested[p.name] = v;
      if (include.has(p.source)) {
        any = any || v !== null;
        if (changeType === 'UPDATE') {
          changedNames.push(`${item.name}.${p.name}`);
          if (v === null) nulledNames.push(`${item.name}.${p.name}`);
        }
      }
    }
    body[item.name] = any ? nested : null;
  }
  const modified = values['LastModifiedDate'];
  commitNumber += 1;
  const header = {
    entityName: schema.object,
    recordIds: [record.Id],
    changeType,
    changeOrigin: 'com/salesforce/api/rest/62.0',
    transactionKey: randomUUID(),
    sequenceNumber: 1,
    commitTimestamp: typeof modified === 'number' ? modified : nowMs,
    commitNumber,
    commitUser: String(values['LastModifiedById'] ?? values['CreatedById'] ?? org.defaultUserId),
    nulledFields: encodeBitmapFields(schema.fields, nulledNames),
    diffFields: [],
    changedFields: encodeBitmapFields(schema.fields, changedNames),
  };
  return { id: randomUUID(), payload: schema.type.toBuffer({ ChangeEventHeader: header, ...body }), header };
}
