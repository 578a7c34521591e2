// Binds a parsed SOQL query to the org's object definitions (canonical names, types, parent
// relationships up to five levels) and compiles WHERE and ORDER BY to closures, evaluated per record.
// Semantics follow the SOQL and SOSL Reference: string comparison is case-insensitive, `= null` /
// `!= null` test for null, any other comparison with a null field value is false except `!=` and
// NOT IN, which are true; date literals are day ranges in the org time zone (UTC here).

import type { FieldDef, ObjectDef } from '../objects.ts';
import { dateLiteralRange, dayToDate, dayToMs, formatDateTime } from './dates.ts';
import { queryError, SalesforceError, type Pos } from './errors.ts';
import { normalizeId } from '../../sources/salesforce/ids.ts';
import { parseSoql, type Condition, type Literal, type SelectQuery } from './parser.ts';

export type FieldValue = string | number | boolean | null;

export interface OrgRecord {
  object: string;
  Id: string;
  values: Record<string, FieldValue>;
}

export type ApiRecord = { attributes: { type: string; url: string }; [field: string]: unknown };

/** What the compiler needs from the org. */
export interface Schema {
  describe(object: string): ObjectDef | undefined;
  getById(id: string): OrgRecord | undefined;
}

type Category = 'text' | 'id' | 'bool' | 'num' | 'date' | 'datetime';

function categoryOf(def: FieldDef): Category {
  switch (def.type) {
    case 'id':
    case 'reference':
      return 'id';
    case 'boolean':
      return 'bool';
    case 'int':
    case 'double':
    case 'currency':
    case 'percent':
      return 'num';
    case 'date':
      return 'date';
    case 'datetime':
      return 'datetime';
    default:
      return 'text';
  }
}

/** SOAP type names, as Salesforce's filter error messages use them */
function soapType(def: FieldDef): string {
  if (def.type === 'datetime') return 'dateTime';
  if (def.type === 'reference') return 'id';
  if (def.type === 'int' || def.type === 'double' || def.type === 'currency' || def.type === 'percent')
    return def.type === 'int' ? 'integer' : 'double';
  if (def.type === 'id' || def.type === 'boolean' || def.type === 'date') return def.type;
  return 'string';
}

// ---------------------------------------------------------------- field resolution

interface FieldIndex {
  byName: Map<string, FieldDef>;
  byRelationship: Map<string, FieldDef>;
}
const indexes = new WeakMap<ObjectDef, FieldIndex>();

export function fieldIndex(obj: ObjectDef): FieldIndex {
  let ix = indexes.get(obj);
  if (!ix) {
    ix = { byName: new Map(), byRelationship: new Map() };
    for (const f of obj.fields) {
      ix.byName.set(f.name.toLowerCase(), f);
      if (f.type === 'reference' && f.relationshipName)
        ix.byRelationship.set(f.relationshipName.toLowerCase(), f);
    }
    indexes.set(obj, ix);
  }
  return ix;
}

export interface BoundField {
  /** canonical path, e.g. 'Owner.Email' or 'Owner.Manager.Email' */
  path: string;
  /** the field read (on the last parent for a relationship path) */
  def: FieldDef;
  category: Category;
  /**
   * for a relationship path: the lookups followed from the queried object, in order (relationship
   * name and lookup field name), e.g. Owner (OwnerId), then Manager (ManagerId)
   */
  chain?: Array<{ name: string; lookup: string }>;
  get(r: OrgRecord): FieldValue;
  pos: Pos;
}

type ErrorAt = (code: string, pos: Pos, reason: string) => SalesforceError;

/**
 * SOQL: no more than five levels in a child-to-parent path, the queried object counting as the
 * first ("Contact.Account.Owner.FirstName (three levels)"): at most four relationships.
 */
export const MAX_RELATIONSHIP_LEVELS = 5;

function noSuchColumn(name: string, obj: ObjectDef): string {
  return (
    `No such column '${name}' on entity '${obj.name}'. If you are attempting to use a custom field, be sure to ` +
    `append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.`
  );
}

