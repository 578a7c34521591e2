// REST API resources under /services/data, shaped as in the REST API Developer Guide
// (resources_list.htm, resources_query.htm, resources_sobject_*.htm, resources_limits.htm,
// errorcodes.htm). Errors are JSON arrays [{ message, errorCode }].

import { errorReply, json, methodNotAllowed, notFound, sfError } from './http.ts';
import type { Context, ReqInfo, Reply } from './http.ts';

import type { ApiRecord, FieldDef, ObjectDef } from './org.ts';
import { normalizeId } from '../sources/salesforce/ids.ts';
import type { Session } from './sessions.ts';

/** "REST API versions" season labels: 50.0 was Winter '21, three releases a year. */
export function versionLabel(v: string): string {
  const k = Math.round(Number(v)) - 50;
  const season = ['Winter', 'Spring', 'Summer'][((k % 3) + 3) % 3];
  const year = 21 + Math.floor(k / 3);
  return `${season} '${String(year).padStart(2, '0')}`;
}

export function versionsList(ctx: Context): Reply {
  return json(
    200,
    ctx.apiVersions.map((v) => ({ label: versionLabel(v), url: `/services/data/v${v}`, version: v })),
  );
}

// Sforce-Query-Options batchSize: "The default is 2,000; the minimum is 200, and the maximum is
// 2,000. There is no guarantee that the requested batch size is the actual batch size." (REST API
// Developer Guide, Query Options Header). Out-of-range values are clamped into [200, 2000].
export const DEFAULT_BATCH_SIZE = 2000;
const MIN_BATCH = 200;
const MAX_BATCH = 2000;

export function batchSizeOf(req: ReqInfo): number | undefined {
  const h = req.headers['sforce-query-options'];
  const v = Array.isArray(h) ? h.join(',') : h;
  if (!v) return undefined;
  const m = /batchSize\s*=\s*(-?\d+)/i.exec(v);
  if (!m) return undefined;
  const n = Number(m[1]);
  return Math.min(MAX_BATCH, Math.max(MIN_BATCH, n));
}

interface RestCall {
  ctx: Context;
  req: ReqInfo;
  version: string;
  /** path below /services/data/vXX.X, without leading slash, split on '/' (decoded) */
  segments: string[];
  session: Session;
}

/** Endpoint key for counters, e.g. 'GET query', 'POST sobjects'. */
export function restEndpointKey(method: string, segments: string[]): string {
  const [a, b, c] = segments;
  if (a === undefined || a === '') return `${method} resources`;
  if ((a === 'query' || a === 'queryAll') && b) return `${method} queryMore`;
  if (a === 'query' || a === 'queryAll' || a === 'limits') return `${method} ${a}`;
  if (a === 'sobjects') {
    if (!b) return `${method} describeGlobal`;
    if (c === 'describe' || c === 'updated' || c === 'deleted') return `${method} ${c}`;
    if (c) return method === 'GET' ? 'GET retrieve' : `${method} sobject`;
    return `${method} sobjects`;
  }
  return `${method} ${a}`;
}

export function handleRest(call: RestCall): Reply {
  const { req, segments } = call;
  const [a, b, c, d] = segments;
  const m = req.method;
  try {
    if (a === undefined || a === '') {
      if (m !== 'GET' && m !== 'HEAD') return methodNotAllowed(m, ['GET', 'HEAD']);
      return resources(call);
    }
    if (a === 'query' || a === 'queryAll') {
      if (m !== 'GET' && m !== 'HEAD') return methodNotAllowed(m, ['GET', 'HEAD']);
      if (c !== undefined) return notFound();
      return b ? queryMore(call, b) : query(call, a === 'queryAll');
    }
    if (a === 'limits' && b === undefined) {
      if (m !== 'GET' && m !== 'HEAD') return methodNotAllowed(m, ['GET', 'HEAD']);
      return limits(call);
    }
    if (a === 'sobjects') {
      if (!b) {
        if (m !== 'GET' && m !== 'HEAD') return methodNotAllowed(m, ['GET', 'HEAD']);
        return describeGlobal(call);
      }
      const def = call.ctx.org.describe(b);
      if (!def) return notFound();
      if (c === undefined) {
        if (m === 'POST') return create(call, def);
        if (m === 'GET' || m === 'HEAD')
          return json(200, { objectDescribe: globalEntry(call, def), recentItems: [] });
        return methodNotAllowed(m, ['GET', 'HEAD', 'POST']);
      }
      if (d !== undefined) return notFound();
      if (c === 'describe') {
        if (m !== 'GET' && m !== 'HEAD') return methodNotAllowed(m, ['GET', 'HEAD']);
        return json(200, describeObject(call, def));
      }
      if (c === 'updated') {
        if (m !== 'GET' && m !== 'HEAD') return methodNotAllowed(m, ['GET', 'HEAD']);
        return updated(call, def);
      }
      if (m === 'GET' || m === 'HEAD') return retrieve(call, def, c);
      if (m === 'PATCH') return update(call, def, c);
      if (m === 'DELETE') return remove(call, def, c);
      return methodNotAllowed(m, ['GET', 'HEAD', 'PATCH', 'DELETE']);
    }
    return notFound();
  } catch (err) {
    return errorReply(err);
  }
}

