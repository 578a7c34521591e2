// The poller against the org emulator over HTTP (real jsforce) and a real SQLite store: the
// cursor's guarantees, paging, faults, and REST calls per poll.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ruleSchema } from '../../src/config/schema.ts';
import type { RuleConfig } from '../../src/config/schema.ts';
import { startEmulator } from '../../src/emulator/index.ts';
import type { Emulator } from '../../src/emulator/index.ts';
import { sourceConnection } from '../helpers/emulator.ts';
import { Enqueuer } from '../../src/app/enqueue.ts';
import { isRequestLimitError, RulePoller } from '../../src/sources/salesforce/poller.ts';
import { openStore } from '../../src/store/index.ts';
import { compileRule } from '../../src/templates/index.ts';
import type { Store } from '../../src/store/index.ts';
import type { SourceBatch } from '../../src/sources/types.ts';

let emu: Emulator;
let dir: string;
let store: Store;
const silent = pino({ level: 'silent' });

beforeAll(async () => {
  emu = await startEmulator({ port: 0 });
});
afterAll(async () => {
  await emu.close();
});
beforeEach(async () => {
  clock = Date.parse('2026-03-01T10:00:30Z');
  emu.control.reset();
  dir = mkdtempSync(join(tmpdir(), 'ln-poller-'));
  store = await openStore(`sqlite:${join(dir, 'n.db')}`, { exclusive: true });
  await store.migrate();
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function rule(over: Record<string, unknown> = {}): RuleConfig {
  return ruleSchema.parse({
    name: 'leads',
    object: 'Lead',
    startFrom: '2026-01-01T00:00:00Z',
    select: ['FirstName', 'LastName', 'Company', 'Owner.Email'],
    email: {
      from: 'desk@example.com',
      to: 'sales@example.com',
      subject: '{{LastName}}',
      text: '{{Company}}',
    },
    ...over,
  });
}

/** the poller's clock (sweeps are timed by it); tests move it by hand */
let clock = Date.parse('2026-03-01T10:00:30Z');

/** every batch the pollers committed, in order */
let commits: SourceBatch[] = [];

async function poller(r: RuleConfig = rule(), batchSize?: number): Promise<RulePoller> {
  const conn = await sourceConnection(emu.url, dir);
  const enqueuer = new Enqueuer({ rule: r, compiled: compileRule(r, dir), store, logger: silent });
  commits = [];
  return new RulePoller({
    rule: r,
    conn,
    store,
    commit: (batch) => {
      commits.push(batch);
      return enqueuer.commit(batch);
    },
    apiVersion: '62.0',
    logger: silent,
    now: () => new Date(clock),
    // jsforce retries GETs on 5xx (0.5 s, doubling, 5 times); keep that short here
    http: { timeout: 10_000, retry: { maxRetries: 2, minTimeout: 20 } },
    ...(batchSize ? { batchSize } : {}),
  });
}

function leads(n: number, createdDate: Date, offset = 0) {
  return emu.org.insertMany(
    'Lead',
    Array.from({ length: n }, (_, i) => ({
      LastName: `L${offset + i}`,
      Company: `C${offset + i}`,
      LeadSource: 'Web',
    })),
    { createdDate },
  );
}

const at = (s: string) => new Date(s);

/** a rule whose template uses the Leads' Description (the wide-record tests) */
const wideRule = () =>
  rule({
    select: ['FirstName', 'LastName', 'Company', 'Description'],
    email: {
      from: 'desk@example.com',
      to: 'sales@example.com',
      subject: '{{LastName}}',
      text: '{{Description}}',
    },
  });

/** n Leads with a 16 KB Description, all created in one second (the wide-record tests) */
const wideLeads = (n: number) =>
  emu.org.insertMany(
    'Lead',
    Array.from({ length: n }, (_, i) => ({
      LastName: `W${i}`,
      Company: `C${i}`,
      Description: `${i} `.padEnd(16_000, 'lorem ipsum '),
    })),
    { createdDate: at('2026-03-01T10:00:00Z') },
  );

describe('RulePoller', () => {
  it('startFrom fixes a floor: records created before it are never enqueued', async () => {
    leads(5, at('2025-12-31T23:59:59Z'));
    const fresh = leads(3, at('2026-01-01T00:00:00Z'), 5);
    const p = await poller();
    const r = await p.pollOnce();
    expect(r.enqueued).toBe(3);
    const rows = await store.list({ limit: 100 });
    expect(rows.map((x) => x.recordId).sort()).toEqual(fresh.map((x) => x.Id).sort());
  });

  it('pages through nextRecordsUrl and enqueues every record once, even when re-polled', async () => {
    leads(2345, at('2026-03-01T10:00:00Z'));
    const p = await poller(rule(), 200);
    const first = await p.pollOnce();
    expect(first.read).toBe(2345);
    expect(first.pages).toBe(12);
    expect(first.enqueued).toBe(2345);
    const again = await p.pollOnce();
    expect(again.enqueued).toBe(0);
    expect((await store.counts()).total.pending).toBe(2345);
  });

  it('catches late-committing records inside the lookback and moves the watermark only to seen CreatedDates', async () => {
    leads(10, at('2026-03-01T10:00:00Z'));
    const p = await poller(rule({ lookback: '10m' }));
    expect((await p.pollOnce()).sweep).toBe(true);
    expect((await store.getCheckpoint('leads'))?.watermark).toBe('2026-03-01T10:00:00.000Z');
    // committed late: CreatedDate 5 minutes before the watermark
    const late = leads(4, at('2026-03-01T09:55:00Z'), 100);
    // and one older than the lookback: out of reach by design
    leads(1, at('2026-03-01T09:40:00Z'), 200);
    // a regular poll reads after the cursor's key only: one call, nothing late, nothing again
    clock += 10_000;
    const regular = await p.pollOnce();
    expect(regular.sweep).toBe(false);
    expect(regular.apiCalls).toBe(1);
    expect(regular.read).toBe(0);
    expect(regular.enqueued).toBe(0);
    // a minute later the sweep re-reads from (last sweep - lookback)
    clock += 60_000;
    const r = await p.pollOnce();
    expect(r.sweep).toBe(true);
    expect(r.enqueued).toBe(4);
    const ids = new Set((await store.list({ limit: 100 })).map((x) => x.recordId));
    for (const l of late) expect(ids.has(l.Id)).toBe(true);
    expect((await store.getCheckpoint('leads'))?.watermark).toBe('2026-03-01T10:00:00.000Z');
    // the sweep time survives a restart: a new poller does not sweep again at once
    const restarted = await poller(rule({ lookback: '10m' }));
    clock += 1000;
    expect((await restarted.pollOnce()).sweep).toBe(false);
  });

  it('300 records sharing one CreatedDate second across a page boundary are all enqueued', async () => {
    leads(1900, at('2026-03-01T10:00:00Z'));
    leads(300, at('2026-03-01T10:00:01Z'), 1900);
    // pages of 2,000 from the first (an explicit batchSize), so the boundary falls at record 2,000
    const p = await poller(rule(), 2000);
    const r = await p.pollOnce();
    expect(r.pages).toBe(2);
    expect(r.enqueued).toBe(2200);
  });

  it('keyset cursor: an idle poll after a bulk import in one second is one call that reads nothing', async () => {
    // 2,500 records in one CreatedDate second, read in pages of 1,000: the page boundaries fall
    // inside the second, so the cursor must carry the Id, not only the second
    const bulk = leads(2500, at('2026-03-01T10:00:00Z'));
    const p = await poller(rule(), 1000);
    const first = await p.pollOnce();
    expect(first.read).toBe(2500);
    expect(first.enqueued).toBe(2500);
    const cp = await store.getCheckpoint('leads');
    expect(cp?.watermark).toBe('2026-03-01T10:00:00.000Z');
    expect(cp?.lastId).toBe(bulk.at(-1)!.Id);
    for (let i = 0; i < 3; i++) {
      clock += 2000;
      const idle = await p.pollOnce();
      expect(idle.sweep).toBe(false);
      expect(idle.apiCalls).toBe(1);
      expect(idle.read).toBe(0);
    }
    // more records in that same second (larger Ids) and in the next: read once, nothing else
    const same = leads(3, at('2026-03-01T10:00:00Z'), 5000);
    const next = leads(2, at('2026-03-01T10:00:01Z'), 6000);
    clock += 2000;
    const more = await p.pollOnce();
    expect(more.read).toBe(5);
    expect(more.enqueued).toBe(5);
    const ids = new Set((await store.list({ limit: 5000 })).map((x) => x.recordId));
    for (const r of [...same, ...next]) expect(ids.has(r.Id)).toBe(true);
    expect((await store.getCheckpoint('leads'))?.lastId).toBe(next.at(-1)!.Id);
    clock += 2000;
    expect((await p.pollOnce()).read).toBe(0);
    // a restart keeps the key: the new poller does not read the second again either
    const restarted = await poller(rule(), 1000);
    clock += 2000;
    expect((await restarted.pollOnce()).read).toBe(0);
    expect((await store.counts()).total.pending).toBe(2505);
  });

  it('a checkpoint without lastId (written before the keyset cursor) reads the watermark second again, once', async () => {
    leads(5, at('2026-03-01T10:00:00Z'));
    const p = await poller();
    await p.pollOnce();
    const cp = (await store.getCheckpoint('leads'))!;
    await store.commitBatch('leads', [], { floor: cp.floor, watermark: cp.watermark, sweptAt: cp.sweptAt! });
    expect((await store.getCheckpoint('leads'))?.lastId).toBeNull();
    clock += 2000;
    const again = await p.pollOnce();
    expect(again.read).toBe(5);
    expect(again.enqueued).toBe(0);
    clock += 2000;
    expect((await p.pollOnce()).read).toBe(0);
  });

  it('a malformed reply moves nothing; the next poll succeeds', async () => {
    leads(3, at('2026-03-01T10:00:00Z'));
    const p = await poller();
    emu.control.addFault({
      path: '/query',
      status: 200,
      body: '<html>maintenance</html>',
      contentType: 'text/html',
    });
    await expect(p.pollOnce()).rejects.toThrow(/not a JSON object|MALFORMED|html/i);
    expect((await store.counts()).total.pending).toBe(0);
    expect((await store.getCheckpoint('leads'))?.watermark).toBe('2026-01-01T00:00:00.000Z');
    expect((await p.pollOnce()).enqueued).toBe(3);
  });

  it('a 503 on the second page keeps the first page and the cursor at it', async () => {
    leads(200, at('2026-03-01T10:00:00Z'));
    leads(500, at('2026-03-01T10:00:05Z'), 200);
    // pages of 200 (the first page's size, kept: no re-query), so the second page is a queryMore
    const p = await poller(rule(), 200);
    // jsforce retries a GET on 5xx (here twice): the burst must outlast that
    emu.control.addFault({ path: '/query/', status: 503, errorCode: 'SERVER_UNAVAILABLE', count: 3 });
    await expect(p.pollOnce()).rejects.toThrow();
    expect((await store.counts()).total.pending).toBe(200);
    expect((await store.getCheckpoint('leads'))?.watermark).toBe('2026-03-01T10:00:00.000Z');
    const r = await p.pollOnce();
    expect(r.enqueued).toBe(500);
  });

  it('REQUEST_LIMIT_EXCEEDED surfaces as such and moves nothing', async () => {
    leads(3, at('2026-03-01T10:00:00Z'));
    const p = await poller();
    const limits = emu.control.limits();
    emu.control.setLimits({ used: limits.max });
    const err = await p.pollOnce().catch((e: unknown) => e);
    expect(isRequestLimitError(err)).toBe(true);
    expect((await store.counts()).total.pending).toBe(0);
    emu.control.setLimits({ used: 0 });
    expect((await p.pollOnce()).enqueued).toBe(3);
  });

  it('an expired session is refreshed (client_credentials refreshFn) mid-run', async () => {
    leads(3, at('2026-03-01T10:00:00Z'));
    const p = await poller();
    await p.pollOnce();
    emu.control.expireSessions();
    leads(2, at('2026-03-01T10:00:03Z'), 10);
    expect((await p.pollOnce()).enqueued).toBe(2);
  });

  it('an expired query locator re-queries from the last checkpoint', async () => {
    leads(2500, at('2026-03-01T10:00:00Z'));
    const p = await poller();
    emu.control.addFault({ path: '/query/', status: 400, errorCode: 'INVALID_QUERY_LOCATOR' });
    const r = await p.pollOnce();
    expect((await store.counts()).total.pending).toBe(2500);
    expect(r.enqueued).toBe(2500);
  });

  it('a record whose template fails is dead-lettered alone', async () => {
    const r = rule({
      allowRecipients: ['*@example.com'],
      select: ['LastName', 'Company', 'Email'],
      email: { from: 'desk@example.com', to: '{{Email}}', subject: 'x', text: 'y' },
    });
    emu.org.insert(
      'Lead',
      { LastName: 'A', Company: 'A', Email: 'a@example.com' },
      { createdDate: '2026-03-01T10:00:00Z' },
    );
    emu.org.insert(
      'Lead',
      { LastName: 'B', Company: 'B', Email: 'b@elsewhere.org' },
      { createdDate: '2026-03-01T10:00:00Z' },
    );
    const p = await poller(r);
    await p.pollOnce();
    const c = await store.counts();
    expect(c.total.pending).toBe(1);
    expect(c.total.dead).toBe(1);
  });

  it('pages by weight: 50 first, then 2,000 for narrow records (one re-query), kept for the next poll', async () => {
    leads(4500, at('2026-03-01T10:00:00Z'));
    const p = await poller();
    const first = await p.pollOnce();
    // 50, then a fresh query after record 50 in pages of 2,000: 2,000 + 2,000 + 450
    expect(first).toMatchObject({ read: 4500, enqueued: 4500, pages: 4, apiCalls: 4 });
    expect((await store.counts()).total.pending).toBe(4500);
    leads(2500, at('2026-03-01T10:00:10Z'), 4500);
    clock += 2000;
    const next = await p.pollOnce();
    expect(next).toMatchObject({ sweep: false, read: 2500, enqueued: 2500, pages: 2, apiCalls: 2 });
  });

  it('pages by weight: wide records (16 KB each) come in LIMIT pages of 130, each read and enqueued once', async () => {
    const wide = wideRule();
    wideLeads(1000);
    // 2 MB holds 130 of them: after the first 50, LIMIT 130 queries one after the other (below
    // Salesforce's smallest batch of 200): 50 + 7 x 130 + 40
    const p = await poller(wide);
    expect(await p.pollOnce()).toMatchObject({ read: 1000, enqueued: 1000, pages: 9, apiCalls: 9 });
    const rows = await store.list({ limit: 2000 });
    expect(new Set(rows.map((r) => r.recordId)).size).toBe(1000);
    // the LIMIT pages' sweep was recorded when its last page came (no sweep again at once); later
    // narrow records: the next query grows the size back (one re-query), nothing read twice
    leads(2300, at('2026-03-01T10:00:20Z'), 1000);
    clock += 2000;
    expect(await p.pollOnce()).toMatchObject({
      sweep: false,
      read: 2300,
      enqueued: 2300,
      pages: 3,
      apiCalls: 3,
    });
  });

  it('REST calls per poll: at most ceil(N/2000) + 1, none per record', async () => {
    const p = await poller();
    let base = '2026-03-01T10:00:00Z';
    for (const n of [0, 1, 2500]) {
      if (n > 0) leads(n, at(base));
      const r = await p.pollOnce();
      expect(r.apiCalls).toBeLessThanOrEqual(Math.ceil(n / 2000) + 1);
      base = '2026-03-01T12:00:00Z';
    }
  });

  it('stream enrichment: enqueueByIds applies the rule where and stores the replay id', async () => {
    const r = rule({ where: "LeadSource = 'Web'" });
    const web = emu.org.insert(
      'Lead',
      { LastName: 'W', Company: 'W', LeadSource: 'Web' },
      { createdDate: '2026-03-01T10:00:00Z' },
    );
    const phone = emu.org.insert(
      'Lead',
      { LastName: 'P', Company: 'P', LeadSource: 'Phone' },
      { createdDate: '2026-03-01T10:00:00Z' },
    );
    const p = await poller(r);
    expect(await p.enqueueByIds([web.Id, phone.Id, "x' OR Id != '"], '42')).toBe(1);
    const cp = await store.getCheckpoint('leads');
    expect(cp?.replayId).toBe('42');
    // a poll afterwards keeps the replay id and does not enqueue the record again
    expect((await p.pollOnce()).enqueued).toBe(0);
    expect((await store.getCheckpoint('leads'))?.replayId).toBe('42');
  });

  it('stream enrichment of a bulk change: chunks sized by weight, one commit each, the last one moves the replay id', async () => {
    const wide = wideRule();
    const ids = wideLeads(500).map((r) => r.Id);
    const p = await poller(wide);
    // 8 MB of fields in one batch of change events: after the first start's checkpoint, 50 ids,
    // then 129 a query (2 MB of fields with Id and CreatedDate)
    expect(await p.enqueueByIds(ids, '77')).toBe(500);
    expect(commits.map((c) => c.records.length)).toEqual([0, 50, 129, 129, 129, 63]);
    const replayIds = commits.map((c) => {
      const cp = typeof c.checkpoint === 'function' ? c.checkpoint(null) : c.checkpoint;
      return cp.replayId;
    });
    expect(replayIds).toEqual([undefined, undefined, undefined, undefined, undefined, '77']);
    expect((await store.getCheckpoint('leads'))?.replayId).toBe('77');
    const rows = await store.list({ limit: 1000 });
    expect(new Set(rows.map((r) => r.recordId))).toEqual(new Set(ids));
    // an empty batch (a keepalive) is one commit that only moves the replay id
    commits = [];
    expect(await p.enqueueByIds([], '78')).toBe(0);
    expect(commits).toHaveLength(1);
    expect((await store.getCheckpoint('leads'))?.replayId).toBe('78');
  });
});
