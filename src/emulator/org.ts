// The emulated org's data model: object definitions, records, validation, change events and SOQL.
// Pure TypeScript, no HTTP: the REST server (rest.ts) and the CometD server (cometd.ts) drive it.

import {
  CREATE_DEFAULTS,
  PERSON_NAME_OBJECTS,
  STANDARD_OBJECTS,
  type FieldDef,
  type ObjectDef,
} from './objects.ts';
import { isValidId, makeId, normalizeId } from '../sources/salesforce/ids.ts';
import { SalesforceError } from './soql/errors.ts';
import {
  bindField,
  bindQuery,
  execute,
  fieldIndex,
  makeProjector,
  type BoundQuery,
  type Projector,
  type Schema,
} from './soql/compile.ts';
import type { ApiRecord, FieldValue, OrgRecord } from './soql/compile.ts';
import { formatDateTime } from './soql/dates.ts';

export type { FieldDef, ObjectDef, FieldType } from './objects.ts';
export type { ApiRecord, FieldValue, OrgRecord } from './soql/compile.ts';
export { SalesforceError } from './soql/errors.ts';
export { formatDateTime } from './soql/dates.ts';
export { STANDARD_OBJECTS } from './objects.ts';

export const DEFAULT_API_VERSION = '62.0';
export const DEFAULT_USERNAME = 'integration@example.com';

export interface OrgOptions {
  objects?: ObjectDef[];
  now?: () => Date;
  /** Email (and Username) of the default integration user; integration@example.com */
  defaultOwnerEmail?: string;
  /** when a query has no ORDER BY, return rows in a random order (Salesforce promises no order) */
  shuffleUnordered?: boolean;
}

export interface InsertOptions {
  /** backdated import / late-committing transaction; SystemModstamp defaults to it */
  createdDate?: string | Date;
  systemModstamp?: string | Date;
  ownerId?: string;
}

export interface UpdateOptions {
  systemModstamp?: string | Date;
}

export interface QueryOptions {
  /** queryAll: deleted records too */
  includeDeleted?: boolean;
  /** for attributes.url; default 62.0 */
  apiVersion?: string;
}

export interface QueryResult {
  totalSize: number;
  records: ApiRecord[];
}

export interface CompiledQuery {
  object: string;
  /** selected field paths, canonical names (e.g. ['Id', 'Owner.Email']); [] for COUNT() */
  fields: string[];
  isCount: boolean;
  /** the WHERE clause only (LIMIT/OFFSET/ORDER BY are ignored); date literals use the org's now() */
  matches(r: OrgRecord): boolean;
  project(r: OrgRecord, opts?: { apiVersion?: string }): ApiRecord;
}

/** What changed; passed to listeners as the second argument. */
export interface ChangeInfo {
  /** canonical names of the fields whose value changed (all non-null fields for insert) */
  changedFields: string[];
}

export type OrgEvent = 'insert' | 'update' | 'delete' | 'undelete';
export type OrgListener = (r: OrgRecord, change: ChangeInfo) => void;

const ISO_DATETIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}$/;
// A pragmatic address check (Salesforce rejects values without local part, @ and domain).
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const QUERY_CACHE_SIZE = 256;

function truncateToSecond(ms: number): number {
  return ms - (((ms % 1000) + 1000) % 1000);
}

/** Salesforce datetimes accept any ISO-8601 offset; stored as epoch ms. */
function parseDateTime(v: unknown): number | null {
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? null : v.getTime();
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v !== 'string' || !ISO_DATETIME.test(v)) return null;
  // Date.parse wants +hh:mm; Salesforce also writes +hhmm
  const normal = v.replace(/([+-]\d{2})(\d{2})$/, '$1:$2');
  const ms = Date.parse(normal);
  return Number.isNaN(ms) ? null : ms;
}

function jsonType(v: unknown): string {
  if (v === null) return 'VALUE_NULL';
  if (typeof v === 'string') return 'VALUE_STRING';
  if (typeof v === 'number') return Number.isInteger(v) ? 'VALUE_NUMBER_INT' : 'VALUE_NUMBER_FLOAT';
  if (typeof v === 'boolean') return v ? 'VALUE_TRUE' : 'VALUE_FALSE';
  return Array.isArray(v) ? 'START_ARRAY' : 'START_OBJECT';
}

