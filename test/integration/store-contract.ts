// The Store contract: one suite, run against every backend (store-sqlite.test.ts, store-postgres.test.ts).
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { StoreClosedError } from '../../src/store/errors.ts';
import type { NewOutboxRow, OutboxRow, SendApiRequest, Store } from '../../src/store/index.ts';
import type { HttpRequestMessage, RenderedMessage } from '../../src/types.ts';
import { OUTBOX_STATES } from '../../src/store/index.ts';

/**
 * `open(db)` opens a NEW handle on the database named `db`: the same name gives another handle on
 * the same data (used for concurrency tests), a new name an empty, migrated database.
 * `cleanup` runs once after the suite.
 */
export type OpenStore = (db: string) => Promise<Store>;

const T0 = '2024-05-01T10:00:00.000Z';
const ABANDONED = 'process stopped while sending; delivery uncertain';

export function message(rule: string, recordId: string): RenderedMessage {
  return {
    messageId: `<${rule}.${recordId}@test.local>`,
    from: 'Lead desk <leads@example.com>',
    to: ['sales@example.com'],
    cc: [],
    bcc: [],
    subject: `New lead ${recordId}`,
    text: `Hello ${recordId}`,
    // deliberately not in sorted order: the stored message must come back exactly as rendered
    headers: { 'X-Priority': '1', Importance: 'high', 'A-Last': 'z' },
    attachments: [{ filename: 'lead.json', contentType: 'application/json', content: '{"Id":"x"}' }],
  };
}

export function hook(
  rule: string,
  recordId: string,
  channel: HttpRequestMessage['channel'],
): HttpRequestMessage {
  return {
    channel,
    rule,
    idempotencyKey: `${rule}.${recordId}`,
    contentType: 'application/json',
    body: JSON.stringify({ text: `lead ${recordId}`, z: 1, a: 2 }),
  };
}

export function row(rule: string, recordId: string, extra: Partial<NewOutboxRow> = {}): NewOutboxRow {
  return {
    rule,
    object: 'Lead',
    recordId,
    recordCreatedDate: T0,
    message: message(rule, recordId),
    state: 'pending',
    ...extra,
  };
}

