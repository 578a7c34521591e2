// The emulated org's data model: object definitions, records, validation, events and SOQL.
// Pure TypeScript, no HTTP: the REST server (rest.ts) and the CometD server (cometd.ts) drive it.
// API SKELETON: bodies are being filled in; the signatures are the contract.

import type { ObjectDef } from './objects.ts';

export type { FieldDef, ObjectDef, FieldType } from './objects.ts';

export type FieldValue = string | number | boolean | null;

/** datetimes are epoch milliseconds (number); dates 'YYYY-MM-DD'; values keyed by canonical API name */
export interface OrgRecord {
  object: string;
  Id: string;
  values: Record<string, FieldValue>;
}

/** A record shaped like the REST API returns it. */
export type ApiRecord = { attributes: { type: string; url: string }; [field: string]: unknown };

export const DEFAULT_API_VERSION = '62.0';

/** HTTP status per error code, as the REST API answers. */
const STATUS: Record<string, number> = { NOT_FOUND: 404, ENTITY_IS_DELETED: 404 };

export class SalesforceError extends Error {
  readonly errorCode: string;
  readonly status: number;
  readonly fields?: string[];
  constructor(errorCode: string, message: string, opts: { status?: number; fields?: string[] } = {}) {
    super(message);
    this.name = 'SalesforceError';
    this.errorCode = errorCode;
    this.status = opts.status ?? STATUS[errorCode] ?? 400;
    if (opts.fields) this.fields = opts.fields;
  }
  /** the REST API error body: [{ message, errorCode, fields }] */
  toJSON(): { message: string; errorCode: string; fields?: string[] } {
    return this.fields
      ? { message: this.message, errorCode: this.errorCode, fields: this.fields }
      : { message: this.message, errorCode: this.errorCode };
  }
}

export interface OrgOptions {
  objects?: ObjectDef[];
  now?: () => Date;
  defaultOwnerEmail?: string;
  /** when a query has no ORDER BY, return rows in a random order (Salesforce promises no order) */
  shuffleUnordered?: boolean;
}

export interface InsertOptions {
  createdDate?: string | Date;
  systemModstamp?: string | Date;
  ownerId?: string;
}

export interface UpdateOptions {
  systemModstamp?: string | Date;
}

export interface QueryOptions {
  includeDeleted?: boolean;
  apiVersion?: string;
}

export interface QueryResult {
  totalSize: number;
  done: true;
  records: ApiRecord[];
}

export interface CompiledQuery {
  object: string;
  /** selected field paths, canonical names (e.g. ['Id', 'Owner.Email']); [] for COUNT() */
  fields: string[];
  isCount: boolean;
  /** WHERE clause only (not LIMIT/OFFSET) */
  matches(r: OrgRecord): boolean;
  project(r: OrgRecord, opts?: { apiVersion?: string }): ApiRecord;
}

/** What changed, passed to listeners as the second argument. */
export interface ChangeInfo {
  /** canonical names of the fields whose value changed (all set fields for insert) */
  changedFields: string[];
}

export type OrgEvent = 'insert' | 'update' | 'delete' | 'undelete';
export type OrgListener = (r: OrgRecord, change: ChangeInfo) => void;

export class Org {
  readonly defaultUserId: string = '';
  constructor(_opts: OrgOptions = {}) {}
  objectNames(): string[] {
    throw new Error('not implemented');
  }
  /** case-insensitive */
  describe(_object: string): ObjectDef | undefined {
    throw new Error('not implemented');
  }
  insert(_object: string, _fields: Record<string, unknown>, _opts?: InsertOptions): OrgRecord {
    throw new Error('not implemented');
  }
  insertMany(_object: string, _rows: Array<Record<string, unknown>>, _opts?: InsertOptions): OrgRecord[] {
    throw new Error('not implemented');
  }
  update(_object: string, _id: string, _fields: Record<string, unknown>, _opts?: UpdateOptions): OrgRecord {
    throw new Error('not implemented');
  }
  /** soft delete (IsDeleted = true; visible to query with includeDeleted) */
  delete(_object: string, _id: string): OrgRecord {
    throw new Error('not implemented');
  }
  get(_object: string, _id: string): OrgRecord | undefined {
    throw new Error('not implemented');
  }
  getById(_id: string): OrgRecord | undefined {
    throw new Error('not implemented');
  }
  all(_object: string): OrgRecord[] {
    throw new Error('not implemented');
  }
  count(_object: string): number {
    throw new Error('not implemented');
  }
  updatedBetween(_object: string, _start: Date, _end: Date): { ids: string[]; latestDateCovered: string } {
    throw new Error('not implemented');
  }
  query(_soql: string, _opts?: QueryOptions): QueryResult {
    throw new Error('not implemented');
  }
  compile(_soql: string): CompiledQuery {
    throw new Error('not implemented');
  }
  toApiRecord(_r: OrgRecord, _fields?: string[], _opts?: { apiVersion?: string }): ApiRecord {
    throw new Error('not implemented');
  }
  on(_event: OrgEvent, _listener: OrgListener): void {
    throw new Error('not implemented');
  }
  off(_event: OrgEvent, _listener: OrgListener): void {
    throw new Error('not implemented');
  }
  reset(): void {
    throw new Error('not implemented');
  }
}