export class Org implements Schema {
  readonly options: OrgOptions;
  private readonly objects = new Map<string, ObjectDef>();
  private readonly tables = new Map<string, Map<string, OrgRecord>>();
  private readonly byId = new Map<string, OrgRecord>();
  /** per key prefix; never reset, so an Id is never reused after reset() */
  private readonly counters = new Map<string, number>();
  private readonly listeners = new Map<OrgEvent, Set<OrgListener>>();
  private readonly queryCache = new Map<string, BoundQuery>();
  private readonly projectors = new Map<string, Projector>();
  private readonly now: () => Date;
  private defaultUser!: OrgRecord;
  private caseNumber = 1000;

  constructor(opts: OrgOptions = {}) {
    this.options = opts;
    this.now = opts.now ?? (() => new Date());
    for (const o of opts.objects ?? STANDARD_OBJECTS) this.objects.set(o.name.toLowerCase(), o);
    if (!this.objects.has('user'))
      this.objects.set(
        'user',
        STANDARD_OBJECTS.find((o) => o.name === 'User')!,
      );
    this.reset();
  }

  /** The default integration user: owner, creator and modifier of everything inserted. */
  get defaultUserId(): string {
    return this.defaultUser.Id;
  }

  get users(): { default: OrgRecord; byUsername(username: string): OrgRecord | undefined } {
    return {
      default: this.defaultUser,
      byUsername: (username) =>
        this.all('User').find((u) => String(u.values.Username).toLowerCase() === username.toLowerCase()),
    };
  }

  /** clears all data, keeps objects and re-seeds the default user (same Id as before) */
  reset(): void {
    this.tables.clear();
    this.byId.clear();
    this.queryCache.clear();
    for (const o of this.objects.values()) this.tables.set(o.name, new Map());
    const email = this.options.defaultOwnerEmail ?? DEFAULT_USERNAME;
    const userDef = this.objects.get('user')!;
    const id = makeId(userDef.keyPrefix, 1);
    const ts = truncateToSecond(this.now().getTime());
    const user: OrgRecord = { object: 'User', Id: id, values: {} };
    for (const f of userDef.fields) user.values[f.name] = f.type === 'boolean' ? false : null;
    Object.assign(user.values, {
      Id: id,
      Username: email,
      Email: email,
      FirstName: 'Integration',
      LastName: 'User',
      Name: 'Integration User',
      Alias: 'integ',
      IsActive: true,
      TimeZoneSidKey: 'GMT',
      LocaleSidKey: 'en_US',
      LanguageLocaleKey: 'en_US',
      EmailEncodingKey: 'UTF-8',
      CreatedById: id,
      LastModifiedById: id,
      CreatedDate: ts,
      LastModifiedDate: ts,
      SystemModstamp: ts,
    });
    this.tables.get('User')!.set(id, user);
    this.byId.set(id, user);
    this.defaultUser = user;
    if ((this.counters.get(userDef.keyPrefix) ?? 0) < 2) this.counters.set(userDef.keyPrefix, 2);
  }

  objectNames(): string[] {
    return [...this.objects.values()].map((o) => o.name);
  }

  /** case-insensitive */
  describe(object: string): ObjectDef | undefined {
    return this.objects.get(object.toLowerCase());
  }

  private requireObject(object: string): ObjectDef {
    const def = this.describe(object);
    if (!def) {
      throw new SalesforceError(
        'INVALID_TYPE',
        `sObject type '${object}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.`,
      );
    }
    return def;
  }

  // ------------------------------------------------------------ writes

