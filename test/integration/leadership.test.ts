// Poll leadership over the real PostgreSQL store: spread across replicas, moved when a leader
// dies, given up before expiry when renewals fail, and a paused leader's late write refused.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { Leadership } from '../../src/cluster/leadership.ts';
import type { LeaseStore } from '../../src/cluster/leadership.ts';
import { openStore } from '../../src/store/index.ts';
import type { Store } from '../../src/store/index.ts';
import {
  dropSchemas,
  randomSchema,
  startTestPostgres,
  withSchema,
  type TestPostgres,
} from '../helpers/postgres.ts';

let server: TestPostgres;
const prefix = randomSchema('t_lead');
const logger = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const RULES = ['a', 'b', 'c', 'd'];
const stores: Store[] = [];
const leaders: Leadership[] = [];

beforeAll(async () => {
  server = await startTestPostgres();
}, 120_000);

afterAll(async () => {
  for (const t of thaws) t();
  for (const l of leaders) await l.stop();
  for (const s of stores) await s.close();
  await dropSchemas(server.url, prefix);
  await server.stop();
});

async function store(db: string): Promise<Store> {
  const s = await openStore(withSchema(server.url, `${prefix}_${db}`));
  stores.push(s);
  return s;
}

function replica(s: LeaseStore, id: string, ttlMs: number, rules = RULES, events: string[] = []): Leadership {
  const l = new Leadership({
    store: s,
    replica: { id, host: 'test', pid: 1 },
    rules,
    ttlMs,
    logger,
    onGain: (rule, lease) => events.push(`gain ${rule} ${lease.epoch}`),
    onLose: (rule, reason) => events.push(`lose ${rule}: ${reason}`),
  });
  leaders.push(l);
  return l;
}

const led = (l: Leadership) => RULES.filter((r) => l.isLeader(r));

const thaws: Array<() => void> = [];

/**
 * The store as a frozen (SIGSTOPped) or dead replica sees it: once frozen, every call hangs, so
 * nothing is renewed and nothing handed over. afterAll thaws them (the calls then fail).
 */
function freezable(s: LeaseStore): LeaseStore & { freeze(): void } {
  let gate: Promise<never> | undefined;
  const call =
    <A extends unknown[], R>(f: (...a: A) => Promise<R>) =>
    (...a: A): Promise<R> =>
      gate ?? f(...a);
  return {
    acquireLease: call(s.acquireLease.bind(s)),
    releaseLease: call(s.releaseLease.bind(s)),
    heartbeat: call(s.heartbeat.bind(s)),
    removeReplica: call(s.removeReplica.bind(s)),
    freeze() {
      gate = new Promise<never>((_, reject) => thaws.push(() => reject(new Error('thawed'))));
      gate.catch(() => undefined);
    },
  };
}

