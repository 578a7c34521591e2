// Polls Salesforce for one rule's new records and hands them, page by page, to the enqueue step.
//
// The cursor is the key (CreatedDate, Id) of the last record Salesforce returned in ORDER BY
// CreatedDate, Id: the watermark and its `lastId`, so it never runs ahead of Salesforce's clock. A
// regular poll reads only what comes after that key (`CreatedDate > w OR (CreatedDate = w AND
// Id > lastId)`): an idle poll is one call that reads nothing, even after a bulk import that put
// thousands of records in one second. Records whose transaction commits
// late carry a CreatedDate behind the watermark; a lookback sweep catches them: at most every
// `sweepEveryMs`, a poll re-reads from (start of the previous complete sweep - lookback), so a
// record that becomes visible up to `lookback` after its CreatedDate is always read. The outbox's
// UNIQUE(rule, record) ledger, not the cursor, decides what is new. Every page goes to the batch
// sink with the watermark it lets advance, and the next page is read only once the sink has
// committed both in ONE store transaction, so a crash re-reads at most one page.
//
// Pages are sized by weight, not only by count: a poller reads 50 records first, and from what a
// page weighed picks the size for the rest (up to 2,000, as many as fit PAGE_BUDGET_BYTES). A
// query's batch size is fixed when it opens, so a change of size re-queries after the last record
// read (the keyset form, one call more), and the size is kept for the next polls. Below
// Salesforce's smallest batch (200) a page is a query with LIMIT, followed by the next one while
// pages come back full. Wide records (a 32 KB Description on every Lead of a bulk import) then
// come in pages the daemon's heap can hold.
import type { Connection } from 'jsforce';
import type { Logger } from 'pino';
import type { RuleConfig } from '../../config/index.ts';
import type { Checkpoint, Store } from '../../store/index.ts';
import type { SourceRecord } from '../../types.ts';
import { parseDuration } from '../../util/duration.ts';
import { coerceError } from '../../util/errors.ts';
import { firesOnCreate } from '../../rules/index.ts';
import type { BatchSink } from '../types.ts';
import { isSalesforceId } from './ids.ts';
import { queryPages, type QueryOptions } from './query.ts';
import { toSourceRecord } from './records.ts';
import { buildEnrichmentQuery, buildPollQuery } from './soql.ts';

export interface PollResult {
  read: number;
  enqueued: number;
  /** this poll re-read the lookback window */
  sweep: boolean;
  dead: number;
  pages: number;
  apiCalls: number;
  watermark: string;
  durationMs: number;
}

export interface ApiUsage {
  used: number;
  limit: number;
}

export interface PollerOptions {
  rule: RuleConfig;
  conn: Connection;
  /** read for the rule's checkpoint; written only through `commit` */
  store: Pick<Store, 'getCheckpoint'>;
  /** the enqueue step (app/enqueue.ts): commits records and checkpoint together */
  commit: BatchSink;
  apiVersion: string;
  logger: Logger;
  /** Sforce-Query-Options batchSize: 200..2000 */
  batchSize?: number;
  /** how often a poll re-reads the lookback window; default min(60 s, lookback / 4) */
  sweepEveryMs?: number;
  /** per-request options for jsforce: `timeout` (ms), `retry` (jsforce retries GETs on 5xx) */
  http?: { timeout?: number; retry?: { maxRetries?: number; minTimeout?: number } };
  now?: () => Date;
  /** Sforce-Limit-Info after each call */
  onApiUsage?: (usage: ApiUsage) => void;
}

/** Salesforce said the org's API allocation is used up (REST API: 403 REQUEST_LIMIT_EXCEEDED). */
export function isRequestLimitError(err: unknown): boolean {
  return (err as { errorCode?: string } | null)?.errorCode === 'REQUEST_LIMIT_EXCEEDED';
}

function isInvalidLocator(err: unknown): boolean {
  return (err as { errorCode?: string } | null)?.errorCode === 'INVALID_QUERY_LOCATOR';
}

/** Salesforce's batchSize bounds (Sforce-Query-Options) */
export const MIN_BATCH = 200;
export const MAX_PAGE = 2000;
/** the smallest page (a LIMIT query), and the first one's size, before any record was weighed */
export const MIN_PAGE = 10;
export const FIRST_PAGE = 50;
/** ids per enrichment query (stream mode): Id IN (...) lists stay short */
export const ENRICH_MAX = 200;
/**
 * What one page of records may weigh, as the length of its field values: a page is held as the
 * reply's text, the parsed records and the rendered rows at once, under the daemon's heap cap.
 */
export const PAGE_BUDGET_BYTES = 2 * 1024 * 1024;

/** The length of a record's field values (strings by their length, anything else 16), nested ones included. */
export function recordWeight(v: unknown, depth = 0): number {
  if (typeof v === 'string') return v.length + 16;
  if (v === null || typeof v !== 'object' || depth > 4) return 16;
  let n = 16;
  for (const x of Object.values(v as Record<string, unknown>)) n += recordWeight(x, depth + 1);
  return n;
}