  /** Converts one JSON value to the stored representation, or throws as the REST API does. */
  private coerce(def: FieldDef, raw: unknown): FieldValue {
    if (raw === null || raw === undefined) return null;
    const bad = (): never => {
      throw new SalesforceError(
        'JSON_PARSER_ERROR',
        `Cannot deserialize instance of ${def.type === 'datetime' ? 'dateTime' : def.type} from ${jsonType(raw)} value ${JSON.stringify(raw)} or request may be missing a required field`,
        { fields: [def.name] },
      );
    };
    switch (def.type) {
      case 'boolean':
        if (typeof raw === 'boolean') return raw;
        if (raw === 'true' || raw === 'false') return raw === 'true';
        return bad();
      case 'int':
      case 'double':
      case 'currency':
      case 'percent': {
        const n =
          typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
        if (!Number.isFinite(n)) return bad();
        return def.type === 'int' ? Math.trunc(n) : n;
      }
      case 'date': {
        if (typeof raw === 'string' && ISO_DATE.test(raw) && !Number.isNaN(Date.parse(raw))) return raw;
        const ms = parseDateTime(raw);
        if (ms === null) return bad();
        return new Date(ms).toISOString().slice(0, 10);
      }
      case 'datetime': {
        const ms = parseDateTime(raw);
        if (ms === null) return bad();
        return ms;
      }
      case 'reference':
      case 'id': {
        if (typeof raw !== 'string') return bad();
        if (raw === '') return null;
        const id = normalizeId(raw);
        if (!id)
          throw new SalesforceError('MALFORMED_ID', `${def.label}: id value of incorrect type: ${raw}`, {
            fields: [def.name],
          });
        if (def.type === 'reference') {
          const target = this.byId.get(id);
          const allowed = (def.referenceTo ?? []).map((t) => t.toLowerCase());
          if (!target || !allowed.includes(target.object.toLowerCase())) {
            throw new SalesforceError('INVALID_CROSS_REFERENCE_KEY', `invalid cross reference id`, {
              fields: [def.name],
            });
          }
        }
        return id;
      }
      default: {
        if (typeof raw !== 'string' && typeof raw !== 'number' && typeof raw !== 'boolean') return bad();
        const s = String(raw);
        if (s === '') return null; // Salesforce stores empty text as null
        if (def.length !== undefined && s.length > def.length) {
          throw new SalesforceError(
            'STRING_TOO_LONG',
            `${def.label}: data value too large: ${s.slice(0, 40)} (max length=${def.length})`,
            {
              fields: [def.name],
            },
          );
        }
        if (def.type === 'email' && !EMAIL.test(s)) {
          throw new SalesforceError('INVALID_EMAIL_ADDRESS', `${def.label}: invalid email address: ${s}`, {
            fields: [def.name],
          });
        }
        return s;
      }
    }
  }

  /** Validates and converts a request body's fields (names case-insensitive, like the REST API). */
  private convertFields(
    obj: ObjectDef,
    fields: Record<string, unknown>,
    mode: 'create' | 'update',
  ): Record<string, FieldValue> {
    if (fields === null || typeof fields !== 'object' || Array.isArray(fields)) {
      throw new SalesforceError('JSON_PARSER_ERROR', 'The request body must be a JSON object');
    }
    const ix = fieldIndex(obj);
    const out: Record<string, FieldValue> = {};
    const readOnly: string[] = [];
    for (const key of Object.keys(fields)) {
      if (key === 'attributes') continue;
      const def = ix.byName.get(key.toLowerCase());
      if (!def) {
        throw new SalesforceError('INVALID_FIELD', `No such column '${key}' on sobject of type ${obj.name}`, {
          fields: [key],
        });
      }
      if (def.type === 'id') {
        if (mode === 'create')
          throw new SalesforceError(
            'INVALID_FIELD_FOR_INSERT_UPDATE',
            'cannot specify Id in an insert call',
            { fields: ['Id'] },
          );
        continue; // PATCH bodies may carry the Id; the URL decides
      }
      if (mode === 'create' ? !def.createable : !def.updateable) {
        readOnly.push(def.name);
        continue;
      }
      out[def.name] = this.coerce(def, fields[key]);
    }
    if (readOnly.length > 0) {
      throw new SalesforceError(
        'INVALID_FIELD_FOR_INSERT_UPDATE',
        `Unable to create/update fields: ${readOnly.join(', ')}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.`,
        { fields: readOnly },
      );
    }
    return out;
  }

  private stamp(v: string | Date | undefined, fallback: number): number {
    if (v === undefined) return fallback;
    const ms = parseDateTime(v);
    if (ms === null) throw new SalesforceError('JSON_PARSER_ERROR', `not an ISO-8601 datetime: ${String(v)}`);
    return truncateToSecond(ms);
  }

  private nextId(obj: ObjectDef): string {
    const n = this.counters.get(obj.keyPrefix) ?? 1;
    this.counters.set(obj.keyPrefix, n + 1);
    return makeId(obj.keyPrefix, n);
  }

  private computeDerived(obj: ObjectDef, values: Record<string, FieldValue>): void {
    if (PERSON_NAME_OBJECTS.has(obj.name) && 'LastName' in values) {
      values.Name =
        [values.FirstName, values.LastName]
          .filter((p) => p !== null && p !== undefined && p !== '')
          .join(' ') || null;
    }
  }

  private readonly templates = new WeakMap<ObjectDef, () => Record<string, FieldValue>>();