const cp = (watermark: string, extra: { replayId?: string | null; floor?: string } = {}) => ({
  floor: extra.floor ?? '2024-05-01T00:00:00.000Z',
  watermark,
  ...(extra.replayId !== undefined ? { replayId: extra.replayId } : {}),
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function storeContract(name: string, open: OpenStore, cleanup?: () => Promise<void>): void {
  describe(`Store contract: ${name}`, () => {
    const opened: Store[] = [];
    let dbSeq = 0;

    /** a fresh database and a handle on it; `again()` opens one more handle on the same database */
    async function fresh(): Promise<{ store: Store; again: () => Promise<Store> }> {
      const db = `c${++dbSeq}`;
      const store = await open(db);
      opened.push(store);
      return {
        store,
        again: async () => {
          const s = await open(db);
          opened.push(s);
          return s;
        },
      };
    }

    /** enqueue `n` pending rows for `rule` and return them (oldest first) */
    async function seed(store: Store, rule: string, n: number, prefix = 'rec'): Promise<OutboxRow[]> {
      const rows = Array.from({ length: n }, (_, i) => row(rule, `${prefix}${String(i).padStart(5, '0')}`));
      await store.commitBatch(rule, rows, cp(T0));
      return (await store.list({ rule, limit: n + 10 })).reverse();
    }

    /** one row in each state: pending, sending, sent, failed, dead, unknown (+ a dead row without message) */
    async function everyState(store: Store) {
      const rows = await seed(store, 'r', 6);
      await store.commitBatch(
        'r',
        [row('r', 'nomsg', { state: 'dead', message: null, lastError: 'render failed' })],
        cp(T0),
      );
      const [pending, sending, sent, failed, dead, unknown] = rows.map((r) => r.id) as number[];
      const noMessage = (await store.list({ rule: 'r', limit: 1 }))[0]!.id;
      await store.claimDue({ owner: 'o', limit: 6, leaseMs: 600_000 });
      await store.recordOutcomes('o', [
        { id: pending!, kind: 'release', error: 'circuit', nextAttemptAt: new Date(0) },
        { id: sent!, kind: 'sent', result: { response: '250', accepted: [], rejected: [] } },
        { id: failed!, kind: 'retry', error: '451 later', nextAttemptAt: new Date(Date.now() + 3_600_000) },
        { id: dead!, kind: 'dead', error: '550 unknown user' },
        { id: unknown!, kind: 'uncertain', error: 'reset after DATA' },
      ]);
      return {
        pending: pending!,
        sending: sending!,
        sent: sent!,
        failed: failed!,
        dead: dead!,
        unknown: unknown!,
        noMessage,
      };
    }

    afterEach(async () => {
      await Promise.all(opened.splice(0).map((s) => s.close()));
    });
    afterAll(async () => {
      await cleanup?.();
    });

    describe('migrate and checkpoints', () => {
      it('migrate() is idempotent', async () => {
        const { store } = await fresh();
        await store.migrate();
        await store.migrate();
        expect(await store.listCheckpoints()).toEqual([]);
      });

      it('a checkpoint round-trips exactly, replayId kept when omitted and cleared by null', async () => {
        const { store } = await fresh();
        expect(await store.getCheckpoint('r')).toBeNull();
        await store.commitBatch('r', [], cp('2024-05-01T10:11:12.345Z', { replayId: '42' }));
        const first = await store.getCheckpoint('r');
        expect(first).toMatchObject({
          rule: 'r',
          floor: '2024-05-01T00:00:00.000Z',
          watermark: '2024-05-01T10:11:12.345Z',
          replayId: '42',
        });
        expect(first!.updatedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

        await store.commitBatch('r', [], cp('2024-05-01T11:00:00.000Z'));
        expect(await store.getCheckpoint('r')).toMatchObject({
          watermark: '2024-05-01T11:00:00.000Z',
          replayId: '42',
        });

        await store.commitBatch('r', [], cp('2024-05-01T12:00:00.000Z', { replayId: null }));
        expect((await store.getCheckpoint('r'))!.replayId).toBeNull();

        // Salesforce's offset spelling is normalised to UTC with ms
        await store.commitBatch('a', [], cp('2024-05-01T12:00:00.000+0200'));
        const all = await store.listCheckpoints();
        expect(all.map((c) => c.rule)).toEqual(['a', 'r']);
        expect(all[0]!.watermark).toBe('2024-05-01T10:00:00.000Z');
      });

      it('sweptAt is kept when omitted and replaced when given', async () => {
        const { store } = await fresh();
        await store.commitBatch('r', [], cp(T0));
        expect((await store.getCheckpoint('r'))!.sweptAt).toBeNull();
        await store.commitBatch('r', [], { ...cp(T0), sweptAt: '2024-05-01T10:05:00.000Z' });
        await store.commitBatch('r', [], cp('2024-05-01T10:06:00.000Z'));
        expect((await store.getCheckpoint('r'))!.sweptAt).toBe('2024-05-01T10:05:00.000Z');
        await store.commitBatch('r', [], { ...cp(T0), sweptAt: '2024-05-01T10:07:00.000Z' });
        expect((await store.getCheckpoint('r'))!.sweptAt).toBe('2024-05-01T10:07:00.000Z');
      });

      it('lastId goes with the watermark: stored when given, cleared when omitted', async () => {
        const { store } = await fresh();
        await store.commitBatch('r', [], cp(T0));
        expect((await store.getCheckpoint('r'))!.lastId).toBeNull();
        await store.commitBatch('r', [], { ...cp(T0), lastId: '00Q000000000001AAA' });
        expect((await store.getCheckpoint('r'))!.lastId).toBe('00Q000000000001AAA');
        expect((await store.listCheckpoints())[0]!.lastId).toBe('00Q000000000001AAA');
        // a watermark written without its Id must not keep an Id from another second
        await store.commitBatch('r', [], cp('2024-05-01T10:06:00.000Z'));
        expect((await store.getCheckpoint('r'))!.lastId).toBeNull();
      });

      it('existingRecordIds names the record ids the rule already holds', async () => {
        const { store } = await fresh();
        await seed(store, 'r', 3);
        await seed(store, 'other', 1, 'x');
        const found = await store.existingRecordIds('r', ['rec00000', 'rec00002', 'nope', 'x00000']);
        expect([...found].sort()).toEqual(['rec00000', 'rec00002']);
        expect((await store.existingRecordIds('r', [])).size).toBe(0);
      });

      it('rejects a checkpoint that is not an instant, changing nothing', async () => {
        const { store } = await fresh();
        await expect(store.commitBatch('r', [row('r', 'a')], cp('yesterday'))).rejects.toThrow(
          /not a valid instant/,
        );
        expect(await store.getCheckpoint('r')).toBeNull();
        expect(await store.list({})).toEqual([]);
      });
    });

    describe('commitBatch', () => {
      it('inserts rows with every field round-tripping', async () => {
        const { store } = await fresh();
        const before = Date.now();
        const res = await store.commitBatch(
          'r',
          [row('r', '00Q1', { recordCreatedDate: '2024-05-01T09:59:58.000+0000' })],
          cp(T0),
        );
        expect(res).toEqual({ inserted: 1 });
        const [got] = await store.list({});
        expect(got).toMatchObject({
          rule: 'r',
          object: 'Lead',
          recordId: '00Q1',
          recordCreatedDate: '2024-05-01T09:59:58.000Z',
          state: 'pending',
          attempts: 0,
          nextAttemptAt: null,
          leaseOwner: null,
          leaseUntil: null,
          lastError: null,
          result: null,
          sentAt: null,
        });
        expect(got!.message).toEqual(message('r', '00Q1'));
        // key order too: a retry sends exactly what was rendered
        expect(JSON.stringify(got!.message)).toBe(JSON.stringify(message('r', '00Q1')));
        expect(Date.parse(got!.createdAt)).toBeGreaterThanOrEqual(before - 1000);
        expect(got!.createdAt).toMatch(/Z$/);
        expect(await store.get(got!.id)).toEqual(got);
        expect(await store.get(got!.id + 1000)).toBeNull();
      });

      it('skips rows already in the ledger, in repeated batches and within one batch', async () => {
        const { store } = await fresh();
        expect(await store.commitBatch('r', [row('r', 'a'), row('r', 'b')], cp(T0))).toEqual({ inserted: 2 });
        expect(await store.commitBatch('r', [row('r', 'b'), row('r', 'c'), row('r', 'c')], cp(T0))).toEqual({
          inserted: 1,
        });
        expect(await store.commitBatch('r', [row('r', 'a'), row('r', 'b'), row('r', 'c')], cp(T0))).toEqual({
          inserted: 0,
        });
        // the same record under another rule is a different ledger entry
        expect(await store.commitBatch('other', [row('other', 'a')], cp(T0))).toEqual({ inserted: 1 });
        expect((await store.list({ rule: 'r' })).map((r) => r.recordId).sort()).toEqual(['a', 'b', 'c']);
      });

      it('a sent row is never enqueued again', async () => {
        const { store } = await fresh();
        const [r1] = await seed(store, 'r', 1);
        await store.claimDue({ owner: 'o', limit: 1, leaseMs: 60_000 });
        await store.recordOutcomes('o', [
          { id: r1!.id, kind: 'sent', result: { response: '250 ok', accepted: [], rejected: [] } },
        ]);
        expect(await store.commitBatch('r', [row('r', r1!.recordId)], cp(T0))).toEqual({ inserted: 0 });
        expect((await store.get(r1!.id))!.state).toBe('sent');
      });

      it('inserts dead rows (render failed) with their error and no message', async () => {
        const { store } = await fresh();
        await store.commitBatch(
          'r',
          [row('r', 'bad', { state: 'dead', message: null, lastError: 'template: x is not defined' })],
          cp(T0),
        );
        const [got] = await store.list({});
        expect(got).toMatchObject({ state: 'dead', message: null, lastError: 'template: x is not defined' });
        expect(await store.claimDue({ owner: 'o', limit: 10, leaseMs: 1000 })).toEqual([]);
      });

      it('overlapping batches committed at once insert each record exactly once', async () => {
        const { store, again } = await fresh();
        const other = await again();
        const ids = (from: number, to: number) =>
          Array.from({ length: to - from }, (_, i) => row('r', `id${String(from + i).padStart(4, '0')}`));
        const batches = [ids(0, 300), ids(100, 400), ids(200, 500), ids(0, 500).reverse(), ids(250, 260)];
        const results = await Promise.all(
          batches.map((b, i) => (i % 2 ? other : store).commitBatch('r', b, cp(T0))),
        );
        expect(results.reduce((n, r) => n + r.inserted, 0)).toBe(500);
        const counts = await store.counts();
        expect(counts.total.pending).toBe(500);
      });

      it('is atomic: a failing row leaves both outbox and checkpoint unchanged', async () => {
        const { store } = await fresh();
        await store.commitBatch('r', [row('r', 'a')], cp('2024-05-01T10:00:00.000Z', { replayId: '1' }));
        const cpBefore = await store.getCheckpoint('r');
        const broken = row('r', 'z');
        (broken as { recordId: unknown }).recordId = null; // violates NOT NULL in the database
        await expect(
          store.commitBatch(
            'r',
            [row('r', 'b'), row('r', 'c'), broken],
            cp('2024-05-01T11:00:00.000Z', { replayId: '2' }),
          ),
        ).rejects.toThrow();
        expect(await store.getCheckpoint('r')).toEqual(cpBefore);
        expect((await store.list({})).map((r) => r.recordId)).toEqual(['a']);
      });

      it('2,000 rows in one call are fast', async () => {
        const { store } = await fresh();
        const rows = Array.from({ length: 2000 }, (_, i) => row('bulk', `00Q${String(i).padStart(15, '0')}`));
        const t0 = performance.now();
        const first = await store.commitBatch('bulk', rows, cp(T0));
        const t1 = performance.now();
        const second = await store.commitBatch('bulk', rows, cp(T0));
        const t2 = performance.now();
        console.log(
          `[${name}] commitBatch 2000 rows: ${(t1 - t0).toFixed(1)} ms new, ${(t2 - t1).toFixed(1)} ms all duplicates`,
        );
        expect(first.inserted).toBe(2000);
        expect(second.inserted).toBe(0);
        expect(t1 - t0).toBeLessThan(3000);
      });
    });

    describe('claimDue', () => {
      it('leases pending rows oldest first: sending, owner, lease, attempts+1', async () => {
        const { store } = await fresh();
        const rows = await seed(store, 'r', 5);
        const now = new Date();
        const claimed = await store.claimDue({ owner: 'w1', limit: 3, leaseMs: 90_000, now });
        expect(claimed.map((r) => r.id)).toEqual(rows.slice(0, 3).map((r) => r.id));
        for (const c of claimed) {
          expect(c).toMatchObject({ state: 'sending', leaseOwner: 'w1', attempts: 1 });
          expect(c.leaseUntil).toBe(new Date(now.getTime() + 90_000).toISOString());
          expect(c.message).toEqual(message('r', c.recordId));
        }
        expect((await store.get(rows[0]!.id))!.state).toBe('sending');
        const rest = await store.claimDue({ owner: 'w1', limit: 10, leaseMs: 90_000 });
        expect(rest.map((r) => r.id)).toEqual(rows.slice(3).map((r) => r.id));
        expect(await store.claimDue({ owner: 'w1', limit: 10, leaseMs: 90_000 })).toEqual([]);
        expect(await store.claimDue({ owner: 'w1', limit: 0, leaseMs: 90_000 })).toEqual([]);
      });

      it('only the given rules', async () => {
        const { store } = await fresh();
        await seed(store, 'a', 2);
        await seed(store, 'b', 2);
        await seed(store, 'c', 2);
        const got = await store.claimDue({ owner: 'o', limit: 10, leaseMs: 1000, rules: ['a', 'c'] });
        expect(got.map((r) => r.rule).sort()).toEqual(['a', 'a', 'c', 'c']);
        const all = await store.claimDue({ owner: 'o', limit: 10, leaseMs: 1000, rules: [] });
        expect(all.map((r) => r.rule)).toEqual(['b', 'b']);
      });

      it('failed rows only once their next attempt is due; released rows likewise', async () => {
        const { store } = await fresh();
        const [r1, r2] = await seed(store, 'r', 2);
        await store.claimDue({ owner: 'o', limit: 2, leaseMs: 60_000 });
        const due = new Date(Date.now() + 60_000);
        await store.recordOutcomes('o', [
          { id: r1!.id, kind: 'retry', error: '421 try later', nextAttemptAt: due },
          { id: r2!.id, kind: 'release', error: 'circuit open', nextAttemptAt: due },
        ]);
        expect(await store.claimDue({ owner: 'o', limit: 10, leaseMs: 1000 })).toEqual([]);
        expect(
          await store.claimDue({ owner: 'o', limit: 10, leaseMs: 1000, now: new Date(due.getTime() - 1) }),
        ).toEqual([]);
        const got = await store.claimDue({ owner: 'o', limit: 10, leaseMs: 1000, now: due });
        expect(got.map((r) => [r.id, r.attempts])).toEqual([
          [r1!.id, 2],
          [r2!.id, 1], // a release did not count as an attempt
        ]);
      });

      it('never hands the same row to two claimers at once', async () => {
        const { store, again } = await fresh();
        const other = await again();
        const total = 240;
        await seed(store, 'r', total);
        const seen: number[] = [];
        const claimer = async (s: Store, owner: string) => {
          for (;;) {
            const got = await s.claimDue({ owner, limit: 7, leaseMs: 60_000 });
            if (got.length === 0) return;
            seen.push(...got.map((r) => r.id));
          }
        };
        await Promise.all([
          claimer(store, 'a1'),
          claimer(other, 'b1'),
          claimer(store, 'a2'),
          claimer(other, 'b2'),
        ]);
        expect(seen.length).toBe(total);
        expect(new Set(seen).size).toBe(total);
        const counts = await store.counts();
        expect(counts.total.sending).toBe(total);
        const rows = await store.list({ limit: total });
        expect(rows.every((r) => r.attempts === 1)).toBe(true);
      });
    });

    describe('recordOutcomes', () => {
      it('applies each outcome kind and clears the lease', async () => {
        const { store } = await fresh();
        const rows = await seed(store, 'r', 5);
        await store.claimDue({ owner: 'o', limit: 5, leaseMs: 60_000 });
        const [sent, retry, dead, release, uncertain] = rows.map((r) => r.id) as [
          number,
          number,
          number,
          number,
          number,
        ];
        const next = new Date('2030-01-01T00:00:00.123Z');
        const result = {
          response: '250 2.0.0 OK queued',
          accepted: ['sales@example.com'],
          rejected: [],
          messageId: '<m@x>',
        };
        const before = Date.now();
        await store.recordOutcomes('o', [
          { id: sent, kind: 'sent', result },
          { id: retry, kind: 'retry', error: '451 greylisted', nextAttemptAt: next },
          { id: dead, kind: 'dead', error: '550 no such user' },
          { id: release, kind: 'release', error: 'circuit open: 535 auth failed', nextAttemptAt: next },
          { id: uncertain, kind: 'uncertain', error: 'connection reset after DATA' },
        ]);
        const got = async (id: number) => (await store.get(id))!;
        const s = await got(sent);
        expect(s).toMatchObject({ state: 'sent', result, leaseOwner: null, leaseUntil: null, attempts: 1 });
        expect(Date.parse(s.sentAt!)).toBeGreaterThanOrEqual(before - 1000);
        expect(await got(retry)).toMatchObject({
          state: 'failed',
          lastError: '451 greylisted',
          nextAttemptAt: '2030-01-01T00:00:00.123Z',
          attempts: 1,
          leaseOwner: null,
          leaseUntil: null,
          sentAt: null,
        });
        expect(await got(dead)).toMatchObject({
          state: 'dead',
          lastError: '550 no such user',
          leaseOwner: null,
        });
        expect(await got(release)).toMatchObject({
          state: 'pending',
          attempts: 0,
          lastError: 'circuit open: 535 auth failed',
          nextAttemptAt: '2030-01-01T00:00:00.123Z',
          leaseOwner: null,
        });
        expect(await got(uncertain)).toMatchObject({
          state: 'unknown',
          lastError: 'connection reset after DATA',
          leaseOwner: null,
          leaseUntil: null,
        });
        await store.recordOutcomes('o', []);
      });

      it('ignores outcomes from a process that does not hold the lease', async () => {
        const { store } = await fresh();
        const [r1, r2] = await seed(store, 'r', 2);
        const now = new Date();
        await store.claimDue({ owner: 'old', limit: 2, leaseMs: 1000, now });
        // a stranger
        await store.recordOutcomes('stranger', [{ id: r1!.id, kind: 'dead', error: 'x' }]);
        expect((await store.get(r1!.id))!).toMatchObject({ state: 'sending', leaseOwner: 'old' });
        // the lease expired, recovery moved r1 on, r2 was re-leased by another process (resend rule)
        await store.recoverAbandoned({ now: new Date(now.getTime() + 5000), resendRules: ['r'] });
        const again = await store.claimDue({
          owner: 'new',
          limit: 2,
          leaseMs: 60_000,
          now: new Date(now.getTime() + 5000),
        });
        expect(again.map((r) => r.id)).toEqual([r1!.id, r2!.id]);
        await store.recordOutcomes('old', [
          { id: r1!.id, kind: 'sent', result: { response: 'late', accepted: [], rejected: [] } },
          { id: r2!.id, kind: 'dead', error: 'late' },
        ]);
        expect((await store.get(r1!.id))!).toMatchObject({
          state: 'sending',
          leaseOwner: 'new',
          result: null,
        });
        expect((await store.get(r2!.id))!).toMatchObject({ state: 'sending', leaseOwner: 'new' });
        // an outcome for a row that is no longer sending does nothing either
        await store.recordOutcomes('new', [{ id: r1!.id, kind: 'dead', error: '550' }]);
        await store.recordOutcomes('new', [
          { id: r1!.id, kind: 'sent', result: { response: 'x', accepted: [], rejected: [] } },
        ]);
        expect((await store.get(r1!.id))!.state).toBe('dead');
      });
    });

    describe('cycle (group commit: outcomes, start reserved, claim, reserve ahead)', () => {
      it('reclaim: after a cycle whose reply was lost, what it leased and the owner does not hold goes back, uncounted', async () => {
        const { store } = await fresh();
        const ids = (await seed(store, 'r', 8)).map((r) => r.id);
        // held: ids[0] in flight, ids[1] reserved
        await store.cycle({ owner: 'o', leaseMs: 60_000, claim: 1, reserve: 1 });
        // the "lost" cycle: committed, but the owner never learnt what it got
        await store.cycle({ owner: 'o', leaseMs: 60_000, claim: 2, reserve: 2 });
        // a failed row of the owner's, retried later (lease cleared, state kept), and another owner's
        await store.cycle({
          owner: 'o',
          leaseMs: 60_000,
          outcomes: [
            { id: ids[0]!, kind: 'retry', error: '451', nextAttemptAt: new Date(Date.now() + 60_000) },
          ],
        });
        const mine = await store.cycle({ owner: 'p', leaseMs: 60_000, claim: 1 });
        const next = await store.cycle({
          owner: 'o',
          leaseMs: 60_000,
          reclaim: [ids[1]!],
          outcomes: [],
        });
        expect(next.reclaimed).toEqual([ids[2], ids[3], ids[4], ids[5]]);
        for (const id of [ids[2]!, ids[3]!]) {
          expect(await store.get(id)).toMatchObject({
            state: 'pending',
            attempts: 0,
            leaseOwner: null,
            leaseUntil: null,
          });
        }
        for (const id of [ids[4]!, ids[5]!]) {
          expect(await store.get(id)).toMatchObject({ state: 'pending', attempts: 0, leaseOwner: null });
        }
        // what it holds, and what is not its own, stay
        expect(await store.get(ids[1]!)).toMatchObject({ state: 'pending', leaseOwner: 'o' });
        expect(await store.get(ids[0]!)).toMatchObject({ state: 'failed', attempts: 1 });
        expect(await store.get(mine.claimed[0]!.id)).toMatchObject({ state: 'sending', leaseOwner: 'p' });
        // without reclaim, nothing of the kind (and no field)
        expect(await store.cycle({ owner: 'o', leaseMs: 60_000 })).toEqual({
          started: [],
          claimed: [],
          reserved: [],
        });
      });

      it('reserved rows stay pending with the lease and attempts uncounted; start moves them to sending', async () => {
        const { store } = await fresh();
        const rows = await seed(store, 'r', 6);
        const ids = rows.map((r) => r.id);
        const first = await store.cycle({ owner: 'o', leaseMs: 60_000, claim: 2, reserve: 3 });
        expect(first.claimed.map((r) => r.id)).toEqual(ids.slice(0, 2));
        expect(first.claimed.every((r) => r.state === 'sending' && r.attempts === 1)).toBe(true);
        expect(first.reserved.map((r) => r.id)).toEqual(ids.slice(2, 5));
        for (const r of first.reserved) {
          expect(r).toMatchObject({ state: 'pending', attempts: 0, leaseOwner: 'o' });
          expect(r.message).toEqual(message('r', r.recordId));
        }
        expect((await store.counts()).total).toMatchObject({ pending: 4, sending: 2 });
        // reserved rows are not claimable by anyone else while the lease lasts
        expect((await store.claimDue({ owner: 'p', limit: 10, leaseMs: 1000 })).map((r) => r.id)).toEqual([
          ids[5],
        ]);
        // outcome of one, start of two reserved rows, in one call
        const second = await store.cycle({
          owner: 'o',
          leaseMs: 60_000,
          outcomes: [
            { id: ids[0]!, kind: 'sent', result: { response: '250 ok', accepted: [], rejected: [] } },
          ],
          start: [ids[2]!, ids[3]!],
        });
        expect(second).toEqual({ started: [ids[2], ids[3]], claimed: [], reserved: [] });
        expect(await store.get(ids[0]!)).toMatchObject({ state: 'sent' });
        expect(await store.get(ids[2]!)).toMatchObject({ state: 'sending', attempts: 1, leaseOwner: 'o' });
        // another owner cannot start or release what it did not reserve
        const other = await store.cycle({
          owner: 'p',
          leaseMs: 60_000,
          start: [ids[4]!],
          release: [ids[4]!],
        });
        expect(other.started).toEqual([]);
        expect(await store.get(ids[4]!)).toMatchObject({ state: 'pending', leaseOwner: 'o' });
        // release hands a reservation back: due for anyone
        await store.cycle({ owner: 'o', leaseMs: 60_000, release: [ids[4]!] });
        expect(await store.get(ids[4]!)).toMatchObject({
          state: 'pending',
          leaseOwner: null,
          leaseUntil: null,
        });
        expect((await store.claimDue({ owner: 'p', limit: 10, leaseMs: 1000 })).map((r) => r.id)).toEqual([
          ids[4],
        ]);
      });

      it('after a crash, reserved rows are due again and never unknown; sending rows are', async () => {
        const { store } = await fresh();
        const rows = await seed(store, 'r', 4);
        const now = new Date();
        await store.cycle({ owner: 'dead', leaseMs: 1000, claim: 1, reserve: 3, now });
        const later = new Date(now.getTime() + 2000);
        const ids = await store.recoverAbandoned({ now: later, all: true });
        expect(ids).toEqual([rows[0]!.id]);
        expect((await store.counts()).total).toMatchObject({ unknown: 1, pending: 3, sending: 0 });
        const again = await store.cycle({ owner: 'new', leaseMs: 1000, claim: 10, now: later });
        expect(again.claimed.map((r) => r.id)).toEqual(rows.slice(1).map((r) => r.id));
        expect(again.claimed.every((r) => r.attempts === 1)).toBe(true);
      });

      it('a reservation whose lease expired can be taken by another owner; the first one then cannot start it', async () => {
        const { store } = await fresh();
        const [r1] = await seed(store, 'r', 1);
        const now = new Date();
        await store.cycle({ owner: 'a', leaseMs: 1000, reserve: 1, now });
        const later = new Date(now.getTime() + 2000);
        const taken = await store.cycle({ owner: 'b', leaseMs: 60_000, claim: 1, now: later });
        expect(taken.claimed.map((r) => r.id)).toEqual([r1!.id]);
        expect(
          (await store.cycle({ owner: 'a', leaseMs: 60_000, start: [r1!.id], now: later })).started,
        ).toEqual([]);
        expect(await store.get(r1!.id)).toMatchObject({ state: 'sending', leaseOwner: 'b', attempts: 1 });
      });
    });

    describe('recoverAbandoned', () => {
      it('expired leases become unknown (or pending for resend rules); live leases stay', async () => {
        const { store } = await fresh();
        const [a1, a2] = await seed(store, 'a', 2);
        const [b1] = await seed(store, 'b', 1);
        const now = new Date();
        await store.claimDue({ owner: 'o', limit: 1, leaseMs: 1000, now, rules: ['a'] }); // a1, expires soon
        await store.claimDue({ owner: 'o', limit: 1, leaseMs: 1000, now, rules: ['b'] }); // b1, expires soon
        await store.claimDue({ owner: 'o', limit: 1, leaseMs: 600_000, now, rules: ['a'] }); // a2, long lease
        expect(await store.recoverAbandoned({ now })).toEqual([]);
        const later = new Date(now.getTime() + 2000);
        const ids = await store.recoverAbandoned({ now: later, resendRules: ['b'] });
        expect(ids).toEqual([a1!.id, b1!.id]);
        expect(await store.get(a1!.id)).toMatchObject({
          state: 'unknown',
          lastError: ABANDONED,
          leaseOwner: null,
          attempts: 1,
        });
        expect(await store.get(b1!.id)).toMatchObject({
          state: 'pending',
          leaseOwner: null,
          leaseUntil: null,
        });
        expect(await store.get(a2!.id)).toMatchObject({ state: 'sending', leaseOwner: 'o' });
        // unknown is not re-sent; the pending one is claimable again
        const re = await store.claimDue({ owner: 'p', limit: 10, leaseMs: 1000, now: later });
        expect(re.map((r) => r.id)).toEqual([b1!.id]);
        expect(re[0]!.attempts).toBe(2);
      });

      it(`'all' takes every sending row only for the single-process sqlite store`, async () => {
        const { store } = await fresh();
        const [r1] = await seed(store, 'r', 1);
        await store.claimDue({ owner: 'o', limit: 1, leaseMs: 600_000 });
        const ids = await store.recoverAbandoned({ all: true });
        if (store.kind === 'sqlite') {
          expect(ids).toEqual([r1!.id]);
          expect((await store.get(r1!.id))!.state).toBe('unknown');
        } else {
          // other replicas may be alive: only expired leases count
          expect(ids).toEqual([]);
          expect((await store.get(r1!.id))!.state).toBe('sending');
        }
      });
    });

    describe('leases and fenced checkpoints', () => {
      it('one holder at a time: a live lease is extended for its holder, refused to another', async () => {
        const { store, again } = await fresh();
        const other = await again();
        const a = await store.acquireLease('r', 'A', 60_000);
        expect(a).toMatchObject({ rule: 'r', holder: 'A', epoch: 1 });
        expect(Date.parse(a!.expiresAt) - Date.now()).toBeGreaterThan(50_000);
        expect(await other.acquireLease('r', 'B', 60_000)).toBeNull();
        // renewal: same epoch, later expiry, acquiredAt kept
        await sleep(20);
        const renewed = await store.acquireLease('r', 'A', 60_000);
        expect(renewed).toMatchObject({ holder: 'A', epoch: 1, acquiredAt: a!.acquiredAt });
        expect(Date.parse(renewed!.expiresAt)).toBeGreaterThan(Date.parse(a!.expiresAt));
        // leases are per rule
        expect(await other.acquireLease('s', 'B', 60_000)).toMatchObject({ holder: 'B', epoch: 1 });
        expect((await other.listLeases()).map((l) => [l.rule, l.holder, l.epoch])).toEqual([
          ['r', 'A', 1],
          ['s', 'B', 1],
        ]);
      });

      it('an expired lease goes to the next taker with a new epoch, and so does a release', async () => {
        const { store, again } = await fresh();
        const other = await again();
        await store.acquireLease('r', 'A', 150);
        await sleep(300);
        expect(await other.acquireLease('r', 'B', 60_000)).toMatchObject({ holder: 'B', epoch: 2 });
        // A coming back finds B's live lease
        expect(await store.acquireLease('r', 'A', 60_000)).toBeNull();
        // a release by a stale epoch changes nothing; by the holder it frees the rule at once
        await store.releaseLease('r', { holder: 'A', epoch: 1 });
        expect(await store.acquireLease('r', 'A', 60_000)).toBeNull();
        await other.releaseLease('r', { holder: 'B', epoch: 2 });
        expect(await store.acquireLease('r', 'A', 60_000)).toMatchObject({ holder: 'A', epoch: 3 });
      });

      it('a holder whose own lease expired takes it again under a new epoch', async () => {
        const { store } = await fresh();
        await store.acquireLease('r', 'A', 150);
        await sleep(300);
        expect(await store.acquireLease('r', 'A', 60_000)).toMatchObject({ holder: 'A', epoch: 2 });
      });

      it('a checkpoint write fenced by a stale epoch is refused and writes nothing', async () => {
        const { store, again } = await fresh();
        const other = await again();
        const a = (await store.acquireLease('r', 'A', 150))!;
        await store.commitBatch('r', [row('r', 'rec1')], cp(T0), undefined, { holder: 'A', epoch: a.epoch });
        // A pauses past its lease; B takes over and moves the cursor
        await sleep(300);
        const b = (await other.acquireLease('r', 'B', 60_000))!;
        const T1 = '2024-05-01T11:00:00.000Z';
        await other.commitBatch('r', [row('r', 'rec2')], cp(T1), undefined, { holder: 'B', epoch: b.epoch });
        // A's late write, with its stale view: refused, cursor and ledger untouched
        await expect(
          store.commitBatch(
            'r',
            [row('r', 'rec3')],
            cp('2024-05-01T10:30:00.000Z', { replayId: '99' }),
            undefined,
            {
              holder: 'A',
              epoch: a.epoch,
            },
          ),
        ).rejects.toMatchObject({ code: 'ELEASELOST' });
        expect(await store.getCheckpoint('r')).toMatchObject({ watermark: T1, replayId: null });
        expect(await store.existingRecordIds('r', ['rec1', 'rec2', 'rec3'])).toEqual(
          new Set(['rec1', 'rec2']),
        );
        // an expired lease of the right holder and epoch is refused too
        const c = (await store.acquireLease('q', 'A', 150))!;
        await sleep(300);
        await expect(
          store.commitBatch('q', [], cp(T0), undefined, { holder: 'A', epoch: c.epoch }),
        ).rejects.toMatchObject({ code: 'ELEASELOST' });
        expect(await store.getCheckpoint('q')).toBeNull();
        // unfenced writes (a single process without leadership) still work
        await store.commitBatch('u', [], cp(T0));
        expect(await store.getCheckpoint('u')).not.toBeNull();
      });

      it('heartbeat lists the live replicas; removeReplica forgets one and ends its leases', async () => {
        const { store, again } = await fresh();
        const other = await again();
        expect((await store.heartbeat({ id: 'A', host: 'h1', pid: 1 }, 60_000)).map((r) => r.id)).toEqual([
          'A',
        ]);
        const seen = await other.heartbeat({ id: 'B', host: 'h2', pid: 2 }, 60_000);
        expect(seen.map((r) => [r.id, r.host, r.pid])).toEqual([
          ['A', 'h1', 1],
          ['B', 'h2', 2],
        ]);
        await store.heartbeat({ id: 'C', host: 'h3', pid: 3 }, 100);
        await sleep(250);
        // C's heartbeat expired: not alive, but still listed as seen recently
        expect((await store.heartbeat({ id: 'A', host: 'h1', pid: 1 }, 60_000)).map((r) => r.id)).toEqual([
          'A',
          'B',
        ]);
        expect((await store.listReplicas()).map((r) => r.id).sort()).toEqual(['A', 'B', 'C']);
        await other.acquireLease('r', 'B', 60_000);
        await other.removeReplica('B');
        expect((await store.listReplicas()).map((r) => r.id).sort()).toEqual(['A', 'C']);
        expect(await store.acquireLease('r', 'A', 60_000)).toMatchObject({ holder: 'A', epoch: 2 });
      });

      it("deadOwners: a dead replica's sending rows are recovered before their row lease ends", async () => {
        const { store } = await fresh();
        const [a1, a2] = await seed(store, 'a', 2);
        const [b1] = await seed(store, 'b', 1);
        await store.heartbeat({ id: 'dead', host: 'h', pid: 1 }, 100);
        await store.heartbeat({ id: 'alive', host: 'h', pid: 2 }, 60_000);
        await store.heartbeat({ id: 'late', host: 'h', pid: 3 }, 400);
        await store.claimDue({ owner: 'dead', limit: 1, leaseMs: 600_000, rules: ['a'] }); // a1
        await store.claimDue({ owner: 'alive', limit: 1, leaseMs: 600_000, rules: ['a'] }); // a2
        await store.claimDue({ owner: 'dead', limit: 1, leaseMs: 600_000, rules: ['b'] }); // b1, resend rule
        const [c1] = await seed(store, 'c', 1);
        await store.claimDue({ owner: 'late', limit: 1, leaseMs: 600_000, rules: ['c'] }); // c1
        // dead's heartbeat (100 ms) ended more than its ttl ago; late's (400 ms) just ended
        await sleep(500);
        expect(await store.recoverAbandoned({ resendRules: ['b'] })).toEqual([]);
        expect(await store.recoverAbandoned({ resendRules: ['b'], deadOwners: true })).toEqual([a1!.id]);
        expect(await store.get(a1!.id)).toMatchObject({ state: 'unknown', lastError: ABANDONED });
        // the live replica's row, and the resend rule's row (its row lease decides), stay
        expect((await store.get(a2!.id))!.state).toBe('sending');
        expect((await store.get(b1!.id))!.state).toBe('sending');
        // a replica whose heartbeat only just ended may be cut off for a moment: its rows wait
        expect((await store.get(c1!.id))!.state).toBe('sending');
      });

      it("self: a process never takes its own rows for a dead replica's; onlySelf recovers its own expired ones, saying so", async () => {
        const { store } = await fresh();
        const [a1, a2, a3] = await seed(store, 'a', 3);
        const [b1] = await seed(store, 'b', 1);
        // 'me' was paused: its heartbeat ended long ago, as did the other one's ('gone')
        await store.heartbeat({ id: 'me', host: 'h', pid: 1 }, 100);
        await store.heartbeat({ id: 'gone', host: 'h', pid: 2 }, 100);
        await store.claimDue({ owner: 'me', limit: 1, leaseMs: 600_000, rules: ['a'] }); // a1: live row lease
        await store.claimDue({ owner: 'me', limit: 1, leaseMs: 300, rules: ['a'] }); // a2: row lease runs out
        await store.claimDue({ owner: 'gone', limit: 1, leaseMs: 600_000, rules: ['a'] }); // a3
        await store.claimDue({ owner: 'me', limit: 1, leaseMs: 300, rules: ['b'] }); // b1: resend rule
        await sleep(500);
        // another replica's view of it: 'me' looks dead (a2 also by its row lease)
        // but 'me' itself only takes the other one's row
        expect(await store.recoverAbandoned({ deadOwners: true, self: 'me', resendRules: ['b'] })).toEqual([
          a3!.id,
        ]);
        expect(await store.get(a3!.id)).toMatchObject({ state: 'unknown', lastError: ABANDONED });
        expect((await store.get(a1!.id))!.state).toBe('sending');
        // its own rows whose row lease ran out, with the truth about whose they were
        const own = await store.recoverAbandoned({
          deadOwners: true,
          all: true,
          self: 'me',
          onlySelf: true,
          resendRules: ['b'],
        });
        expect(own).toEqual([a2!.id, b1!.id]);
        expect(await store.get(a2!.id)).toMatchObject({
          state: 'unknown',
          lastError:
            "this process's send lease expired while it was paused or stalled (the send may have gone out); delivery uncertain",
          lastErrorCode: 'EABANDONED',
        });
        expect(await store.get(b1!.id)).toMatchObject({
          state: 'pending',
          lastError:
            "this process's send lease expired while it was paused or stalled; re-sending (onUncertain: resend)",
        });
        // its live one stays: neither dead owners nor 'all' apply to onlySelf
        expect((await store.get(a1!.id))!.state).toBe('sending');
      });
    });

    describe('operator actions', () => {
      it('retry: dead, failed, unknown -> pending and due now, keeping the error history', async () => {
        const { store } = await fresh();
        const ids = await everyState(store);
        const before = Date.now();
        for (const id of [ids.dead, ids.failed, ids.unknown]) {
          const prior = (await store.get(id))!;
          expect(await store.retry(id)).toBe(true);
          const after = (await store.get(id))!;
          expect(after).toMatchObject({
            state: 'pending',
            lastError: prior.lastError,
            attempts: prior.attempts,
          });
          expect(Date.parse(after.nextAttemptAt!)).toBeGreaterThanOrEqual(before - 1000);
          expect(Date.parse(after.nextAttemptAt!)).toBeLessThanOrEqual(Date.now() + 1000);
        }
        for (const id of [ids.pending, ids.sending, ids.sent, ids.noMessage, 999_999]) {
          expect(await store.retry(id)).toBe(false);
        }
        expect((await store.get(ids.sent))!.state).toBe('sent');
        const claimed = await store.claimDue({
          owner: 'x',
          limit: 10,
          leaseMs: 1000,
          now: new Date(Date.now() + 1000),
        });
        expect(claimed.map((r) => r.id).sort((a, b) => a - b)).toEqual(
          [ids.pending, ids.failed, ids.dead, ids.unknown].sort((a, b) => a - b),
        );
      });

      it('retryAllDead moves every dead row that has a message', async () => {
        const { store } = await fresh();
        const ids = await everyState(store);
        const [extra] = await seed(store, 'z', 1);
        await store.claimDue({ owner: 'o', limit: 1, leaseMs: 1000, rules: ['z'] });
        await store.recordOutcomes('o', [{ id: extra!.id, kind: 'dead', error: '554' }]);
        expect(await store.retryAllDead()).toBe(2);
        expect((await store.get(ids.dead))!.state).toBe('pending');
        expect((await store.get(extra!.id))!.state).toBe('pending');
        expect((await store.get(ids.noMessage))!.state).toBe('dead');
        expect((await store.get(ids.unknown))!.state).toBe('unknown');
        expect(await store.retryAllDead()).toBe(0);
      });

      it('resolve: only unknown rows, to sent or dead, with the note kept', async () => {
        const { store } = await fresh();
        const ids = await everyState(store);
        for (const id of [ids.pending, ids.sending, ids.sent, ids.failed, ids.dead, 999_999]) {
          expect(await store.resolve(id, 'sent')).toBe(false);
        }
        expect(await store.resolve(ids.unknown, 'sent', 'customer confirmed receipt')).toBe(true);
        const got = (await store.get(ids.unknown))!;
        expect(got.state).toBe('sent');
        expect(got.lastError).toContain('reset after DATA');
        expect(got.lastError).toContain('resolved as sent by operator: customer confirmed receipt');
        expect(await store.resolve(ids.unknown, 'dead')).toBe(false);

        const [r] = await seed(store, 'q', 1);
        await store.claimDue({ owner: 'o', limit: 1, leaseMs: 1, rules: ['q'], now: new Date(0) });
        await store.recoverAbandoned({ now: new Date(1000) });
        expect(await store.resolve(r!.id, 'dead')).toBe(true);
        expect((await store.get(r!.id))!).toMatchObject({ state: 'dead' });
        expect((await store.get(r!.id))!.lastError).toMatch(/resolved as dead by operator$/);
      });
    });

    describe('reading', () => {
      it('counts by rule and state, every state present in the total', async () => {
        const { store } = await fresh();
        const empty = await store.counts();
        expect(empty).toEqual({
          byRule: {},
          byChannel: {},
          total: { pending: 0, sending: 0, sent: 0, failed: 0, dead: 0, unknown: 0 },
        });
        await everyState(store);
        await seed(store, 'other', 3);
        const c = await store.counts();
        expect(Object.keys(c.total).sort()).toEqual([...OUTBOX_STATES].sort());
        expect(c.total).toEqual({ pending: 4, sending: 1, sent: 1, failed: 1, dead: 2, unknown: 1 });
        expect(c.byRule).toEqual({
          r: { pending: 1, sending: 1, sent: 1, failed: 1, dead: 2, unknown: 1 },
          other: { pending: 3 },
        });
        expect(c.byChannel).toEqual({ email: c.total });
      });

      it('list: newest first, filters by state and rule, limit (default 100)', async () => {
        const { store } = await fresh();
        const a = await seed(store, 'a', 110);
        const b = await seed(store, 'b', 3);
        const all = await store.list({});
        expect(all.length).toBe(100);
        expect(all[0]!.id).toBe(b[2]!.id);
        expect(all.map((r) => r.id)).toEqual([...all.map((r) => r.id)].sort((x, y) => y - x));
        expect((await store.list({ rule: 'b' })).map((r) => r.id)).toEqual(b.map((r) => r.id).reverse());
        expect((await store.list({ rule: 'a', limit: 200 })).length).toBe(110);
        expect((await store.list({ limit: 2 })).length).toBe(2);
        await store.claimDue({ owner: 'o', limit: 1, leaseMs: 1000 });
        await store.recordOutcomes('o', [{ id: a[0]!.id, kind: 'dead', error: '550' }]);
        expect((await store.list({ state: 'dead' })).map((r) => r.id)).toEqual([a[0]!.id]);
        expect(await store.list({ state: 'dead', rule: 'b' })).toEqual([]);
        expect(await store.list({ rule: 'nope' })).toEqual([]);
      });

      it('lastErrors: error rows only, most recently changed first', async () => {
        const { store } = await fresh();
        const [r1, r2, r3] = await seed(store, 'r', 3);
        await store.claimDue({ owner: 'o', limit: 3, leaseMs: 60_000 });
        await store.recordOutcomes('o', [{ id: r2!.id, kind: 'dead', error: 'second row, first error' }]);
        await sleep(15);
        await store.recordOutcomes('o', [
          {
            id: r1!.id,
            kind: 'retry',
            error: 'first row, later error',
            nextAttemptAt: new Date(Date.now() + 60_000),
          },
        ]);
        await sleep(15);
        await store.recordOutcomes('o', [
          { id: r3!.id, kind: 'sent', result: { response: '250', accepted: [], rejected: [] } },
        ]);
        const errs = await store.lastErrors(10);
        expect(errs.map((r) => r.id)).toEqual([r1!.id, r2!.id]);
        expect((await store.lastErrors(1)).map((r) => r.id)).toEqual([r1!.id]);
      });

      it('nextDueAt: earliest next attempt of rows waiting for one', async () => {
        const { store } = await fresh();
        expect(await store.nextDueAt()).toBeNull();
        const [r1, r2, r3] = await seed(store, 'r', 3);
        expect(await store.nextDueAt()).toBeNull(); // fresh pending rows are due at once, not scheduled
        await store.claimDue({ owner: 'o', limit: 3, leaseMs: 60_000 });
        const t1 = new Date('2031-01-01T00:00:10.500Z');
        const t2 = new Date('2031-01-01T00:00:05.250Z');
        await store.recordOutcomes('o', [
          { id: r1!.id, kind: 'retry', error: 'e', nextAttemptAt: t1 },
          { id: r2!.id, kind: 'release', error: 'circuit', nextAttemptAt: t2 },
          { id: r3!.id, kind: 'dead', error: 'd' },
        ]);
        expect((await store.nextDueAt())!.toISOString()).toBe(t2.toISOString());
        await store.claimDue({ owner: 'o', limit: 1, leaseMs: 60_000, now: t2 });
        expect((await store.nextDueAt())!.toISOString()).toBe(t1.toISOString());
      });
    });

    describe('close', () => {
      it('close() twice is fine; every method rejects clearly afterwards', async () => {
        const { store } = await fresh();
        await store.close();
        await store.close();
        const calls: [string, () => Promise<unknown>][] = [
          ['migrate', () => store.migrate()],
          ['getCheckpoint', () => store.getCheckpoint('r')],
          ['listCheckpoints', () => store.listCheckpoints()],
          ['commitBatch', () => store.commitBatch('r', [], cp(T0))],
          ['claimDue', () => store.claimDue({ owner: 'o', limit: 1, leaseMs: 1 })],
          ['recordOutcomes', () => store.recordOutcomes('o', [])],
          ['recoverAbandoned', () => store.recoverAbandoned({})],
          ['counts', () => store.counts()],
          ['list', () => store.list({})],
          ['get', () => store.get(1)],
          ['retry', () => store.retry(1)],
          ['retryAllDead', () => store.retryAllDead()],
          ['resolve', () => store.resolve(1, 'sent')],
          ['lastErrors', () => store.lastErrors(1)],
          ['nextDueAt', () => store.nextDueAt()],
        ];
        for (const [method, call] of calls) {
          const err = await call().then(
            () => null,
            (e: unknown) => e,
          );
          expect(err, method).toBeInstanceOf(StoreClosedError);
          expect((err as Error).message).toContain(`${method}()`);
        }
      });
    });

    describe('match states and threading (on: updated)', () => {
      it('writes states with the batch, never replaces a later one, and prunes by SystemModstamp', async () => {
        const { store } = await fresh();
        const t1 = '2024-05-01T10:00:00.000Z';
        const t2 = '2024-05-01T11:00:00.000Z';
        await store.commitBatch('u', [row('u', 'a.20240501T100000Z')], cp(T0), {
          matchStates: [
            {
              recordId: 'a',
              matched: true,
              watched: { Status: 'Qualified', Owner: { Email: 'x@y.z' } },
              systemModstamp: t1,
            },
            { recordId: 'b', matched: false, watched: null, systemModstamp: t2 },
          ],
        });
        let states = await store.getMatchStates('u', ['a', 'b', 'c']);
        expect([...states.keys()].sort()).toEqual(['a', 'b']);
        expect(states.get('a')).toEqual({
          recordId: 'a',
          matched: true,
          watched: { Status: 'Qualified', Owner: { Email: 'x@y.z' } },
          systemModstamp: t1,
        });
        expect(states.get('b')).toEqual({ recordId: 'b', matched: false, watched: null, systemModstamp: t2 });
        // another rule's states are its own
        expect((await store.getMatchStates('other', ['a'])).size).toBe(0);

        // an older observation (a re-read, a late stream batch) does not replace a newer one
        await store.commitBatch('u', [], cp(T0), {
          matchStates: [
            { recordId: 'a', matched: false, watched: { Status: 'Open' }, systemModstamp: t2 },
            { recordId: 'b', matched: true, watched: { Status: 'Old' }, systemModstamp: t1 },
          ],
        });
        states = await store.getMatchStates('u', ['a', 'b']);
        expect(states.get('a')).toMatchObject({
          matched: false,
          watched: { Status: 'Open' },
          systemModstamp: t2,
        });
        expect(states.get('b')).toMatchObject({ matched: false, watched: null, systemModstamp: t2 });

        await store.commitBatch('u', [], cp(T0), {
          matchStates: [{ recordId: 'c', matched: true, watched: {}, systemModstamp: t1 }],
          pruneMatchStatesBefore: '2024-05-01T10:30:00.000Z',
        });
        states = await store.getMatchStates('u', ['a', 'b', 'c']);
        expect([...states.keys()].sort()).toEqual(['a', 'b']);
      });

      it('states roll back with the batch when the batch fails', async () => {
        const { store } = await fresh();
        await expect(
          store.commitBatch('u', [row('u', 'x', { recordCreatedDate: 'not a date' })], cp(T0), {
            matchStates: [{ recordId: 'x', matched: true, watched: null, systemModstamp: T0 }],
          }),
        ).rejects.toThrow();
        expect((await store.getMatchStates('u', ['x'])).size).toBe(0);
        expect(await store.getCheckpoint('u')).toBeNull();
      });

      it('update rows keyed by record and version coexist; created rows keep their one-per-record ledger', async () => {
        const { store } = await fresh();
        const created = row('new-leads', 'rec1');
        await store.commitBatch('new-leads', [created], cp(T0));
        expect((await store.commitBatch('new-leads', [row('new-leads', 'rec1')], cp(T0))).inserted).toBe(0);
        const v1 = row('qualified', 'rec1.20240501T100000Z');
        const v2 = row('qualified', 'rec1.20240501T110000Z');
        expect((await store.commitBatch('qualified', [v1, v2], cp(T0))).inserted).toBe(2);
        expect((await store.commitBatch('qualified', [v1], cp(T0))).inserted).toBe(0);
        // an update row of a record without a created notification threads the later ones
        await store.commitBatch('qualified', [row('qualified', 'rec2.20240501T100000Z')], cp(T0));
        await store.commitBatch('qualified', [row('qualified', 'rec20.20240501T100000Z')], cp(T0));
        const ids = await store.firstMessageIds(['rec1', 'rec2', 'rec3']);
        expect(Object.fromEntries(ids)).toEqual({
          rec1: '<new-leads.rec1@test.local>',
          rec2: '<qualified.rec2.20240501T100000Z@test.local>',
        });
      });
    });

    describe('channels (ledger key rule + record + channel)', () => {
      const chan = (recordId: string, channel: 'webhook' | 'slack' | 'teams') =>
        row('r', recordId, { channel, message: hook('r', recordId, channel) });

      it('one row per channel of a record; each channel keeps its own once-only ledger', async () => {
        const { store } = await fresh();
        const batch = [row('r', 'a'), chan('a', 'webhook'), chan('a', 'slack'), chan('a', 'teams')];
        expect((await store.commitBatch('r', batch, cp(T0))).inserted).toBe(4);
        expect((await store.commitBatch('r', batch, cp(T0))).inserted).toBe(0);
        // a channel added later for the same record is a new key; the others stay once
        expect(
          (
            await store.commitBatch(
              'r',
              [row('r', 'b', { channel: 'slack', message: hook('r', 'b', 'slack') }), row('r', 'a')],
              cp(T0),
            )
          ).inserted,
        ).toBe(1);
        const rows = await store.list({});
        expect(rows.map((r) => `${r.recordId}:${r.channel}`).sort()).toEqual([
          'a:email',
          'a:slack',
          'a:teams',
          'a:webhook',
          'b:slack',
        ]);
        // the request body comes back byte for byte
        const webhook = rows.find((r) => r.channel === 'webhook');
        expect(JSON.stringify(webhook!.message)).toBe(JSON.stringify(hook('r', 'a', 'webhook')));
        expect((await store.list({ channel: 'slack' })).map((r) => r.recordId).sort()).toEqual(['a', 'b']);
        expect([...(await store.existingRecordIds('r', ['a', 'b', 'c']))].sort()).toEqual(['a', 'b']);
        const counts = await store.counts();
        expect(counts.byChannel).toEqual({
          email: { pending: 1 },
          webhook: { pending: 1 },
          slack: { pending: 2 },
          teams: { pending: 1 },
        });
        expect(counts.byRule).toEqual({ r: { pending: 5 } });
        expect(counts.total.pending).toBe(5);
        // threading looks at email rows only
        expect(Object.fromEntries(await store.firstMessageIds(['a', 'b']))).toEqual({
          a: '<r.a@test.local>',
        });
      });

      it('claimDue and cycle with a channel take only that channel; nextDueAt per channel', async () => {
        const { store } = await fresh();
        await store.commitBatch(
          'r',
          [row('r', 'a'), chan('a', 'slack'), row('r', 'b'), chan('b', 'slack'), chan('c', 'webhook')],
          cp(T0),
        );
        const slack = await store.claimDue({ owner: 's', limit: 10, leaseMs: 60_000, channel: 'slack' });
        expect(slack.map((r) => `${r.recordId}:${r.channel}`)).toEqual(['a:slack', 'b:slack']);
        const email = await store.cycle({
          owner: 'e',
          leaseMs: 60_000,
          claim: 1,
          reserve: 5,
          channel: 'email',
        });
        expect(email.claimed.map((r) => `${r.recordId}:${r.channel}`)).toEqual(['a:email']);
        expect(email.reserved.map((r) => `${r.recordId}:${r.channel}`)).toEqual(['b:email']);
        const hooks = await store.cycle({ owner: 'w', leaseMs: 60_000, claim: 5, channel: 'webhook' });
        expect(hooks.claimed.map((r) => r.recordId)).toEqual(['c']);
        // a retry of one channel is due later without touching another channel's due time
        const later = new Date(Date.now() + 3_600_000);
        await store.recordOutcomes('s', [
          { id: slack[0]!.id, kind: 'retry', error: '429', code: 'EHTTP', nextAttemptAt: later },
        ]);
        expect((await store.nextDueAt('slack'))?.toISOString()).toBe(later.toISOString());
        expect(await store.nextDueAt('email')).toBeNull();
        expect((await store.nextDueAt())?.toISOString()).toBe(later.toISOString());
      });

      it("reclaim with a channel hands back only that channel's rows (one process runs a dispatcher per channel)", async () => {
        const { store } = await fresh();
        await store.commitBatch(
          'r',
          [row('r', 'a'), chan('a', 'webhook'), row('r', 'b'), chan('b', 'webhook')],
          cp(T0),
        );
        // one owner (the process), two dispatchers: the email one holds a send in flight
        const email = await store.cycle({ owner: 'o', leaseMs: 60_000, claim: 2, channel: 'email' });
        expect(email.claimed).toHaveLength(2);
        // the webhook dispatcher's cycle whose reply was lost; then it reclaims holding nothing
        await store.cycle({ owner: 'o', leaseMs: 60_000, claim: 2, channel: 'webhook' });
        const next = await store.cycle({ owner: 'o', leaseMs: 60_000, reclaim: [], channel: 'webhook' });
        expect(next.reclaimed).toHaveLength(2);
        for (const r of (await store.list({})).filter((x) => x.channel === 'webhook')) {
          expect(r).toMatchObject({ state: 'pending', leaseOwner: null, attempts: 0 });
        }
        // the email rows in flight are untouched
        for (const r of email.claimed) {
          expect(await store.get(r.id)).toMatchObject({ state: 'sending', leaseOwner: 'o', attempts: 1 });
        }
      });
    });

    describe('digests', () => {
      const item = (key: string) => ({
        recordKey: key,
        object: 'Lead',
        record: { Id: key, LastName: `L ${key}` },
      });
      const digestRow = (key: string, n: number) => ({
        ...row('digest', key),
        message: { ...message('digest', key), subject: `${n} leads` },
      });

      it('collects items once per key, and a digest covers every open item in one transaction', async () => {
        const { store } = await fresh();
        expect(
          (await store.commitBatch('digest', [], cp(T0), { digestItems: [item('a'), item('b'), item('c')] }))
            .inserted,
        ).toBe(3);
        expect(
          (await store.commitBatch('digest', [], cp(T0), { digestItems: [item('a'), item('d')] })).inserted,
        ).toBe(1);
        const open = await store.openDigestItems('digest', 2);
        expect(open.count).toBe(4);
        expect(open.since).toBeNull();
        expect(open.items.map((i) => i.recordKey)).toEqual(['a', 'b']);
        expect(open.items[0]!.record).toEqual({ Id: 'a', LastName: 'L a' });

        let seen: { keys: string[]; count: number; since: string | null } | undefined;
        const first = await store.commitDigest('digest', {
          until: '2024-05-01T11:00:00.000Z',
          maxRecords: 2,
          build: (c) => {
            seen = { keys: c.items.map((i) => i.recordKey), count: c.count, since: c.since };
            return digestRow('digest.20240501T110000Z', c.count);
          },
        });
        expect(seen).toEqual({ keys: ['a', 'b'], count: 4, since: null });
        expect(first.count).toBe(4);
        expect(first.outboxId).not.toBeNull();
        // all four are covered, also the two not listed: none carried over
        expect((await store.openDigestItems('digest', 10)).count).toBe(0);
        // a re-collected record stays in its digest
        expect(
          (await store.commitBatch('digest', [], cp(T0), { digestItems: [item('a'), item('e')] })).inserted,
        ).toBe(1);
        // the same digest again (a restart in the same second): nothing changes
        const again = await store.commitDigest('digest', {
          until: '2024-05-01T11:00:00.000Z',
          maxRecords: 2,
          build: (c) => digestRow('digest.20240501T110000Z', c.count),
        });
        expect(again).toEqual({ outboxId: null, count: 0 });
        const next = await store.openDigestItems('digest', 10);
        expect(next.items.map((i) => i.recordKey)).toEqual(['e']);
        expect(next.since).toBe('2024-05-01T11:00:00.000Z');
        // nothing to send (sendEmpty: false) writes nothing
        const { store: other } = await fresh();
        expect(await other.commitDigest('digest', { until: T0, maxRecords: 5, build: () => null })).toEqual({
          outboxId: null,
          count: 0,
        });
      });

      it('lists the oldest maxRecords while they weigh less than DIGEST_LIST_BYTES; the rest are counted and covered', async () => {
        const { store } = await fresh();
        // ten 256 KB records: four are listed (the ones before the fifth weigh over 1 MB), all ten counted
        const big = (key: string) => ({
          recordKey: key,
          object: 'Lead',
          record: { Id: key, Description: key.padEnd(256 * 1024, 'x') },
        });
        const keys = Array.from({ length: 10 }, (_, i) => `k${i}`);
        await store.commitBatch('digest', [], cp(T0), { digestItems: keys.map(big) });
        const open = await store.openDigestItems('digest', 500);
        expect(open.count).toBe(10);
        expect(open.items.map((i) => i.recordKey)).toEqual(keys.slice(0, 4));
        expect((await store.openDigestItems('digest', 3)).items.map((i) => i.recordKey)).toEqual(
          keys.slice(0, 3),
        );
        let listed: string[] = [];
        const sent = await store.commitDigest('digest', {
          until: '2024-05-01T11:00:00.000Z',
          maxRecords: 500,
          build: (c) => {
            listed = c.items.map((i) => i.recordKey);
            return digestRow('digest.20240501T110000Z', c.count);
          },
        });
        expect(listed).toEqual(keys.slice(0, 4));
        expect(sent.count).toBe(10);
        expect((await store.openDigestItems('digest', 500)).count).toBe(0);
        // one record over the budget on its own is still listed
        await store.commitBatch('digest', [], cp(T0), {
          digestItems: [
            { recordKey: 'huge', object: 'Lead', record: { Id: 'huge', D: 'y'.repeat(2 * 1024 * 1024) } },
          ],
        });
        expect((await store.openDigestItems('digest', 500)).items.map((i) => i.recordKey)).toEqual(['huge']);
      });

      it('a failing digest commit leaves every item open', async () => {
        const { store } = await fresh();
        await store.commitBatch('digest', [], cp(T0), { digestItems: [item('a')] });
        await expect(
          store.commitDigest('digest', {
            until: T0,
            maxRecords: 5,
            build: () => ({ ...digestRow('digest.x', 1), recordCreatedDate: 'nope' }),
          }),
        ).rejects.toThrow();
        expect((await store.openDigestItems('digest', 5)).count).toBe(1);
      });
    });

    describe('send API requests', () => {
      const request = (id: string, token: string, key: string | null, bodyHash = 'h1'): SendApiRequest => ({
        id,
        token,
        idempotencyKey: key,
        bodyHash,
        row: row(`api:${token}`, id),
      });

      it('writes each new request as an ordinary pending outbox row plus its message, in one batch', async () => {
        const { store } = await fresh();
        const out = await store.enqueueSendRequests([request('m1', 'a', null), request('m2', 'a', 'k1')]);
        expect(out.map((o) => o.kind)).toEqual(['created', 'created']);
        const first = out[0]!;
        if (first.kind !== 'created') throw new Error('unreachable');
        const r = await store.get(first.outboxId);
        expect(r).toMatchObject({ rule: 'api:a', recordId: 'm1', state: 'pending', attempts: 0 });
        expect(r!.message).toEqual(message('api:a', 'm1'));
        // the dispatcher claims it like any rule's row
        const claimed = await store.claimDue({ owner: 'o', limit: 10, leaseMs: 60_000 });
        expect(claimed.map((c) => c.recordId).sort()).toEqual(['m1', 'm2']);
        const got = await store.getSendApiMessage('a', 'm1');
        expect(got).toMatchObject({ id: 'm1', token: 'a' });
        expect(got!.row!.id).toBe(first.outboxId);
        expect(got!.row!.state).toBe('sending');
        expect(Number.isNaN(Date.parse(got!.createdAt))).toBe(false);
      });

      it("another token's message, and an unknown id, are not found", async () => {
        const { store } = await fresh();
        await store.enqueueSendRequests([request('m1', 'a', null)]);
        expect(await store.getSendApiMessage('b', 'm1')).toBeNull();
        expect(await store.getSendApiMessage('a', 'nope')).toBeNull();
      });

      it('an Idempotency-Key is once-only per token: same body replays, another body conflicts, across handles', async () => {
        const { store, again } = await fresh();
        const [created] = await store.enqueueSendRequests([request('m1', 'a', 'k')]);
        expect(created).toMatchObject({ kind: 'created', id: 'm1' });
        const outboxId = created!.kind === 'created' ? created!.outboxId : -1;
        const other = await again();
        // the same key within one batch and from another handle (a restart, a replica)
        expect(
          await other.enqueueSendRequests([
            request('m2', 'a', 'k'),
            request('m3', 'a', 'k', 'h2'),
            request('m4', 'b', 'k'),
            request('m5', 'b', 'k'),
          ]),
        ).toEqual([
          { kind: 'replay', id: 'm1', outboxId },
          { kind: 'conflict', id: 'm1' },
          expect.objectContaining({ kind: 'created', id: 'm4' }),
          expect.objectContaining({ kind: 'replay', id: 'm4' }),
        ]);
        // nothing more was written for the replays and the conflict
        const rows = await store.list({ limit: 100 });
        expect(rows.map((r) => r.recordId).sort()).toEqual(['m1', 'm4']);
        expect(await store.getSendApiMessage('a', 'm2')).toBeNull();
      });

      it('concurrent batches with the same key create exactly one row', async () => {
        const { store, again } = await fresh();
        const handles = [store, await again(), await again()];
        const results = await Promise.all(
          handles.map((h, i) => h.enqueueSendRequests([request(`m${i}`, 'a', 'same')])),
        );
        const kinds = results.flat().map((o) => o.kind);
        expect(kinds.filter((k) => k === 'created')).toHaveLength(1);
        expect(kinds.filter((k) => k === 'replay')).toHaveLength(2);
        expect(await store.list({ rule: 'api:a', limit: 10 })).toHaveLength(1);
      });

      it('a failing request rolls its whole batch back: no partial rows', async () => {
        const { store } = await fresh();
        await expect(
          store.enqueueSendRequests([
            request('m1', 'a', 'k1'),
            { ...request('m2', 'a', null), row: { ...row('api:a', 'm2'), recordCreatedDate: 'nope' } },
          ]),
        ).rejects.toThrow();
        expect(await store.list({ limit: 10 })).toHaveLength(0);
        expect(await store.getSendApiMessage('a', 'm1')).toBeNull();
        // the key was not used up
        expect((await store.enqueueSendRequests([request('m3', 'a', 'k1')]))[0]!.kind).toBe('created');
      });
    });
  });
}