/** The page size for records like these: as many as fit the budget, within MIN_PAGE..max. */
export function pageSizeFor(records: SourceRecord[], max: number): number {
  let total = 0;
  for (const r of records) total += recordWeight(r.fields);
  const each = Math.max(1, total / records.length);
  return Math.max(MIN_PAGE, Math.min(max, Math.floor(PAGE_BUDGET_BYTES / each)));
}

export class RulePoller {
  readonly rule: RuleConfig;
  private readonly o: PollerOptions;
  private readonly lookbackMs: number;
  private readonly sweepEveryMs: number;
  private readonly log: Logger;
  private readonly maxPage: number;
  /** the page size of the next query: FIRST_PAGE until a page has shown what the records weigh */
  private pageSize: number;
  /** ids per enrichment query (stream mode), sized by weight the same way */
  private enrichSize = FIRST_PAGE;

  constructor(o: PollerOptions) {
    this.o = o;
    this.rule = o.rule;
    this.lookbackMs = parseDuration(o.rule.lookback);
    this.sweepEveryMs = o.sweepEveryMs ?? Math.min(60_000, Math.floor(this.lookbackMs / 4));
    this.log = o.logger;
    this.maxPage = Math.max(MIN_BATCH, Math.min(MAX_PAGE, o.batchSize ?? MAX_PAGE));
    // an explicit batchSize is also the first page's size
    this.pageSize = o.batchSize === undefined ? FIRST_PAGE : this.maxPage;
  }

  private now(): Date {
    return this.o.now ? this.o.now() : new Date();
  }

  /**
   * The rule's checkpoint, created at the first start: `startFrom: now` fixes the floor at this
   * moment (whole seconds), so records created before the first start are never notified.
   */
  async init(): Promise<Checkpoint> {
    const existing = await this.o.store.getCheckpoint(this.rule.name);
    if (existing) return existing;
    const start =
      this.rule.startFrom === 'now'
        ? new Date(Math.floor(this.now().getTime() / 1000) * 1000)
        : new Date(this.rule.startFrom);
    const floor = start.toISOString();
    await this.o.commit({ records: [], checkpoint: { floor, watermark: floor } });
    this.log.info({ floor }, 'first start: records created before the floor are not notified');
    const created = await this.o.store.getCheckpoint(this.rule.name);
    if (!created) throw new Error(`checkpoint for rule ${this.rule.name} was not stored`);
    return created;
  }

  /** One poll: query from watermark - lookback, page to the end, enqueue page by page. */
  async pollOnce(): Promise<PollResult> {
    const started = Date.now();
    const result: PollResult = {
      read: 0,
      enqueued: 0,
      sweep: false,
      dead: 0,
      pages: 0,
      apiCalls: 0,
      watermark: '',
      durationMs: 0,
    };
    let restarts = 0;
    for (;;) {
      try {
        await this.pollFromCheckpoint(result);
        break;
      } catch (err) {
        // Query locators expire (15 minutes idle) and are limited per user: start again from the
        // last committed page; the ledger makes the overlap harmless.
        if (isInvalidLocator(err) && restarts < 2) {
          restarts++;
          this.log.warn(
            { err: coerceError(err) },
            'query locator expired; re-querying from the last checkpoint',
          );
          continue;
        }
        throw err;
      }
    }
    result.durationMs = Date.now() - started;
    return result;
  }

