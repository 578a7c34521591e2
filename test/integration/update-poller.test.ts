// on: updated in poll mode, against the org emulator over HTTP (real jsforce) and a real SQLite
// store: which changes notify, once each, through re-reads, sweeps, paging and late commits;
// previous/changedFields in templates, threading to the record's first notification, queue owners.
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
import { RulePoller } from '../../src/sources/salesforce/poller.ts';
import { UpdatePoller } from '../../src/sources/salesforce/update-poller.ts';
import type { SourceBatch } from '../../src/sources/types.ts';
import { openStore } from '../../src/store/index.ts';
import type { Store } from '../../src/store/index.ts';
import { compileRule } from '../../src/templates/index.ts';
import { asEmail } from '../../src/types.ts';

let emu: Emulator;
let dir: string;
let store: Store;
const silent = pino({ level: 'silent' });
const FLOOR = '2026-03-01T00:00:00Z';
const BEFORE_FLOOR = '2026-02-01T00:00:00Z';
let clock = Date.parse('2026-03-01T10:00:30Z');

beforeAll(async () => {
  emu = await startEmulator({ port: 0 });
});
afterAll(async () => {
  await emu.close();
});
beforeEach(async () => {
  clock = Date.parse('2026-03-01T10:00:30Z');
  emu.control.reset();
  dir = mkdtempSync(join(tmpdir(), 'ln-update-poller-'));
  store = await openStore(`sqlite:${join(dir, 'n.db')}`, { exclusive: true });
  await store.migrate();
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function rule(over: Record<string, unknown> = {}): RuleConfig {
  return ruleSchema.parse({
    name: 'qualified',
    object: 'Lead',
    on: 'updated',
    startFrom: FLOOR,
    where: "Status = 'Working - Contacted'",
    select: ['LastName', 'Status', 'Owner.Email'],
    email: {
      from: 'desk@example.com',
      to: 'sales@example.com',
      subject: '{{LastName}} is {{Status}}',
      text: 'was {{previous.Status}}; changed {{#each changedFields}}{{this}} {{/each}}',
    },
    ...over,
  });
}

async function connection() {
  const conn = await sourceConnection(emu.url, dir);
  return conn;
}

/** every batch the update pollers committed, in order */
let commits: SourceBatch[] = [];

async function updatePoller(r: RuleConfig = rule(), batchSize?: number): Promise<UpdatePoller> {
  const enqueuer = new Enqueuer({ rule: r, compiled: compileRule(r, dir), store, logger: silent });
  commits = [];
  return new UpdatePoller({
    rule: r,
    conn: await connection(),
    store,
    commit: (batch) => {
      commits.push(batch);
      return enqueuer.commit(batch);
    },
    apiVersion: '62.0',
    logger: silent,
    now: () => new Date(clock),
    ...(batchSize ? { batchSize } : {}),
  });
}

function lead(fields: Record<string, unknown> = {}, createdDate = BEFORE_FLOOR): string {
  return emu.control.insert('Lead', [{ LastName: 'L', Company: 'C', ...fields }], { createdDate })[0]!;
}

const change = (id: string, fields: Record<string, unknown>, at: string) =>
  emu.control.update('Lead', [{ Id: id, ...fields }], { systemModstamp: at });

async function rowsOf(ruleName = 'qualified') {
  return (await store.list({ rule: ruleName, limit: 10_000 })).reverse();
}

describe('UpdatePoller: on: updated with where', () => {
  it('notifies a change that makes the record match, once; not while it keeps matching; again after it stopped', async () => {
    const a = lead();
    const b = lead({ Status: 'Working - Contacted' }); // already matching before the rule: baseline
    const p = await updatePoller();
    // first sight of both (modified after the floor, created before it): baselines, nothing sent
    change(a, { Rating: 'Warm' }, '2026-03-01T10:00:00Z');
    change(b, { Rating: 'Warm' }, '2026-03-01T10:00:00Z');
    expect((await p.pollOnce()).enqueued).toBe(0);

    change(a, { Status: 'Working - Contacted' }, '2026-03-01T10:00:05Z');
    change(b, { Rating: 'Hot' }, '2026-03-01T10:00:05Z'); // still matching: not a qualifying change
    clock += 10_000;
    expect((await p.pollOnce()).enqueued).toBe(1);
    // re-polls (the watermark's second, then a sweep of the lookback) never send it again
    expect((await p.pollOnce()).enqueued).toBe(0);
    clock += 120_000;
    const sweep = await p.pollOnce();
    expect(sweep.sweep).toBe(true);
    expect(sweep.enqueued).toBe(0);

    change(a, { Status: 'Closed - Not Converted' }, '2026-03-01T10:03:00Z'); // stops matching
    clock += 10_000;
    expect((await p.pollOnce()).enqueued).toBe(0);
    change(a, { Status: 'Working - Contacted' }, '2026-03-01T10:03:10Z'); // matches again
    clock += 10_000;
    expect((await p.pollOnce()).enqueued).toBe(1);

    const rows = await rowsOf();
    expect(rows.map((r) => r.recordId)).toEqual([`${a}.20260301T100005Z`, `${a}.20260301T100310Z`]);
    expect(asEmail(rows[0]!.message).subject).toBe('L is Working - Contacted');
    expect(asEmail(rows[0]!.message).text).toBe('was Open - Not Contacted; changed Status ');
    expect(asEmail(rows[1]!.message).text).toBe('was Closed - Not Converted; changed Status ');
    expect(asEmail(rows[0]!.message).messageId).toBe(`<qualified.${a}.20260301T100005Z@example.com>`);
  });

  it('a record created after the floor and changed before its first poll is judged from "did not match"', async () => {
    const early = lead({}, '2026-03-01T09:00:00Z');
    const untouched = lead({ Status: 'Working - Contacted' }, '2026-03-01T09:00:00Z');
    change(early, { Status: 'Working - Contacted' }, '2026-03-01T09:30:00Z');
    const p = await updatePoller(rule({ lookback: '2h' }));
    expect((await p.pollOnce()).enqueued).toBe(1);
    expect((await rowsOf()).map((r) => r.recordId)).toEqual([`${early}.20260301T093000Z`]);
    void untouched; // created matching, never changed: nothing changed it TO match
  });

  it('catches a late-committing change inside the lookback on the next sweep', async () => {
    const a = lead();
    const b = lead();
    change(a, { Rating: 'Cold' }, '2026-03-01T10:00:00Z');
    change(b, { Rating: 'Cold' }, '2026-03-01T10:00:00Z');
    const p = await updatePoller(rule({ lookback: '10m' }));
    await p.pollOnce();
    change(a, { Rating: 'Warm' }, '2026-03-01T10:00:20Z');
    clock += 30_000;
    await p.pollOnce();
    expect((await store.getCheckpoint('qualified'))!.watermark).toBe('2026-03-01T10:00:20.000Z');
    // b's change commits late: its SystemModstamp is before the watermark
    change(b, { Status: 'Working - Contacted' }, '2026-03-01T10:00:10Z');
    clock += 10_000;
    const regular = await p.pollOnce();
    expect(regular.sweep).toBe(false);
    expect(regular.enqueued).toBe(0);
    clock += 60_000;
    const sweep = await p.pollOnce();
    expect(sweep.sweep).toBe(true);
    expect(sweep.enqueued).toBe(1);
    expect((await rowsOf()).map((r) => r.recordId)).toEqual([`${b}.20260301T100010Z`]);
  });

  it('pages both sides of where by keyset and merges them: every qualifying change once, bounded calls', async () => {
    const n = 2345;
    const ids = emu.control.insert(
      'Lead',
      Array.from({ length: n }, (_, i) => ({ LastName: `L${i}`, Company: 'C' })),
      { createdDate: BEFORE_FLOOR },
    );
    // baseline for all, many in one second
    emu.control.update(
      'Lead',
      ids.map((Id) => ({ Id, Rating: 'Cold' })),
      { systemModstamp: '2026-03-01T10:00:00Z' },
    );
    const p = await updatePoller(rule(), 200);
    const base = await p.pollOnce();
    expect(base.read).toBe(n);
    expect(base.enqueued).toBe(0);
    // every third Lead qualifies, the others change something else; spread over seconds
    const qualify = new Set(ids.filter((_, i) => i % 3 === 0));
    ids.forEach((Id, i) =>
      change(
        Id,
        qualify.has(Id) ? { Status: 'Working - Contacted' } : { Rating: 'Hot' },
        `2026-03-01T10:00:${String(1 + (i % 20)).padStart(2, '0')}Z`,
      ),
    );
    clock += 10_000;
    const r = await p.pollOnce();
    expect(r.read).toBe(n);
    expect(r.enqueued).toBe(qualify.size);
    // two sides, 200 per page: ceil(782/200) + ceil(1563/200) pages plus at most one short page each
    expect(r.apiCalls).toBeLessThanOrEqual(
      Math.ceil(qualify.size / 200) + Math.ceil((n - qualify.size) / 200) + 2,
    );
    const keys = (await rowsOf()).map((x) => x.recordId.split('.')[0]);
    expect(new Set(keys)).toEqual(qualify);
    expect(keys).toHaveLength(qualify.size);
  });
});

describe('UpdatePoller: pages sized by weight', () => {
  const wideRule = () => rule({ select: ['LastName', 'Status', 'Owner.Email', 'Description'] });
  const wideLeads = (n: number) =>
    emu.control.insert(
      'Lead',
      Array.from({ length: n }, (_, i) => ({
        LastName: `W${i}`,
        Company: 'C',
        Description: `${i} `.padEnd(16_000, 'lorem ipsum '),
      })),
      { createdDate: BEFORE_FLOOR },
    );

  it('wide records (16 KB each) come in LIMIT pages of what fits 2 MB; narrow ones grow the pages back', async () => {
    const ids = wideLeads(1000);
    emu.control.update(
      'Lead',
      ids.map((Id) => ({ Id, Rating: 'Cold' })),
      { systemModstamp: '2026-03-01T10:00:00Z' },
    );
    const p = await updatePoller(wideRule());
    // first sight of each (baselines): the matching side is one empty page of 50; the other 50,
    // then 7 x 130 (2 MB), then the short page of 40. With 2,000-record pages: 2 pages of 32 MB.
    expect(await p.pollOnce()).toMatchObject({ read: 1000, enqueued: 0, pages: 10, apiCalls: 10 });
    // every third one qualifies now, the rest change something else; all judged once
    const qualify = new Set(ids.filter((_, i) => i % 3 === 0));
    emu.control.update(
      'Lead',
      ids.map((Id) => (qualify.has(Id) ? { Id, Status: 'Working - Contacted' } : { Id, Rating: 'Hot' })),
      { systemModstamp: '2026-03-01T10:00:05Z' },
    );
    clock += 10_000;
    const r = await p.pollOnce();
    expect(r).toMatchObject({ read: 1000, enqueued: qualify.size });
    // 334 and 666 records in pages of at most 130 (+1 short page each)
    expect(r.pages).toBeGreaterThanOrEqual(Math.ceil(334 / 130) + Math.ceil(666 / 130));
    expect(r.pages).toBeLessThanOrEqual(Math.ceil(334 / 130) + Math.ceil(666 / 130) + 2);
    expect(new Set((await rowsOf()).map((x) => x.recordId.split('.')[0]))).toEqual(qualify);
    // narrow changes after them: the next query weighs them and grows the pages back to 2,000
    const narrow = emu.control.insert(
      'Lead',
      Array.from({ length: 2300 }, (_, i) => ({ LastName: `N${i}`, Company: 'C' })),
      { createdDate: BEFORE_FLOOR },
    );
    emu.control.update(
      'Lead',
      narrow.map((Id) => ({ Id, Rating: 'Cold' })),
      { systemModstamp: '2026-03-01T10:00:20Z' },
    );
    clock += 10_000;
    const n = await p.pollOnce();
    // the watermark's second (10:00:05, the wide ones) is read again, then the narrow ones
    expect(n).toMatchObject({ sweep: false, read: 3300, enqueued: 0 });
    // pages kept at 130 would take ceil(334 / 130) + ceil(2966 / 130) = 26; each page's size
    // follows the records of the page before it (11 here: 3 matching, 8 growing 130 -> 2,000)
    expect(n.pages).toBeLessThanOrEqual(12);
  });

  it('stream enrichment of a bulk change: chunks sized by weight, one commit each, the last one moves the replay id', async () => {
    const ids = wideLeads(400);
    const p = await updatePoller(wideRule());
    await p.init();
    // their baselines, then an UPDATE event naming all 400 (one transaction): every third qualifies
    emu.control.update(
      'Lead',
      ids.map((Id) => ({ Id, Rating: 'Cold' })),
      { systemModstamp: '2026-03-01T10:00:00Z' },
    );
    expect(await p.pollOnce()).toMatchObject({ read: 400, enqueued: 0 });
    emu.control.update(
      'Lead',
      ids.map((Id, i) => (i % 3 === 0 ? { Id, Status: 'Working - Contacted' } : { Id, Rating: 'Hot' })),
      { systemModstamp: '2026-03-01T10:00:05Z' },
    );
    commits.length = 0;
    expect(await p.enqueueByIds(ids, '91')).toBe(134);
    // 6.4 MB of fields: 50 ids, then what fits 2 MB a query, each committed alone
    const sizes = commits.map((c) => c.observed?.length ?? 0);
    expect(sizes[0]).toBe(50);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(130);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(400);
    const replayIds = commits.map((c) => {
      const cp = typeof c.checkpoint === 'function' ? c.checkpoint(null) : c.checkpoint;
      return cp.replayId;
    });
    expect(replayIds.at(-1)).toBe('91');
    expect(replayIds.slice(0, -1).every((x) => x === undefined)).toBe(true);
    expect((await store.getCheckpoint('qualified'))?.replayId).toBe('91');
    expect(await rowsOf()).toHaveLength(134);
  });
});

describe('UpdatePoller: on: updated with changed', () => {
  it('notifies every owner change while where holds; a queue owner without an email dead-letters with a reason', async () => {
    const queue = emu.control.insert('Group', [{ Name: 'Silent', Type: 'Queue' }])[0]!;
    const mailQueue = emu.control.insert('Group', [
      { Name: 'Web', Type: 'Queue', Email: 'web@example.com' },
    ])[0]!;
    const [u1, u2] = emu.control.insert('User', [
      { Username: 'u1@example.com', Email: 'u1@example.com', LastName: 'One' },
      { Username: 'u2@example.com', Email: 'u2@example.com', LastName: 'Two' },
    ]);
    const r = rule({
      name: 'new-owner',
      where: "LeadSource = 'Web'",
      changed: ['OwnerId'],
      select: ['LastName', 'Owner.Email'],
      email: {
        from: 'desk@example.com',
        to: '{{Owner.Email}}',
        subject: '{{LastName}} is yours',
        text: 'from {{previous.OwnerId}} to {{OwnerId}}',
      },
    });
    const web = lead({ LeadSource: 'Web', OwnerId: u1 });
    const phone = lead({ LeadSource: 'Phone Inquiry', OwnerId: u1 });
    change(web, { Rating: 'Cold' }, '2026-03-01T10:00:00Z');
    change(phone, { Rating: 'Cold' }, '2026-03-01T10:00:00Z');
    const p = await updatePoller(r);
    expect((await p.pollOnce()).enqueued).toBe(0);

    change(web, { OwnerId: u2 }, '2026-03-01T10:00:05Z');
    change(phone, { OwnerId: u2 }, '2026-03-01T10:00:05Z'); // where does not hold
    clock += 10_000;
    expect((await p.pollOnce()).enqueued).toBe(1);
    change(web, { Rating: 'Hot' }, '2026-03-01T10:00:15Z'); // not a watched field
    change(web, { OwnerId: mailQueue }, '2026-03-01T10:00:20Z');
    clock += 10_000;
    expect((await p.pollOnce()).enqueued).toBe(1);
    change(web, { OwnerId: queue }, '2026-03-01T10:00:30Z');
    clock += 10_000;
    expect((await p.pollOnce()).enqueued).toBe(1);

    const rows = await rowsOf('new-owner');
    expect(rows.map((x) => [x.recordId, x.state])).toEqual([
      [`${web}.20260301T100005Z`, 'pending'],
      [`${web}.20260301T100020Z`, 'pending'],
      [`${web}.20260301T100030Z`, 'dead'],
    ]);
    expect(asEmail(rows[0]!.message).to).toEqual(['u2@example.com']);
    expect(asEmail(rows[0]!.message).text).toBe(`from ${u1} to ${u2}`);
    expect(asEmail(rows[1]!.message).to).toEqual(['web@example.com']);
    expect(rows[2]!.lastErrorCode).toBe('ENORECIPIENTS');
    expect(rows[2]!.lastError).toContain('no recipients');
  });

  it("an update notification threads to the record's created notification (In-Reply-To, References)", async () => {
    const created = ruleSchema.parse({
      name: 'new-leads',
      object: 'Lead',
      startFrom: FLOOR,
      email: { from: 'desk@example.com', to: 'sales@example.com', subject: 'new {{LastName}}', text: 'x' },
    });
    const enqueuer = new Enqueuer({
      rule: created,
      compiled: compileRule(created, dir),
      store,
      logger: silent,
    });
    const cp = new RulePoller({
      rule: created,
      conn: await connection(),
      store,
      commit: enqueuer.commit,
      apiVersion: '62.0',
      logger: silent,
      now: () => new Date(clock),
    });
    const a = lead({}, '2026-03-01T10:00:00Z');
    expect((await cp.pollOnce()).enqueued).toBe(1);
    const p = await updatePoller();
    await p.pollOnce(); // first sight: created and unmodified, a baseline
    change(a, { Status: 'Working - Contacted' }, '2026-03-01T10:00:10Z');
    clock += 10_000;
    expect((await p.pollOnce()).enqueued).toBe(1);
    const [row] = await rowsOf();
    expect(asEmail(row!.message).headers).toMatchObject({
      'In-Reply-To': `<new-leads.${a}@example.com>`,
      References: `<new-leads.${a}@example.com>`,
    });
  });
});