function noSuchRelationship(name: string): string {
  return (
    `Didn't understand relationship '${name}' in field path. If you are attempting to use a custom relationship, be sure to ` +
    `append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names.`
  );
}

/**
 * The objects a lookup may point to. A polymorphic lookup (Lead.OwnerId: User or Group, a queue)
 * is resolved per record at read time; at bind time a field must exist on one of the targets.
 */
function targetsOf(schema: Schema, lookup: FieldDef): ObjectDef[] {
  return (lookup.referenceTo ?? []).map((t) => schema.describe(t)).filter((d): d is ObjectDef => !!d);
}

export function bindField(
  schema: Schema,
  obj: ObjectDef,
  path: string[],
  pos: Pos,
  err: ErrorAt,
): BoundField {
  let parts = path;
  // "SELECT Lead.Name FROM Lead" is legal: the object name may prefix a field
  if (
    parts.length > 1 &&
    parts[0]!.toLowerCase() === obj.name.toLowerCase() &&
    !fieldIndex(obj).byRelationship.has(parts[0]!.toLowerCase())
  ) {
    parts = parts.slice(1);
  }
  if (parts.length === 1) {
    const def = fieldIndex(obj).byName.get(parts[0]!.toLowerCase());
    if (!def) throw err('INVALID_FIELD', pos, noSuchColumn(parts[0]!, obj));
    const name = def.name;
    return {
      path: name,
      def,
      category: categoryOf(def),
      pos,
      get: (r) => r.values[name] ?? null,
    };
  }
  if (parts.length > MAX_RELATIONSHIP_LEVELS) {
    throw err(
      'MALFORMED_QUERY',
      pos,
      `${path.join('.')}: a relationship path may span at most ${MAX_RELATIONSHIP_LEVELS} levels`,
    );
  }
  // Walk the relationships; each step may have several candidate objects (polymorphic lookups).
  let candidates: ObjectDef[] = [obj];
  const chain: Array<{ name: string; lookup: string }> = [];
  for (const rel of parts.slice(0, -1)) {
    const lookups = candidates
      .map((c) => fieldIndex(c).byRelationship.get(rel.toLowerCase()))
      .filter((f): f is FieldDef => !!f);
    const lookup = lookups[0];
    if (!lookup) throw err('INVALID_FIELD', pos, noSuchRelationship(rel));
    chain.push({ name: lookup.relationshipName!, lookup: lookup.name });
    candidates = [...new Set(lookups.flatMap((l) => targetsOf(schema, l)))];
    if (candidates.length === 0) throw err('INVALID_FIELD', pos, noSuchRelationship(rel));
  }
  const leafName = parts.at(-1)!;
  const def = candidates.map((c) => fieldIndex(c).byName.get(leafName.toLowerCase())).find((d) => !!d);
  if (!def) throw err('INVALID_FIELD', pos, noSuchColumn(leafName, candidates[0]!));
  const leaf = def.name;
  const follow = (r: OrgRecord): OrgRecord | undefined => {
    let cur: OrgRecord | undefined = r;
    for (const step of chain) {
      const id: FieldValue | undefined = cur.values[step.lookup];
      if (typeof id !== 'string') return undefined;
      cur = schema.getById(id);
      if (!cur) return undefined;
    }
    return cur;
  };
  return {
    path: [...chain.map((c) => c.name), leaf].join('.'),
    def,
    category: categoryOf(def),
    chain,
    pos,
    // a parent of another type (a queue where a User field is asked) reads as null
    get: (r) => follow(r)?.values[leaf] ?? null,
  };
}

// ---------------------------------------------------------------- projection

/** A node of the projection tree: this object's own fields, then its parents by relationship. */
interface ProjectionNode {
  leaves: Array<{ name: string; datetime: boolean }>;
  parents: Map<string, { lookup: string; node: ProjectionNode }>;
  /** output key order: leaves and relationship names as first selected */
  order: Array<{ kind: 'leaf'; index: number } | { kind: 'parent'; name: string }>;
}