  private async pollFromCheckpoint(result: PollResult): Promise<void> {
    const cp = await this.init();
    const floorMs = Date.parse(cp.floor);
    let watermarkMs = Date.parse(cp.watermark);
    const startedAt = this.now().getTime();
    // The sweep time is stored with the checkpoint, so a restart knows what the last sweep covered.
    const lastSweepAt = cp.sweptAt ? Date.parse(cp.sweptAt) : null;
    const sweep = lastSweepAt === null || startedAt - lastSweepAt >= this.sweepEveryMs;
    const sweepBase = lastSweepAt === null ? watermarkMs : Math.min(lastSweepAt, startedAt);
    const from = new Date(Math.max(floorMs, sweep ? sweepBase - this.lookbackMs : watermarkMs));
    result.sweep = sweep;
    let lastId = cp.lastId ?? null;
    // Keyset only for a whole-second watermark (what Salesforce's CreatedDate is) and a valid Id:
    // anything else reads the watermark's second again, as the ledger makes harmless.
    const keyset =
      !sweep &&
      lastId !== null &&
      isSalesforceId(lastId) &&
      watermarkMs % 1000 === 0 &&
      watermarkMs >= floorMs;
    let after = keyset ? { createdDate: new Date(watermarkMs), id: lastId! } : undefined;
    for (let resized = true; resized;) {
      resized = false;
      const size = this.pageSize;
      // below the smallest batch, a LIMIT query is the page
      const limit = size < MIN_BATCH ? size : undefined;
      const soql = buildPollQuery(this.rule, from, after, limit);
      const pages = queryPages(this.o.conn, this.o.apiVersion, soql, {
        ...this.queryOptions(),
        headers: { 'Sforce-Query-Options': `batchSize=${Math.max(MIN_BATCH, size)}` },
        onRequest: () => {
          result.apiCalls++;
          this.reportUsage();
        },
      });
      for await (const page of pages) {
        // Parse the whole page before writing anything: a malformed record must not move the cursor.
        const records = page.records.map((r) => toSourceRecord(this.rule.object, r));
        // a full LIMIT page may have more after it: the query goes on after its last record
        const final = page.done && !(limit !== undefined && records.length >= limit);
        // ORDER BY CreatedDate, Id: every record up to the page's last one (its key) has been read by
        // this query, whether it is a regular poll (which only returns keys after the cursor) or a
        // sweep (which reads whole seconds from further back). A sweep page ending inside the
        // cursor's second may set lastId back within it: the next poll then reads a little again.
        const last = records.at(-1);
        if (last) {
          const lastMs = Date.parse(last.createdDate);
          if (lastMs >= watermarkMs) {
            watermarkMs = lastMs;
            lastId = last.id;
          }
        }
        const { inserted, dead } = await this.o.commit({
          records: records.filter((r) => firesOnCreate(r, cp.floor)),
          checkpoint: {
            floor: cp.floor,
            watermark: new Date(watermarkMs).toISOString(),
            lastId,
            // the sweep counts once its last page is committed
            ...(sweep && final ? { sweptAt: new Date(startedAt).toISOString() } : {}),
          },
        });
        result.pages++;
        result.read += records.length;
        result.enqueued += inserted;
        result.dead += dead;
        // the size for records like these; a query's size is fixed, so a change re-queries
        // after this page's last record (whole seconds only: the keyset form compares them)
        if (last) {
          const next = pageSizeFor(records, this.maxPage);
          const change = next < size || next >= 2 * size;
          if (change) this.pageSize = next;
          const resumable = Date.parse(last.createdDate) % 1000 === 0;
          if (!final && resumable && (change || page.done)) {
            after = { createdDate: new Date(last.createdDate), id: last.id };
            resized = true;
            break;
          }
        }
      }
    }
    result.watermark = new Date(watermarkMs).toISOString();
  }

  /**
   * Stream mode: fetch the records an event named (the enrichment query applies the rule's
   * `where`), and commit them with the replay id, in one transaction. Returns rows inserted.
   */
  async enqueueByIds(ids: string[], replayId: string | null): Promise<number> {
    const valid = [...new Set(ids)].filter(isSalesforceId);
    const cp = await this.init();
    let inserted = 0;
    // One commit per chunk of ids, the chunk sized by weight like a poll page: a bulk change names
    // thousands of records (the streamers batch events), and holding all of them with wide fields
    // at once does not fit the heap cap. Only the last commit moves the replay id: after a crash
    // in between, the events come again and the ledger keeps what was committed from going twice.
    let i = 0;
    do {
      const chunk = valid.slice(i, i + this.enrichSize);
      i += chunk.length;
      const found: SourceRecord[] = [];
      let read = 0;
      if (chunk.length) {
        const soql = buildEnrichmentQuery(this.rule, chunk);
        const pages = queryPages(this.o.conn, this.o.apiVersion, soql, {
          ...this.queryOptions(),
          onRequest: () => this.reportUsage(),
        });
        const weighed: SourceRecord[] = [];
        for await (const page of pages) {
          for (const raw of page.records) {
            const r = toSourceRecord(this.rule.object, raw);
            weighed.push(r);
            if (firesOnCreate(r, cp.floor)) found.push(r);
          }
        }
        read = weighed.length;
        if (read) this.enrichSize = pageSizeFor(weighed, ENRICH_MAX);
      }
      const lastChunk = i >= valid.length;
      if (read === 0 && !lastChunk) continue;
      inserted += (
        await this.o.commit({
          records: found,
          // the poller's watermark as stored when this commits: a stream batch never moves it
          checkpoint: (current) => ({
            floor: (current ?? cp).floor,
            watermark: (current ?? cp).watermark,
            lastId: (current ?? cp).lastId ?? null,
            ...(lastChunk ? { replayId } : {}),
          }),
        })
      ).inserted;
    } while (i < valid.length);
    return inserted;
  }

  private queryOptions(): QueryOptions {
    return this.o.http ? { http: this.o.http } : {};
  }

  private reportUsage(): void {
    const usage = (this.o.conn.limitInfo as { apiUsage?: ApiUsage } | undefined)?.apiUsage;
    if (usage && this.o.onApiUsage) this.o.onApiUsage(usage);
  }
}