function resources({ ctx, version }: RestCall): Reply {
  const base = `/services/data/v${version}`;
  const names = ['sobjects', 'query', 'queryAll', 'limits'];
  const out: Record<string, string> = {};
  for (const n of names) out[n] = `${base}/${n}`;
  out.identity = `${ctx.url}/id/${ctx.orgId}/${ctx.users()[0]?.userId ?? ''}`;
  return json(200, out);
}

function query(call: RestCall, includeDeleted: boolean): Reply {
  const { ctx, req, version, session } = call;
  const q = req.query.get('q');
  if (q === null || q.trim() === '')
    return sfError(400, 'MALFORMED_QUERY', 'A query string has to be specified');
  const result = ctx.org.query(q, { includeDeleted, apiVersion: version });
  const batch = batchSizeOf(req) ?? DEFAULT_BATCH_SIZE;
  if (result.records.length <= batch) {
    return json(200, { totalSize: result.totalSize, done: true, records: result.records });
  }
  // The cursor holds a snapshot of the result, as a Salesforce query cursor does.
  const cursor = ctx.cursors.open(session.userId, result.records, batch);
  return page(version, cursor.id, result.records, result.totalSize, 0, batch, ctx);
}

function page(
  version: string,
  cursorId: string,
  records: ApiRecord[],
  totalSize: number,
  offset: number,
  batch: number,
  ctx: Context,
): Reply {
  const slice = records.slice(offset, offset + batch);
  const next = offset + slice.length;
  const done = next >= records.length;
  if (done) {
    ctx.cursors.close(cursorId);
    return json(200, { totalSize, done: true, records: slice });
  }
  return json(200, {
    totalSize,
    done: false,
    nextRecordsUrl: `/services/data/v${version}/query/${cursorId}-${next}`,
    records: slice,
  });
}

/** GET query/{locator}: the locator is `<cursor id>-<offset>`, e.g. 01gD0000002HU6KIAW-2000. */
function queryMore(call: RestCall, locator: string): Reply {
  const { ctx, req, version, session } = call;
  const invalid = () => sfError(400, 'INVALID_QUERY_LOCATOR', 'invalid query locator');
  const m = /^([0-9A-Za-z]{15,18})-(\d{1,9})$/.exec(locator);
  if (!m) return invalid();
  const cursor = ctx.cursors.get(m[1] as string, session.userId);
  if (!cursor) return invalid();
  const offset = Number(m[2]);
  if (offset <= 0 || offset >= cursor.records.length) return invalid();
  const batch = batchSizeOf(req) ?? cursor.batchSize;
  return page(version, cursor.id, cursor.records, cursor.totalSize, offset, batch, ctx);
}

function limits({ ctx }: RestCall): Reply {
  const max = ctx.limits.max;
  const remaining = Math.max(0, max - ctx.limits.used);
  const fixed = (n: number) => ({ Max: n, Remaining: n });
  return json(200, {
    DailyApiRequests: { Max: max, Remaining: remaining },
    ConcurrentAsyncGetReportInstances: fixed(200),
    DailyAsyncApexExecutions: fixed(250000),
    DailyBulkApiBatches: fixed(15000),
    DailyBulkV2QueryJobs: fixed(10000),
    DailyDurableStreamingApiEvents: fixed(10000),
    DailyGenericStreamingApiEvents: fixed(10000),
    DailyStreamingApiEvents: fixed(10000),
    DataStorageMB: fixed(5),
    FileStorageMB: fixed(20),
    MonthlyPlatformEventsUsageEntitlement: fixed(0),
    SingleEmail: fixed(15),
  });
}

function sobjectUrls(version: string, name: string): Record<string, string> {
  const base = `/services/data/v${version}/sobjects/${name}`;
  return { sobject: base, describe: `${base}/describe`, rowTemplate: `${base}/{ID}` };
}

function globalEntry({ version }: RestCall, def: ObjectDef): Record<string, unknown> {
  return {
    name: def.name,
    label: def.label,
    labelPlural: def.labelPlural,
    keyPrefix: def.keyPrefix,
    custom: def.name.endsWith('__c'),
    activateable: false,
    createable: true,
    updateable: true,
    deletable: true,
    queryable: true,
    retrieveable: true,
    searchable: true,
    replicateable: true,
    triggerable: true,
    layoutable: true,
    urls: sobjectUrls(version, def.name),
  };
}

function describeGlobal(call: RestCall): Reply {
  const sobjects = call.ctx.org
    .objectNames()
    .map((n) => call.ctx.org.describe(n))
    .filter((d): d is ObjectDef => d !== undefined)
    .map((d) => globalEntry(call, d));
  return json(200, { encoding: 'UTF-8', maxBatchSize: 200, sobjects });
}

const SOAP_TYPE: Record<string, string> = {
  id: 'tns:ID',
  reference: 'tns:ID',
  boolean: 'xsd:boolean',
  int: 'xsd:int',
  double: 'xsd:double',
  currency: 'xsd:double',
  percent: 'xsd:double',
  date: 'xsd:date',
  datetime: 'xsd:dateTime',
};