export type Projector = (r: OrgRecord, apiVersion: string) => ApiRecord;

export function recordUrl(apiVersion: string, object: string, id: string): string {
  return `/services/data/v${apiVersion}/sobjects/${object}/${id}`;
}

function newNode(): ProjectionNode {
  return { leaves: [], parents: new Map(), order: [] };
}

export function makeProjector(schema: Schema, _obj: ObjectDef, fields: BoundField[]): Projector {
  const root = newNode();
  for (const f of fields) {
    const datetime = f.def.type === 'datetime';
    let node = root;
    for (const step of f.chain ?? []) {
      let p = node.parents.get(step.name);
      if (!p) {
        p = { lookup: step.lookup, node: newNode() };
        node.parents.set(step.name, p);
        node.order.push({ kind: 'parent', name: step.name });
      }
      node = p.node;
    }
    node.order.push({ kind: 'leaf', index: node.leaves.length });
    node.leaves.push({ name: f.def.name, datetime });
  }
  // attributes.type is the record's own object: for a polymorphic lookup, User or Group
  const render = (node: ProjectionNode, r: OrgRecord, apiVersion: string): ApiRecord => {
    const out: ApiRecord = { attributes: { type: r.object, url: recordUrl(apiVersion, r.object, r.Id) } };
    for (const item of node.order) {
      if (item.kind === 'leaf') {
        const leaf = node.leaves[item.index]!;
        const v = r.values[leaf.name] ?? null;
        out[leaf.name] = leaf.datetime && typeof v === 'number' ? formatDateTime(v) : v;
        continue;
      }
      const p = node.parents.get(item.name)!;
      const id = r.values[p.lookup];
      const parent = typeof id === 'string' ? schema.getById(id) : undefined;
      out[item.name] = parent ? render(p.node, parent, apiVersion) : null;
    }
    return out;
  };
  return (r, apiVersion) => render(root, r, apiVersion);
}

// ---------------------------------------------------------------- WHERE

type BoundCondition =
  | { kind: 'and' | 'or'; items: BoundCondition[] }
  | { kind: 'not'; item: BoundCondition }
  | { kind: 'compare'; field: BoundField; op: string; value: BoundValue }
  | { kind: 'in'; field: BoundField; negated: boolean; values: BoundValue[] }
  | { kind: 'like'; field: BoundField; regex: RegExp };

/** A literal converted to the field's representation (lower-cased text, 18-char id, ms, ...) */
type BoundValue =
  { kind: 'value'; value: string | number | boolean | null } | { kind: 'range'; name: string; n?: number };

function bindValue(field: BoundField, lit: Literal, err: ErrorAt): BoundValue {
  if (lit.kind === 'null') return { kind: 'value', value: null };
  const cat = field.category;
  const wrongType = (): never => {
    const quoted = cat === 'text' || cat === 'id';
    throw err(
      'INVALID_FIELD',
      lit.pos,
      `value of filter criterion for field '${field.def.name}' must be of type ${soapType(field.def)} and should ${quoted ? '' : 'not '}be enclosed in quotes`,
    );
  };
  switch (cat) {
    case 'text':
      if (lit.kind !== 'string') return wrongType();
      return { kind: 'value', value: lit.value.toLowerCase() };
    case 'id': {
      if (lit.kind !== 'string') return wrongType();
      const id = normalizeId(lit.value);
      if (!id) throw err('INVALID_QUERY_FILTER_OPERATOR', lit.pos, `invalid ID field: ${lit.value}`);
      return { kind: 'value', value: id };
    }
    case 'bool':
      if (lit.kind !== 'boolean') return wrongType();
      return { kind: 'value', value: lit.value };
    case 'num':
      if (lit.kind !== 'number') return wrongType();
      return { kind: 'value', value: lit.value };
    case 'date':
      if (lit.kind === 'dateLiteral')
        return lit.n === undefined
          ? { kind: 'range', name: lit.name }
          : { kind: 'range', name: lit.name, n: lit.n };
      if (lit.kind !== 'date') return wrongType();
      return { kind: 'value', value: lit.value };
    case 'datetime':
      if (lit.kind === 'dateLiteral')
        return lit.n === undefined
          ? { kind: 'range', name: lit.name }
          : { kind: 'range', name: lit.name, n: lit.n };
      if (lit.kind !== 'datetime') return wrongType();
      return { kind: 'value', value: lit.value };
  }
}

