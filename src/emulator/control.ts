// The emulator's control API: what tests and the demo use to shape the org and its failures.
// Served over HTTP under /__emulator/ (JSON, no auth) and in-process as `emulator.control`;
// both go through EmulatorControl so they behave the same. Documented in README.md here.

import type { ApiRecord, InsertOptions, UpdateOptions } from './org.ts';
import { errorReply, json } from './http.ts';
import type { ActiveFault, Context, FaultSpec, LimitsState, ReqInfo, Reply } from './http.ts';

export type { FaultSpec, LimitsState } from './http.ts';

export interface InsertRequest {
  records: Array<Record<string, unknown>>;
  createdDate?: string;
  systemModstamp?: string;
}

export class EmulatorControl {
  private readonly ctx: Context;
  private nextFaultId = 1;

  constructor(ctx: Context) {
    this.ctx = ctx;
  }

  /**
   * Inserts records with chosen audit dates. A record's own `CreatedDate` / `SystemModstamp`
   * keys override the batch-wide `createdDate` / `systemModstamp`. Returns the new Ids in order.
   */
  insert(object: string, records: Array<Record<string, unknown>>, opts: InsertOptions = {}): string[] {
    const def = this.ctx.org.describe(object);
    const name = def?.name ?? object;
    const perRecord = records.some((r) => 'CreatedDate' in r || 'SystemModstamp' in r);
    if (!perRecord) return this.ctx.org.insertMany(name, records, opts).map((r) => r.Id);
    return records.map((rec) => {
      const { CreatedDate, SystemModstamp, ...fields } = rec;
      const o: InsertOptions = { ...opts };
      if (typeof CreatedDate === 'string' || CreatedDate instanceof Date) o.createdDate = CreatedDate;
      if (typeof SystemModstamp === 'string' || SystemModstamp instanceof Date)
        o.systemModstamp = SystemModstamp;
      return this.ctx.org.insert(name, fields, o).Id;
    });
  }

  /**
   * Updates records as the REST API's PATCH does (fields validated, change events published), but
   * with a chosen SystemModstamp (= LastModifiedDate): a late-committing transaction, a change
   * made at a given second. Each record names its `Id`; its own `SystemModstamp` key overrides
   * the batch-wide option. Returns the Ids in order.
   */
  update(object: string, records: Array<Record<string, unknown>>, opts: UpdateOptions = {}): string[] {
    const def = this.ctx.org.describe(object);
    const name = def?.name ?? object;
    return records.map((rec) => {
      const { Id, SystemModstamp, ...fields } = rec;
      if (typeof Id !== 'string') throw new TypeError('each updated record needs its Id');
      const o: UpdateOptions = { ...opts };
      if (typeof SystemModstamp === 'string' || SystemModstamp instanceof Date)
        o.systemModstamp = SystemModstamp;
      return this.ctx.org.update(name, Id, fields, o).Id;
    });
  }

  /** A system change: only SystemModstamp moves (see Org.touch). Returns the Ids. */
  touch(object: string, ids: string[], opts: UpdateOptions = {}): string[] {
    const def = this.ctx.org.describe(object);
    const name = def?.name ?? object;
    return ids.map((id) => this.ctx.org.touch(name, id, opts).Id);
  }

  /** Every record of an object (deleted ones included), REST-shaped with all fields. */
  records(object: string): ApiRecord[] {
    const def = this.ctx.org.describe(object);
    if (!def) return [];
    return this.ctx.org.all(def.name).map((r) => this.ctx.org.toApiRecord(r));
  }

  /** Makes the next `count` requests matching method + path fail or wait. Returns the fault id. */
  addFault(spec: FaultSpec): number {
    if (typeof spec.path !== 'string') throw new TypeError('fault path must be a regular expression string');
    const regex = new RegExp(spec.path);
    const count = spec.count ?? 1;
    if (!Number.isInteger(count) || count < 1) throw new TypeError('fault count must be a positive integer');
    if (
      spec.status !== undefined &&
      (!Number.isInteger(spec.status) || spec.status < 100 || spec.status > 599)
    ) {
      throw new TypeError('fault status must be an HTTP status code');
    }
    if (
      spec.delayMs !== undefined &&
      (typeof spec.delayMs !== 'number' || spec.delayMs < 0 || spec.delayMs > 600_000)
    ) {
      throw new TypeError('fault delayMs must be between 0 and 600000');
    }
    const f: ActiveFault = { id: this.nextFaultId++, path: spec.path, spec, regex, remaining: count };
    this.ctx.faults.push(f);
    return f.id;
  }

  faults(): Array<FaultSpec & { id: number; remaining: number }> {
    return this.ctx.faults.map((f) => ({ ...f.spec, id: f.id, remaining: f.remaining }));
  }

  clearFaults(): void {
    this.ctx.faults.length = 0;
  }

  /** Ends every access token now; clients must refresh or log in again. Returns how many. */
  expireSessions(): number {
    return this.ctx.sessions.expireAll();
  }

  /** Releases every open query cursor (their nextRecordsUrl then answer INVALID_QUERY_LOCATOR). */
  expireQueryLocators(): number {
    return this.ctx.cursors.clear();
  }

