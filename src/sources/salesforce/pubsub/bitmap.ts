// Change event header bitmaps (Pub/Sub API guide, "Event Deserialization Considerations" /
// "Bitmap Fields in Change Events"): `changedFields`, `nulledFields` and `diffFields` arrive as hex
// strings whose bit i (counted from the least significant bit) is the field at position i of the
// event's Avro schema. A compound field's subfields come as "parentPos-0xBITS", the bits counting
// positions inside the parent's nested record. Decoding gives the CometD-style names
// ("Status", "Name.FirstName"), so both APIs hand the same thing on.

/** The part of an Avro schema a bitmap refers to: a record's fields, in order. */
export interface AvroFieldLike {
  name: string;
  type: unknown;
}

const TOP = /^0x([0-9a-f]+)$/i;
const NESTED = /^(\d+)-0x([0-9a-f]+)$/i;

function setBits(hex: string): number[] {
  let n = BigInt(`0x${hex}`);
  const out: number[] = [];
  for (let i = 0; n > 0n; i++, n >>= 1n) if (n & 1n) out.push(i);
  return out;
}

/** The fields of a nested record type, whether given bare or as a ["null", record] union. */
function nestedFields(type: unknown): AvroFieldLike[] | undefined {
  const candidates = Array.isArray(type) ? type : [type];
  for (const t of candidates) {
    if (t && typeof t === 'object' && (t as { type?: unknown }).type === 'record') {
      const fields = (t as { fields?: unknown }).fields;
      if (Array.isArray(fields)) return fields as AvroFieldLike[];
    }
  }
  return undefined;
}

/**
 * Field names for the bitmap entries of one header array. An entry that is neither form (a field
 * name, as CometD sends) passes through; a bit beyond the schema is an error, not a guess.
 */
export function decodeBitmapFields(fields: readonly AvroFieldLike[], entries: readonly string[]): string[] {
  const out: string[] = [];
  for (const entry of entries) {
    const top = TOP.exec(entry);
    if (top) {
      for (const bit of setBits(top[1]!)) out.push(fieldAt(fields, bit, entry).name);
      continue;
    }
    const nested = NESTED.exec(entry);
    if (nested) {
      const parent = fieldAt(fields, Number(nested[1]), entry);
      const inner = nestedFields(parent.type);
      if (!inner) throw new Error(`bitmap ${entry}: field ${parent.name} is not a compound field`);
      for (const bit of setBits(nested[2]!)) out.push(`${parent.name}.${fieldAt(inner, bit, entry).name}`);
      continue;
    }
    out.push(entry);
  }
  return out;
}

function fieldAt(fields: readonly AvroFieldLike[], pos: number, entry: string): AvroFieldLike {
  const f = fields[pos];
  if (!f) throw new Error(`bitmap ${entry}: no field at position ${pos} (schema has ${fields.length})`);
  return f;
}

/** The hex bitmap of the given positions ("0x" + upper-case hex, as Salesforce sends it). */
export function encodeBitmap(positions: Iterable<number>): string {
  let n = 0n;
  for (const p of positions) n |= 1n << BigInt(p);
  return `0x${n.toString(16).toUpperCase()}`;
}

/**
 * The bitmap entries for a set of field names against a schema: top-level names in one entry,
 * "Parent.Child" names grouped per parent as "parentPos-0xBITS". Empty input gives [].
 */
export function encodeBitmapFields(fields: readonly AvroFieldLike[], names: readonly string[]): string[] {
  const top: number[] = [];
  const nested = new Map<number, number[]>();
  for (const name of names) {
    const dot = name.indexOf('.');
    if (dot < 0) {
      const pos = fields.findIndex((f) => f.name === name);
      if (pos < 0) throw new Error(`no field ${name} in the schema`);
      top.push(pos);
      continue;
    }
    const parentPos = fields.findIndex((f) => f.name === name.slice(0, dot));
    const inner = parentPos < 0 ? undefined : nestedFields(fields[parentPos]!.type);
    const childPos = inner?.findIndex((f) => f.name === name.slice(dot + 1)) ?? -1;
    if (childPos < 0) throw new Error(`no compound field ${name} in the schema`);
    const list = nested.get(parentPos) ?? [];
    list.push(childPos);
    nested.set(parentPos, list);
  }
  const out: string[] = [];
  if (top.length > 0) out.push(encodeBitmap(top));
  for (const [pos, bits] of [...nested].sort((a, b) => a[0] - b[0])) out.push(`${pos}-${encodeBitmap(bits)}`);
  return out;
}