function bindCondition(schema: Schema, obj: ObjectDef, c: Condition, err: ErrorAt): BoundCondition {
  switch (c.kind) {
    case 'and':
    case 'or':
      return { kind: c.kind, items: c.items.map((i) => bindCondition(schema, obj, i, err)) };
    case 'not':
      return { kind: 'not', item: bindCondition(schema, obj, c.item, err) };
    case 'compare': {
      const field = bindField(schema, obj, c.field.path, c.field.pos, err);
      const value = bindValue(field, c.value, err);
      const ordering = c.op !== '=' && c.op !== '!=';
      if (ordering && field.category === 'bool') {
        throw err(
          'INVALID_QUERY_FILTER_OPERATOR',
          c.field.pos,
          `invalid operator on boolean field: ${field.def.name}`,
        );
      }
      if (ordering && value.kind === 'value' && value.value === null) {
        throw err('INVALID_QUERY_FILTER_OPERATOR', c.value.pos, `invalid operator with null: ${c.op} null`);
      }
      return { kind: 'compare', field, op: c.op, value };
    }
    case 'in': {
      const field = bindField(schema, obj, c.field.path, c.field.pos, err);
      const values = c.values.map((v) => {
        const b = bindValue(field, v, err);
        if (b.kind === 'range')
          throw err(
            'MALFORMED_QUERY',
            v.pos,
            'Date literals in an IN list are not supported by the lead-notifier org emulator',
          );
        return b;
      });
      return { kind: 'in', field, negated: c.negated, values };
    }
    case 'like': {
      const field = bindField(schema, obj, c.field.path, c.field.pos, err);
      if (field.category !== 'text') {
        throw err(
          'INVALID_QUERY_FILTER_OPERATOR',
          c.field.pos,
          `invalid operator on ${soapType(field.def)} field: LIKE`,
        );
      }
      if (c.pattern.kind !== 'string') {
        throw err(
          'INVALID_FIELD',
          c.pattern.pos,
          `value of filter criterion for field '${field.def.name}' must be of type string and should be enclosed in quotes`,
        );
      }
      // LIKE is case-insensitive; % is any run of characters, _ exactly one (SOQL reference, "Comparison Operators")
      return { kind: 'like', field, regex: new RegExp(`^${c.pattern.likeSource}$`, 'is') };
    }
  }
}

function usesDateLiterals(c: BoundCondition | null): boolean {
  if (!c) return false;
  switch (c.kind) {
    case 'and':
    case 'or':
      return c.items.some(usesDateLiterals);
    case 'not':
      return usesDateLiterals(c.item);
    case 'compare':
      return c.value.kind === 'range';
    default:
      return false;
  }
}

type Predicate = (r: OrgRecord) => boolean;

function comparePredicate(
  get: (r: OrgRecord) => FieldValue,
  op: string,
  lit: string | number | boolean | null,
  text: boolean,
): Predicate {
  if (lit === null) return op === '=' ? (r) => get(r) === null : (r) => get(r) !== null;
  const norm: (r: OrgRecord) => FieldValue = text
    ? (r) => {
        const v = get(r);
        return typeof v === 'string' ? v.toLowerCase() : v;
      }
    : get;
  switch (op) {
    case '=':
      return (r) => norm(r) === lit;
    case '!=':
      return (r) => norm(r) !== lit;
    case '<':
      return (r) => {
        const v = norm(r);
        return v !== null && v < lit;
      };
    case '<=':
      return (r) => {
        const v = norm(r);
        return v !== null && v <= lit;
      };
    case '>':
      return (r) => {
        const v = norm(r);
        return v !== null && v > lit;
      };
    default:
      return (r) => {
        const v = norm(r);
        return v !== null && v >= lit;
      };
  }
}

