// Polls Salesforce for one `on: updated` rule's changed records and hands them, with whether each
// matches `where` now, to the enqueue step, which judges each change (rules/triggers.ts).
//
// The cursor is the newest SystemModstamp read, with the created poller's lookback machinery:
// a regular poll reads from the watermark's second on; at most every `sweepEveryMs` a poll
// re-reads from (start of the previous complete sweep - lookback), catching late commits. The
// two sides of `where` are read by keyset pages in (SystemModstamp, Id) order and merged: a batch
// holds everything up to the smaller of the two sides' last keys, so when it commits, every
// change before that key is judged, and the watermark moves to it, in the same transaction as the
// judgements (match states and rows). A re-read is harmless: a state never moves backwards and
// the ledger key is (rule, record, SystemModstamp).
import type { Connection } from 'jsforce';
import type { Logger } from 'pino';
import type { RuleConfig } from '../../config/index.ts';
import type { ObservedRecord } from '../../rules/triggers.ts';
import type { Checkpoint, Store } from '../../store/index.ts';
import { parseDuration } from '../../util/duration.ts';
import type { BatchSink } from '../types.ts';
import { isSalesforceId } from './ids.ts';
import {
  ENRICH_MAX,
  FIRST_PAGE,
  MAX_PAGE,
  MIN_BATCH,
  pageSizeFor,
  type ApiUsage,
  type PollResult,
} from './poller.ts';
import { queryFirstPage, queryPages, type QueryOptions } from './query.ts';
import { toSourceRecord } from './records.ts';
import {
  buildUpdateEnrichmentQuery,
  buildUpdatePageQuery,
  updateSides,
  type KeysetPosition,
  type UpdateSide,
} from './update-soql.ts';

export interface UpdatePollerOptions {
  rule: RuleConfig;
  conn: Connection;
  store: Pick<Store, 'getCheckpoint'>;
  commit: BatchSink;
  apiVersion: string;
  logger: Logger;
  /**
   * the largest keyset page (the query's LIMIT), 200..2000, and the first page's size; unset, pages
   * are sized by weight as the created poller's (FIRST_PAGE first, then what fits the budget)
   */
  batchSize?: number;
  sweepEveryMs?: number;
  http?: { timeout?: number; retry?: { maxRetries?: number; minTimeout?: number } };
  now?: () => Date;
  onApiUsage?: (usage: ApiUsage) => void;
}

interface SideCursor {
  side: UpdateSide;
  after: KeysetPosition | null;
  buffer: ObservedRecord[];
  done: boolean;
}

const keyOf = (o: ObservedRecord): KeysetPosition => ({
  systemModstamp: o.record.systemModstamp,
  id: o.record.id,
});