describe('leadership', () => {
  it('spreads rules across replicas, and moves a dead leader’s rules within about one ttl', async () => {
    const ttl = 1500;
    const [s1, s2, s3] = [await store('spread'), await store('spread'), await store('spread')];
    const a = replica(s1, 'A', ttl);
    await a.start();
    expect(led(a)).toEqual(RULES); // alone: every rule
    const b = replica(s2, 'B', ttl);
    const frozenC = freezable(s3);
    const c = replica(frozenC, 'C', ttl);
    await b.start();
    await c.start();
    // a few rounds (ttl/3 each) later every replica leads its share, and no rule has two leaders
    await sleep(ttl * 1.5);
    const shares = [led(a), led(b), led(c)];
    expect(shares.map((x) => x.length).sort()).toEqual([1, 1, 2]);
    expect(shares.flat().sort()).toEqual(RULES);
    // C dies without a word (no release): its rules go to A and B once lease and heartbeat expire
    frozenC.freeze();
    const orphaned = shares[2]!;
    const died = Date.now();
    while (!orphaned.every((r) => a.isLeader(r) || b.isLeader(r))) {
      expect(Date.now() - died).toBeLessThan(ttl * 3);
      await sleep(50);
    }
    expect(Date.now() - died).toBeGreaterThan(ttl * 0.5); // not before its lease could expire
    expect([...led(a), ...led(b)].sort()).toEqual(RULES);
  });

  it('a leader that cannot renew stops leading before its lease expires', async () => {
    const ttl = 1200;
    const s = await store('renew');
    let failing = false;
    const flaky: LeaseStore = {
      acquireLease: (...args) =>
        failing ? Promise.reject(new Error('store unavailable')) : s.acquireLease(...args),
      releaseLease: (...args) => s.releaseLease(...args),
      heartbeat: (...args) =>
        failing ? Promise.reject(new Error('store unavailable')) : s.heartbeat(...args),
      removeReplica: (...args) => s.removeReplica(...args),
    };
    const a = replica(flaky, 'A', ttl, ['a']);
    await a.start();
    expect(a.isLeader('a')).toBe(true);
    failing = true;
    while (a.isLeader('a')) await sleep(10);
    const stoppedAt = Date.now();
    const [lease] = await s.listLeases();
    // still within the lease the store granted: nobody else can be leading yet
    expect(Date.parse(lease!.expiresAt)).toBeGreaterThan(stoppedAt);
    expect(a.renewFailures).toBeGreaterThan(0);
    expect(() => a.fence('a')).toThrow(/no longer current/);
    failing = false;
    await a.tick();
    expect(a.isLeader('a')).toBe(true);
  });

  it('judges other replicas dead only after one ttl of unbroken heartbeats: not at start, nor right after a pause or an outage', async () => {
    const ttl = 600;
    const s = await store('judge');
    let clock = Date.now();
    let failing = false;
    const flaky: LeaseStore = {
      acquireLease: (...a) => s.acquireLease(...a),
      releaseLease: (...a) => s.releaseLease(...a),
      heartbeat: (...a) => (failing ? Promise.reject(new Error('store unavailable')) : s.heartbeat(...a)),
      removeReplica: (...a) => s.removeReplica(...a),
    };
    const a = new Leadership({
      store: flaky,
      replica: { id: 'J', host: 'test', pid: 1 },
      rules: ['r'],
      ttlMs: ttl,
      logger,
      now: () => clock,
    });
    leaders.push(a);
    await a.start();
    expect(a.canJudgeOthers()).toBe(false); // just up: the others may not have heartbeated yet
    for (let t = 0; t < 4; t++) {
      clock += ttl / 3;
      await a.tick();
    }
    expect(a.canJudgeOthers()).toBe(true);
    // a pause longer than the ttl (the clock jumps, no heartbeat in between)
    clock += ttl * 3;
    await a.tick();
    expect(a.canJudgeOthers()).toBe(false);
    for (let t = 0; t < 4; t++) {
      clock += ttl / 3;
      await a.tick();
    }
    expect(a.canJudgeOthers()).toBe(true);
    // the store unreachable for one heartbeat: a fresh ttl after it returns
    failing = true;
    clock += ttl / 3;
    await a.tick();
    expect(a.canJudgeOthers()).toBe(false);
    failing = false;
    clock += ttl / 3;
    await a.tick();
    expect(a.canJudgeOthers()).toBe(false);
    clock += ttl;
    await a.tick();
    expect(a.canJudgeOthers()).toBe(true);
    await a.stop();
  });

  it('a leader paused past its lease: its late checkpoint write is refused, the row keeps the new leader’s cursor', async () => {
    const ttl = 1000;
    const [s1, s2] = [await store('pause'), await store('pause')];
    let clockA = Date.now();
    const frozenA = freezable(s1);
    const a = new Leadership({
      store: frozenA,
      replica: { id: 'A', host: 'test', pid: 1 },
      rules: ['r'],
      ttlMs: ttl,
      logger,
      now: () => clockA,
    });
    leaders.push(a);
    await a.start();
    const fenceA = a.fence('r');
    await s1.commitBatch(
      'r',
      [],
      { floor: '2024-05-01T00:00:00.000Z', watermark: '2024-05-01T10:00:00.000Z' },
      undefined,
      fenceA,
    );
    // A freezes (SIGSTOP): its timers stop, its local clock stands still for it
    frozenA.freeze();
    const b = replica(s2, 'B', ttl, ['r']);
    await sleep(ttl + 200);
    await b.start();
    while (!b.isLeader('r')) await sleep(20);
    await s2.commitBatch(
      'r',
      [],
      { floor: '2024-05-01T00:00:00.000Z', watermark: '2024-05-01T12:00:00.000Z' },
      undefined,
      b.fence('r'),
    );
    // A wakes with the fence it took before the pause, as a poll in flight would
    await expect(
      s1.commitBatch(
        'r',
        [],
        { floor: '2024-05-01T00:00:00.000Z', watermark: '2024-05-01T11:00:00.000Z' },
        undefined,
        fenceA,
      ),
    ).rejects.toMatchObject({ code: 'ELEASELOST' });
    expect(await s1.getCheckpoint('r')).toMatchObject({ watermark: '2024-05-01T12:00:00.000Z' });
    // and its own view of the clock, once it moves, says it is no leader
    clockA += ttl * 2;
    expect(a.isLeader('r')).toBe(false);
  });
});