function buildPredicate(c: BoundCondition, now: Date): Predicate {
  switch (c.kind) {
    case 'and': {
      const items = c.items.map((i) => buildPredicate(i, now));
      if (items.length === 2) {
        const [a, b] = items as [Predicate, Predicate];
        return (r) => a(r) && b(r);
      }
      return (r) => {
        for (const p of items) if (!p(r)) return false;
        return true;
      };
    }
    case 'or': {
      const items = c.items.map((i) => buildPredicate(i, now));
      return (r) => items.some((p) => p(r));
    }
    case 'not': {
      const item = buildPredicate(c.item, now);
      return (r) => !item(r);
    }
    case 'like': {
      const { get } = c.field;
      const re = c.regex;
      return (r) => {
        const v = get(r);
        return typeof v === 'string' && re.test(v);
      };
    }
    case 'in': {
      const text = c.field.category === 'text';
      const set = new Set(c.values.map((v) => (v.kind === 'value' ? v.value : null)));
      const { get } = c.field;
      const has = (r: OrgRecord): boolean => {
        const v = get(r);
        return set.has(text && typeof v === 'string' ? v.toLowerCase() : v);
      };
      // NOT IN behaves like != for nulls: a null field value is "not in" a list without null
      return c.negated ? (r) => !has(r) : has;
    }
    case 'compare': {
      const { field, op, value } = c;
      if (value.kind === 'value')
        return comparePredicate(field.get, op, value.value, field.category === 'text');
      // A date literal is a range [lo, hi): "= TODAY" is inside it, "< TODAY" before it,
      // "> TODAY" after it, "<= TODAY" before its end, ">= TODAY" from its start.
      const range = dateLiteralRange(value.name, value.n, now);
      const toField = field.category === 'date' ? dayToDate : dayToMs;
      const lo = toField(range.startDay);
      const hi = toField(range.endDay);
      const get = field.get;
      switch (op) {
        case '=':
          return (r) => {
            const v = get(r);
            return v !== null && v >= lo && v < hi;
          };
        case '!=':
          return (r) => {
            const v = get(r);
            return v === null || v < lo || v >= hi;
          };
        case '<':
          return (r) => {
            const v = get(r);
            return v !== null && v < lo;
          };
        case '<=':
          return (r) => {
            const v = get(r);
            return v !== null && v < hi;
          };
        case '>':
          return (r) => {
            const v = get(r);
            return v !== null && v >= hi;
          };
        default:
          return (r) => {
            const v = get(r);
            return v !== null && v >= lo;
          };
      }
    }
  }
}

// ---------------------------------------------------------------- ORDER BY

interface BoundOrder {
  field: BoundField;
  desc: boolean;
  nullsLast: boolean;
}

function sortRecords(rows: OrgRecord[], order: BoundOrder[]): OrgRecord[] {
  const n = rows.length;
  const keys: FieldValue[][] = order.map((o) => {
    const col = new Array<FieldValue>(n);
    const text = o.field.category === 'text';
    const get = o.field.get;
    for (let i = 0; i < n; i++) {
      const v = get(rows[i]!);
      col[i] = text && typeof v === 'string' ? v.toLowerCase() : v;
    }
    return col;
  });
  const idx = Array.from({ length: n }, (_, i) => i);
  idx.sort((a, b) => {
    for (let k = 0; k < order.length; k++) {
      const col = keys[k]!;
      const va = col[a]!;
      const vb = col[b]!;
      if (va === vb) continue;
      const o = order[k]!;
      if (va === null) return o.nullsLast ? 1 : -1;
      if (vb === null) return o.nullsLast ? -1 : 1;
      const c = va < vb ? -1 : va > vb ? 1 : 0;
      if (c !== 0) return o.desc ? -c : c;
    }
    return a - b;
  });
  return idx.map((i) => rows[i]!);
}