/** (SystemModstamp, Id) order; Ids of one object have one length, so text order is Salesforce's */
function compareKeys(a: KeysetPosition, b: KeysetPosition): number {
  const t = Date.parse(a.systemModstamp) - Date.parse(b.systemModstamp);
  if (t !== 0) return t;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

export class UpdatePoller {
  readonly rule: RuleConfig;
  private readonly o: UpdatePollerOptions;
  private readonly lookbackMs: number;
  private readonly sweepEveryMs: number;
  private readonly maxPage: number;
  /** the LIMIT of the next page: FIRST_PAGE until a page has shown what the records weigh */
  private pageSize: number;
  /** ids per enrichment query (stream mode), sized by weight the same way, up to 200 */
  private enrichSize = FIRST_PAGE;

  constructor(o: UpdatePollerOptions) {
    this.o = o;
    this.rule = o.rule;
    this.lookbackMs = parseDuration(o.rule.lookback);
    this.sweepEveryMs = o.sweepEveryMs ?? Math.min(60_000, Math.floor(this.lookbackMs / 4));
    this.maxPage = Math.min(MAX_PAGE, Math.max(MIN_BATCH, o.batchSize ?? MAX_PAGE));
    this.pageSize = o.batchSize === undefined ? FIRST_PAGE : this.maxPage;
  }

  private now(): Date {
    return this.o.now ? this.o.now() : new Date();
  }

  /** As the created poller: the first start fixes the floor (startFrom) and the watermark at it. */
  async init(): Promise<Checkpoint> {
    const existing = await this.o.store.getCheckpoint(this.rule.name);
    if (existing) return existing;
    const start =
      this.rule.startFrom === 'now'
        ? new Date(Math.floor(this.now().getTime() / 1000) * 1000)
        : new Date(this.rule.startFrom);
    const floor = start.toISOString();
    await this.o.commit({ records: [], checkpoint: { floor, watermark: floor } });
    this.o.logger.info({ floor }, 'first start: changes before the floor are not notified');
    const created = await this.o.store.getCheckpoint(this.rule.name);
    if (!created) throw new Error(`checkpoint for rule ${this.rule.name} was not stored`);
    return created;
  }

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
    const cp = await this.init();
    const floorMs = Date.parse(cp.floor);
    let watermarkMs = Date.parse(cp.watermark);
    const startedAt = this.now().getTime();
    const lastSweepAt = cp.sweptAt ? Date.parse(cp.sweptAt) : null;
    const sweep = lastSweepAt === null || startedAt - lastSweepAt >= this.sweepEveryMs;
    const sweepBase = lastSweepAt === null ? watermarkMs : Math.min(lastSweepAt, startedAt);
    const from = new Date(Math.max(floorMs, sweep ? sweepBase - this.lookbackMs : watermarkMs));
    result.sweep = sweep;

    const cursors: SideCursor[] = updateSides(this.rule).map((side) => ({
      side,
      after: null,
      buffer: [],
      done: false,
    }));
    for (;;) {
      for (const c of cursors) {
        if (c.buffer.length === 0 && !c.done) await this.readPage(c, from, result);
      }
      const open = cursors.filter((c) => !c.done);
      // Everything up to the smallest last key of a side that has more is complete on both sides.
      const bound = open.length
        ? open.map((c) => keyOf(c.buffer.at(-1)!)).reduce((a, b) => (compareKeys(a, b) <= 0 ? a : b))
        : null;
      const taken: ObservedRecord[] = [];
      for (const c of cursors) {
        const keep: ObservedRecord[] = [];
        for (const o of c.buffer) (bound && compareKeys(keyOf(o), bound) > 0 ? keep : taken).push(o);
        c.buffer = keep;
      }
      taken.sort((a, b) => compareKeys(keyOf(a), keyOf(b)));
      for (const o of taken) watermarkMs = Math.max(watermarkMs, Date.parse(o.record.systemModstamp));
      if (bound) {
        // the bound's second may continue: the watermark stops at it, and the next poll re-reads it
        watermarkMs = Math.max(Date.parse(cp.watermark), Date.parse(bound.systemModstamp));
      }
      const finished = bound === null;
      if (taken.length > 0 || finished) {
        const { inserted, dead } = await this.o.commit({
          records: [],
          observed: taken,
          checkpoint: {
            floor: cp.floor,
            watermark: new Date(watermarkMs).toISOString(),
            ...(sweep && finished ? { sweptAt: new Date(startedAt).toISOString() } : {}),
          },
        });
        result.read += taken.length;
        result.enqueued += inserted;
        result.dead += dead;
      }
      if (finished) break;
    }
    result.watermark = new Date(watermarkMs).toISOString();
    result.durationMs = Date.now() - started;
    return result;
  }

  private async readPage(c: SideCursor, from: Date, result: PollResult): Promise<void> {
    // Every page is its own LIMIT query after the side's last key, so its size can follow the
    // weight of the records from one page to the next (the two sides' records are alike): wide
    // fields in 2,000-record pages would not fit the daemon's heap cap (see poller.ts).
    const size = this.pageSize;
    const soql = buildUpdatePageQuery(this.rule, c.side, from, c.after, size);
    const page = await queryFirstPage(this.o.conn, this.o.apiVersion, soql, {
      ...this.queryOptions(),
      headers: { 'Sforce-Query-Options': `batchSize=${Math.max(MIN_BATCH, size)}` },
      onRequest: () => {
        result.apiCalls++;
        this.reportUsage();
      },
    });
    result.pages++;
    // Parse the whole page before using any of it: a malformed record must not move the cursor.
    const records = page.records.map((r) => toSourceRecord(this.rule.object, r));
    c.buffer = records.map((record) => ({ record, matches: c.side === 'matches' }));
    c.done = records.length < size;
    const last = c.buffer.at(-1);
    if (last) {
      c.after = keyOf(last);
      this.pageSize = pageSizeFor(records, this.maxPage);
    }
  }

  /**
   * Stream mode: the records events named (CREATE: their first sight, UPDATE: a change), read
   * with the same queries and judged the same way, committed with the replay id.
   */
  async enqueueByIds(ids: string[], replayId: string | null): Promise<number> {
    const valid = [...new Set(ids)].filter(isSalesforceId);
    const cp = await this.init();
    let inserted = 0;
    // One commit per chunk of ids (see RulePoller.enqueueByIds): only the last moves the replay id.
    let i = 0;
    do {
      const chunk = valid.slice(i, i + this.enrichSize);
      i += chunk.length;
      const observed: ObservedRecord[] = [];
      for (const side of chunk.length ? updateSides(this.rule) : []) {
        const soql = buildUpdateEnrichmentQuery(this.rule, side, chunk);
        const pages = queryPages(this.o.conn, this.o.apiVersion, soql, {
          ...this.queryOptions(),
          onRequest: () => this.reportUsage(),
        });
        for await (const page of pages) {
          for (const raw of page.records) {
            observed.push({ record: toSourceRecord(this.rule.object, raw), matches: side === 'matches' });
          }
        }
      }
      if (observed.length) {
        this.enrichSize = pageSizeFor(
          observed.map((o) => o.record),
          ENRICH_MAX,
        );
      }
      const lastChunk = i >= valid.length;
      if (observed.length === 0 && !lastChunk) continue;
      inserted += (
        await this.o.commit({
          records: [],
          observed,
          checkpoint: (current) => ({
            floor: (current ?? cp).floor,
            watermark: (current ?? cp).watermark,
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