function describeField(f: FieldDef): Record<string, unknown> {
  const isNumber = f.type === 'int' || f.type === 'double' || f.type === 'currency' || f.type === 'percent';
  return {
    name: f.name,
    label: f.label,
    type: f.type,
    soapType: SOAP_TYPE[f.type] ?? 'xsd:string',
    length: f.length ?? 0,
    precision: isNumber && f.type !== 'int' ? 18 : 0,
    scale: f.type === 'currency' ? 2 : 0,
    digits: f.type === 'int' ? 9 : 0,
    nillable: f.nillable,
    createable: f.createable,
    updateable: f.updateable,
    defaultedOnCreate: f.name === 'Id' || f.name === 'OwnerId' || f.type === 'boolean' || !f.createable,
    filterable: f.type !== 'textarea',
    sortable: f.type !== 'textarea',
    groupable: f.type !== 'textarea' && !isNumber,
    idLookup: f.name === 'Id',
    externalId: false,
    unique: false,
    custom: f.name.endsWith('__c'),
    calculated: false,
    autoNumber: false,
    referenceTo: f.referenceTo ?? [],
    relationshipName: f.relationshipName ?? null,
    picklistValues: (f.picklistValues ?? []).map((v) => ({
      active: true,
      defaultValue: false,
      label: v,
      validFor: null,
      value: v,
    })),
  };
}

function describeObject(call: RestCall, def: ObjectDef): Record<string, unknown> {
  return {
    ...globalEntry(call, def),
    fields: def.fields.map(describeField),
    childRelationships: [],
    recordTypeInfos: [],
  };
}

function parseJsonBody(
  req: ReqInfo,
): { ok: true; value: Record<string, unknown> } | { ok: false; reply: Reply } {
  let value: unknown;
  try {
    value = JSON.parse(req.body);
  } catch (err) {
    const detail = err instanceof Error ? err.message : 'invalid JSON';
    return {
      ok: false,
      reply: sfError(400, 'JSON_PARSER_ERROR', `Unexpected character in request body: ${detail}`),
    };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return {
      ok: false,
      reply: sfError(
        400,
        'JSON_PARSER_ERROR',
        'Cannot deserialize instance of SObject from a non-object value',
      ),
    };
  }
  const { attributes: _ignored, ...fields } = value as Record<string, unknown>;
  return { ok: true, value: fields };
}

function create(call: RestCall, def: ObjectDef): Reply {
  const body = parseJsonBody(call.req);
  if (!body.ok) return body.reply;
  const r = call.ctx.org.insert(def.name, body.value);
  return json(201, { id: r.Id, success: true, errors: [] });
}

function lookupRecord(call: RestCall, def: ObjectDef, rawId: string) {
  const id = normalizeId(rawId);
  if (!id) return undefined;
  const r = call.ctx.org.get(def.name, id);
  if (!r || r.object !== def.name) return undefined;
  return r;
}

function retrieve(call: RestCall, def: ObjectDef, rawId: string): Reply {
  const r = lookupRecord(call, def, rawId);
  if (!r || r.values.IsDeleted === true) return notFound();
  const fieldsParam = call.req.query.get('fields');
  const fields = fieldsParam
    ? fieldsParam
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : undefined;
  return json(200, call.ctx.org.toApiRecord(r, fields, { apiVersion: call.version }));
}

function update(call: RestCall, def: ObjectDef, rawId: string): Reply {
  const body = parseJsonBody(call.req);
  if (!body.ok) return body.reply;
  const r = lookupRecord(call, def, rawId);
  if (!r || r.values.IsDeleted === true) return notFound();
  call.ctx.org.update(def.name, r.Id, body.value);
  return { status: 204, headers: {}, body: '' };
}

function remove(call: RestCall, def: ObjectDef, rawId: string): Reply {
  const r = lookupRecord(call, def, rawId);
  if (!r) return notFound();
  if (r.values.IsDeleted === true) return sfError(404, 'ENTITY_IS_DELETED', 'entity is deleted');
  call.ctx.org.delete(def.name, r.Id);
  return { status: 204, headers: {}, body: '' };
}

/** sobjects/{Object}/updated?start=&end= (REST API "Get Updated Records"). */
function updated(call: RestCall, def: ObjectDef): Reply {
  const start = call.req.query.get('start');
  const end = call.req.query.get('end');
  const s = start ? new Date(start) : undefined;
  const e = end ? new Date(end) : undefined;
  if (!s || !e || Number.isNaN(s.getTime()) || Number.isNaN(e.getTime())) {
    return sfError(
      400,
      'MALFORMED_QUERY',
      'start and end must be dateTime values, e.g. 2024-01-01T00:00:00+00:00',
    );
  }
  if (e.getTime() < s.getTime()) {
    return sfError(400, 'INVALID_REPLICATION_DATE', 'end date cannot be before start date');
  }
  return json(200, call.ctx.org.updatedBetween(def.name, s, e));
}