  /**
   * A factory of a new record's values before the request's fields: nulls, false booleans and
   * create defaults. Built as an object-literal function because V8 copies a 30-key object by
   * spread ~100x slower than it evaluates a literal, and insertMany must handle 100k rows fast.
   * Keys and values are JSON-encoded, so no field name can inject code.
   */
  private template(obj: ObjectDef): () => Record<string, FieldValue> {
    let t = this.templates.get(obj);
    if (!t) {
      const init: Record<string, FieldValue> = {};
      for (const f of obj.fields) init[f.name] = f.type === 'boolean' ? false : null;
      Object.assign(init, CREATE_DEFAULTS[obj.name]);
      const body = Object.entries(init)
        .map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`)
        .join(', ');
      t = new Function(`return { ${body} };`) as () => Record<string, FieldValue>;
      this.templates.set(obj, t);
    }
    return t;
  }

  private buildRecord(
    obj: ObjectDef,
    fields: Record<string, unknown>,
    opts: InsertOptions,
    nowMs: number,
  ): OrgRecord {
    const given = this.convertFields(obj, fields, 'create');
    const values = this.template(obj)();
    for (const k in given) if (given[k] !== null) values[k] = given[k]!;
    const missing = (obj.required ?? []).filter((k) => values[k] === null || values[k] === undefined);
    if (missing.length > 0) {
      throw new SalesforceError(
        'REQUIRED_FIELD_MISSING',
        `Required fields are missing: [${missing.join(', ')}]`,
        { fields: missing },
      );
    }
    if (obj.name === 'PushTopic') this.validatePushTopicQuery(values.Query ?? null);
    const id = this.nextId(obj);
    values.Id = id;
    const created = this.stamp(opts.createdDate, nowMs);
    const modstamp = this.stamp(opts.systemModstamp, created);
    values.CreatedDate = created;
    values.LastModifiedDate = modstamp;
    values.SystemModstamp = modstamp;
    values.IsDeleted = false;
    values.CreatedById = this.defaultUser.Id;
    values.LastModifiedById = this.defaultUser.Id;
    if ('OwnerId' in values) {
      const owner =
        opts.ownerId !== undefined
          ? this.coerce(fieldIndex(obj).byName.get('ownerid')!, opts.ownerId)
          : values.OwnerId;
      values.OwnerId = owner ?? this.defaultUser.Id;
    }
    if (obj.name === 'Case') values.CaseNumber = String(++this.caseNumber).padStart(8, '0');
    this.computeDerived(obj, values);
    return { object: obj.name, Id: id, values };
  }

  private validatePushTopicQuery(q: FieldValue): void {
    if (typeof q !== 'string') return;
    try {
      bindQuery(this, q);
    } catch (e) {
      if (e instanceof SalesforceError) {
        throw new SalesforceError(
          'INVALID_FIELD',
          `Query: ${e.message.trim().split('\n').pop() ?? e.message}`,
          { fields: ['Query'] },
        );
      }
      throw e;
    }
  }

  private store(r: OrgRecord): void {
    this.tables.get(r.object)!.set(r.Id, r);
    this.byId.set(r.Id, r);
  }

  /**
   * Creates a record: validates fields (unknown -> INVALID_FIELD, read-only ->
   * INVALID_FIELD_FOR_INSERT_UPDATE, required missing -> REQUIRED_FIELD_MISSING), assigns the Id,
   * audit fields (now truncated to whole seconds: Salesforce timestamps have second resolution,
   * unless opts backdates them) and the default owner. Emits 'insert'.
   */
  insert(object: string, fields: Record<string, unknown>, opts: InsertOptions = {}): OrgRecord {
    const obj = this.requireObject(object);
    const r = this.buildRecord(obj, fields, opts, truncateToSecond(this.now().getTime()));
    this.store(r);
    this.emit(
      'insert',
      r,
      Object.keys(r.values).filter((k) => r.values[k] !== null),
    );
    return r;
  }

  /** All rows are validated before any is stored (all or none). Same options for every row. */
  insertMany(object: string, rows: Array<Record<string, unknown>>, opts: InsertOptions = {}): OrgRecord[] {
    const obj = this.requireObject(object);
    const nowMs = truncateToSecond(this.now().getTime());
    const built = rows.map((row) => this.buildRecord(obj, row, opts, nowMs));
    for (const r of built) this.store(r);
    if (this.listeners.get('insert')?.size) {
      for (const r of built)
        this.emit(
          'insert',
          r,
          Object.keys(r.values).filter((k) => r.values[k] !== null),
        );
    }
    return built;
  }

  private requireLive(object: string, id: string): { obj: ObjectDef; rec: OrgRecord } {
    const obj = this.requireObject(object);
    const rec = this.get(obj.name, id);
    if (!rec) throw new SalesforceError('NOT_FOUND', 'The requested resource does not exist');
    return { obj, rec };
  }

  /** Updates fields; LastModifiedDate = SystemModstamp = now (or opts). Emits 'update'. */
  update(object: string, id: string, fields: Record<string, unknown>, opts: UpdateOptions = {}): OrgRecord {
    const { obj, rec } = this.requireLive(object, id);
    if (rec.values.IsDeleted === true) throw new SalesforceError('ENTITY_IS_DELETED', 'entity is deleted');
    const given = this.convertFields(obj, fields, 'update');
    const next = { ...rec.values, ...given };
    const missing = (obj.required ?? []).filter((k) => k in given && next[k] === null);
    if (missing.length > 0) {
      throw new SalesforceError(
        'REQUIRED_FIELD_MISSING',
        `Required fields are missing: [${missing.join(', ')}]`,
        { fields: missing },
      );
    }
    if (obj.name === 'PushTopic' && 'Query' in given) this.validatePushTopicQuery(next.Query ?? null);
    this.computeDerived(obj, next);
    const modstamp = this.stamp(opts.systemModstamp, truncateToSecond(this.now().getTime()));
    next.LastModifiedDate = modstamp;
    next.SystemModstamp = modstamp;
    next.LastModifiedById = this.defaultUser.Id;
    const changed = Object.keys(next).filter((k) => next[k] !== rec.values[k]);
    rec.values = next;
    this.emit('update', rec, changed);
    return rec;
  }

  /**
   * A system change (a roll-up recalculation, a sharing or formula-dependency update): only
   * SystemModstamp moves; LastModifiedDate and the fields stay. No change event: CDC publishes
   * changes to record fields, and this changes none.
   */
  touch(object: string, id: string, opts: UpdateOptions = {}): OrgRecord {
    const { rec } = this.requireLive(object, id);
    if (rec.values.IsDeleted === true) throw new SalesforceError('ENTITY_IS_DELETED', 'entity is deleted');
    const modstamp = this.stamp(opts.systemModstamp, truncateToSecond(this.now().getTime()));
    rec.values = { ...rec.values, SystemModstamp: modstamp };
    return rec;
  }

  /** Soft delete (the recycle bin): IsDeleted = true, visible to query with includeDeleted. Emits 'delete'. */
  delete(object: string, id: string): OrgRecord {
    const { rec } = this.requireLive(object, id);
    if (rec.values.IsDeleted === true) throw new SalesforceError('ENTITY_IS_DELETED', 'entity is deleted');
    const modstamp = truncateToSecond(this.now().getTime());
    rec.values = { ...rec.values, IsDeleted: true, SystemModstamp: modstamp };
    this.emit('delete', rec, ['IsDeleted', 'SystemModstamp']);
    return rec;
  }

  /** Restores a soft-deleted record. Emits 'undelete'. */
  undelete(object: string, id: string): OrgRecord {
    const { rec } = this.requireLive(object, id);
    if (rec.values.IsDeleted !== true)
      throw new SalesforceError('UNDELETE_FAILED', 'Entity is not in the recycle bin');
    const modstamp = truncateToSecond(this.now().getTime());
    rec.values = { ...rec.values, IsDeleted: false, SystemModstamp: modstamp, LastModifiedDate: modstamp };
    this.emit('undelete', rec, ['IsDeleted', 'SystemModstamp', 'LastModifiedDate']);
    return rec;
  }

  // ------------------------------------------------------------ reads

  /** by 15- or 18-char Id; includes soft-deleted records (check values.IsDeleted) */
  get(object: string, id: string): OrgRecord | undefined {
    const r = this.getById(id);
    return r && r.object.toLowerCase() === object.toLowerCase() ? r : undefined;
  }

  getById(id: string): OrgRecord | undefined {
    if (typeof id !== 'string') return undefined;
    const direct = this.byId.get(id);
    if (direct) return direct;
    const norm = isValidId(id) ? normalizeId(id) : null;
    return norm ? this.byId.get(norm) : undefined;
  }

  /** live (not deleted) records in insertion order */
  all(object: string): OrgRecord[] {
    const obj = this.requireObject(object);
    return [...this.tables.get(obj.name)!.values()].filter((r) => r.values.IsDeleted !== true);
  }

  count(object: string): number {
    return this.all(object).length;
  }

  /**
   * For sobjects/X/updated (REST "Get Updated Records"): live ids whose SystemModstamp is in
   * [start, end), and latestDateCovered = end.
   */
  updatedBetween(object: string, start: Date, end: Date): { ids: string[]; latestDateCovered: string } {
    const obj = this.requireObject(object);
    const lo = start.getTime();
    const hi = end.getTime();
    const ids: string[] = [];
    for (const r of this.tables.get(obj.name)!.values()) {
      const m = r.values.SystemModstamp as number;
      if (r.values.IsDeleted !== true && m >= lo && m < hi) ids.push(r.Id);
    }
    return { ids, latestDateCovered: formatDateTime(hi) };
  }

  private bound(soql: string): BoundQuery {
    let q = this.queryCache.get(soql);
    if (q) {
      // refresh LRU position
      this.queryCache.delete(soql);
      this.queryCache.set(soql, q);
      return q;
    }
    q = bindQuery(this, soql);
    this.queryCache.set(soql, q);
    if (this.queryCache.size > QUERY_CACHE_SIZE) this.queryCache.delete(this.queryCache.keys().next().value!);
    return q;
  }

  /**
   * Runs SOQL and returns ALL rows after WHERE / ORDER BY / LIMIT / OFFSET, shaped like the REST
   * API; the HTTP layer pages them. COUNT() gives totalSize and no records.
   * Throws SalesforceError (MALFORMED_QUERY, INVALID_FIELD, INVALID_TYPE, ...).
   */
  query(soql: string, opts: QueryOptions = {}): QueryResult {
    if (typeof soql !== 'string' || soql.trim() === '') {
      throw new SalesforceError('MALFORMED_QUERY', 'unexpected token: <EOF>');
    }
    const q = this.bound(soql);
    return execute(q, this.tables.get(q.object.name)!.values(), {
      now: this.now(),
      includeDeleted: opts.includeDeleted ?? false,
      shuffleUnordered: this.options.shuffleUnordered ?? false,
      apiVersion: opts.apiVersion ?? DEFAULT_API_VERSION,
    });
  }

  /** Compile once, evaluate against single records (PushTopic matching). */
  compile(soql: string): CompiledQuery {
    const q = bindQuery(this, soql);
    return {
      object: q.object.name,
      fields: q.fields?.map((f) => f.path) ?? [],
      isCount: q.fields === null,
      matches: (r) => r.object === q.object.name && q.predicate(this.now())(r),
      project: (r, o) => q.project(r, o?.apiVersion ?? DEFAULT_API_VERSION),
    };
  }

  /**
   * A record as the REST API shows it. `fields` are paths like in SELECT (case-insensitive,
   * 'Owner.Email' allowed); default: every field of the object. Unknown -> INVALID_FIELD.
   */
  toApiRecord(r: OrgRecord, fields?: string[], opts: { apiVersion?: string } = {}): ApiRecord {
    const obj = this.requireObject(r.object);
    const key = `${obj.name}|${fields ? fields.join(',') : '*'}`;
    let projector = this.projectors.get(key);
    if (!projector) {
      const err = (code: string, _pos: number, reason: string): SalesforceError =>
        new SalesforceError(code, reason);
      const paths = fields ?? obj.fields.map((f) => f.name);
      const bound = paths.map((p) => bindField(this, obj, p.split('.'), 0, err));
      projector = makeProjector(this, obj, bound);
      if (this.projectors.size > QUERY_CACHE_SIZE) this.projectors.clear();
      this.projectors.set(key, projector);
    }
    return projector(r, opts.apiVersion ?? DEFAULT_API_VERSION);
  }

  // ------------------------------------------------------------ events

  on(event: OrgEvent, listener: OrgListener): void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener);
  }

  off(event: OrgEvent, listener: OrgListener): void {
    this.listeners.get(event)?.delete(listener);
  }

  private emit(event: OrgEvent, r: OrgRecord, changedFields: string[]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const l of [...set]) {
      try {
        l(r, { changedFields });
      } catch (err) {
        // a broken subscriber must not fail the write that notified it
        console.error(`org ${event} listener failed`, err);
      }
    }
  }
}