// ---------------------------------------------------------------- the compiled query

/** SOQL reference, "OFFSET": the maximum offset is 2,000 rows. */
export const MAX_OFFSET = 2000;

export interface BoundQuery {
  soql: string;
  object: ObjectDef;
  /** null for COUNT() */
  fields: BoundField[] | null;
  where: BoundCondition | null;
  dateDependent: boolean;
  orderBy: BoundOrder[];
  limit: number | null;
  offset: number | null;
  project: Projector;
  /** WHERE as a closure; date literals evaluated against `now` */
  predicate(now: Date): Predicate;
}

export function bindQuery(schema: Schema, soql: string, ast: SelectQuery = parseSoql(soql)): BoundQuery {
  const err: ErrorAt = (code, pos, reason) => queryError(code, soql, pos, reason);
  const obj = schema.describe(ast.object.name);
  if (!obj) {
    throw err(
      'INVALID_TYPE',
      ast.object.pos,
      `sObject type '${ast.object.name}' is not supported. If you are attempting to use a custom object, be sure to append the ` +
        `'__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.`,
    );
  }
  let fields: BoundField[] | null = null;
  if (ast.fields) {
    fields = [];
    const seen = new Set<string>();
    for (const f of ast.fields) {
      const b = bindField(schema, obj, f.path, f.pos, err);
      const key = b.path.toLowerCase();
      if (seen.has(key)) throw err('MALFORMED_QUERY', f.pos, `duplicate field selected: ${b.path}`);
      seen.add(key);
      fields.push(b);
    }
  }
  const where = ast.where ? bindCondition(schema, obj, ast.where, err) : null;
  const orderBy = ast.orderBy.map((o) => ({
    field: bindField(schema, obj, o.field.path, o.field.pos, err),
    desc: o.desc,
    nullsLast: o.nullsLast,
  }));
  if (ast.offset !== null && ast.offset > MAX_OFFSET) {
    throw new SalesforceError('NUMBER_OUTSIDE_VALID_RANGE', `Maximum SOQL offset allowed is ${MAX_OFFSET}`);
  }
  const dateDependent = usesDateLiterals(where);
  let fixed: Predicate | null = null;
  return {
    soql,
    object: obj,
    fields,
    where,
    dateDependent,
    orderBy,
    limit: ast.limit,
    offset: ast.offset,
    project: makeProjector(schema, obj, fields ?? []),
    predicate(now) {
      if (!where) return () => true;
      if (dateDependent) return buildPredicate(where, now);
      fixed ??= buildPredicate(where, now);
      return fixed;
    },
  };
}

export interface ExecuteOptions {
  now: Date;
  includeDeleted: boolean;
  shuffleUnordered: boolean;
  apiVersion: string;
}

export function execute(
  q: BoundQuery,
  records: Iterable<OrgRecord>,
  opts: ExecuteOptions,
): { totalSize: number; records: ApiRecord[] } {
  const pred = q.predicate(opts.now);
  let rows: OrgRecord[] = [];
  for (const r of records) {
    if (!opts.includeDeleted && r.values.IsDeleted === true) continue;
    if (pred(r)) rows.push(r);
  }
  if (q.orderBy.length > 0) rows = sortRecords(rows, q.orderBy);
  else if (opts.shuffleUnordered) {
    for (let i = rows.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      const t = rows[i]!;
      rows[i] = rows[j]!;
      rows[j] = t;
    }
  }
  const start = q.offset ?? 0;
  const end = q.limit === null ? rows.length : start + q.limit;
  if (start > 0 || end < rows.length) rows = rows.slice(start, end);
  if (!q.fields) return { totalSize: rows.length, records: [] };
  const out = new Array<ApiRecord>(rows.length);
  for (let i = 0; i < rows.length; i++) out[i] = q.project(rows[i]!, opts.apiVersion);
  return { totalSize: rows.length, records: out };
}