  /** Sets the daily API allocation and/or how much of it is used. */
  setLimits(l: Partial<LimitsState>): LimitsState {
    for (const [k, v] of Object.entries(l)) {
      if (v !== undefined && (!Number.isInteger(v) || v < 0))
        throw new TypeError(`limits.${k} must be a non-negative integer`);
    }
    if (l.max !== undefined) this.ctx.limits.max = l.max;
    if (l.used !== undefined) this.ctx.limits.used = l.used;
    return this.limits();
  }

  limits(): LimitsState {
    return { ...this.ctx.limits };
  }

  /** Drops retained streaming events older than `olderThanMs` (all when absent). */
  ageOutEvents(olderThanMs?: number): void {
    this.ctx.cometd?.ageOut(olderThanMs);
  }

  counters(): Record<string, number> {
    return Object.fromEntries(this.ctx.counters);
  }

  resetCounters(): void {
    this.ctx.counters.clear();
  }

  /** Empties the org (users are provisioned again), faults, counters, cursors and API usage. Sessions stay valid. */
  reset(): void {
    this.ctx.org.reset();
    this.ctx.provisionUsers();
    this.ctx.faults.length = 0;
    this.ctx.counters.clear();
    this.ctx.cursors.clear();
    this.ctx.limits.used = 0;
  }
}

function parseJson(body: string): unknown {
  if (body.trim() === '') return {};
  return JSON.parse(body);
}

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function bad(message: string): Reply {
  return json(400, { error: 'bad_request', message });
}

/** HTTP routes under /__emulator/. `rest` is the path after that prefix. */
export function handleControl(control: EmulatorControl, req: ReqInfo, rest: string): Reply {
  let body: unknown;
  try {
    body = parseJson(req.body);
  } catch {
    return bad('body must be JSON');
  }
  const m = req.method;
  try {
    const touch = /^records\/([A-Za-z0-9_]+)\/touch$/.exec(rest);
    if (touch) {
      if (m !== 'POST') return json(405, { error: 'method_not_allowed' });
      if (!isObj(body) || !Array.isArray(body.ids) || !body.ids.every((i) => typeof i === 'string'))
        return bad('body must be { ids: [...], systemModstamp? }');
      const opts: UpdateOptions = {};
      if (typeof body.systemModstamp === 'string') opts.systemModstamp = body.systemModstamp;
      return json(200, { ids: control.touch(touch[1] as string, body.ids as string[], opts) });
    }
    const rec = /^records\/([A-Za-z0-9_]+)$/.exec(rest);
    if (rec) {
      const object = rec[1] as string;
      if (m === 'GET') return json(200, { records: control.records(object) });
      if (m === 'PATCH') {
        // body: [records...] | { records: [...], systemModstamp? }; each record carries its Id
        const list = Array.isArray(body) ? body : isObj(body) ? body.records : undefined;
        if (!Array.isArray(list) || !list.every(isObj)) return bad('records must be an array of objects');
        const opts: UpdateOptions = {};
        if (isObj(body) && typeof body.systemModstamp === 'string') opts.systemModstamp = body.systemModstamp;
        try {
          return json(200, { ids: control.update(object, list, opts) });
        } catch (err) {
          if (err instanceof TypeError) return bad(err.message);
          throw err;
        }
      }
      if (m !== 'POST') return json(405, { error: 'method_not_allowed' });
      // body: [records...] | { records: [...], createdDate?, systemModstamp? } | one record
      let rows: unknown[];
      const opts: InsertOptions = {};
      if (Array.isArray(body)) rows = body;
      else if (isObj(body) && Array.isArray(body.records)) {
        rows = body.records;
        if (typeof body.createdDate === 'string') opts.createdDate = body.createdDate;
        if (typeof body.systemModstamp === 'string') opts.systemModstamp = body.systemModstamp;
      } else if (isObj(body)) rows = [body];
      else return bad('records must be an array of objects');
      if (!rows.every(isObj)) return bad('records must be an array of objects');
      const ids = control.insert(object, rows, opts);
      return json(201, { ids });
    }
    switch (`${m} ${rest}`) {
      case 'POST faults': {
        if (!isObj(body)) return bad('fault must be an object');
        try {
          const id = control.addFault(body as unknown as FaultSpec);
          return json(201, { id });
        } catch (err) {
          return bad(err instanceof Error ? err.message : 'bad fault');
        }
      }
      case 'GET faults':
        return json(200, { faults: control.faults() });
      case 'DELETE faults':
        control.clearFaults();
        return json(200, { ok: true });
      case 'POST sessions/expire':
        return json(200, { expired: control.expireSessions() });
      case 'POST query-locators/expire':
        return json(200, { expired: control.expireQueryLocators() });
      case 'GET limits':
        return json(200, control.limits());
      case 'PUT limits': {
        if (!isObj(body)) return bad('limits must be an object');
        try {
          return json(200, control.setLimits(body as Partial<LimitsState>));
        } catch (err) {
          return bad(err instanceof Error ? err.message : 'bad limits');
        }
      }
      case 'POST events/age-out': {
        const older = isObj(body) && typeof body.olderThanMs === 'number' ? body.olderThanMs : undefined;
        control.ageOutEvents(older);
        return json(200, { ok: true });
      }
      case 'GET counters':
        return json(200, control.counters());
      case 'DELETE counters':
        control.resetCounters();
        return json(200, { ok: true });
      case 'POST reset':
        control.reset();
        return json(200, { ok: true });
      default:
        return json(404, { error: 'not_found', message: `no control route ${m} /__emulator/${rest}` });
    }
  } catch (err) {
    return errorReply(err);
  }
}
