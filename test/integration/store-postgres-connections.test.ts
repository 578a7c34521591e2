// Connections that die under the PostgreSQL store: what a failover, a restart, a pooler or an idle
// reaper does, reproduced with pg_terminate_backend against the real server. The process must
// not crash (vitest fails a run on an unhandled 'error' event), safe operations carry on after a
// reconnect, and what cannot be repeated fails as a retryable error naming the store.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { openStore } from '../../src/store/index.ts';
import { PostgresStore } from '../../src/store/postgres.ts';
import { OutboxCache, readiness } from '../../src/http/readiness.ts';
import type { AppView } from '../../src/http/readiness.ts';
import {
  dropSchemas,
  randomSchema,
  startTestPostgres,
  withSchema,
  type TestPostgres,
} from '../helpers/postgres.ts';
import { row } from './store-contract.ts';

let server: TestPostgres;
const prefix = randomSchema('t_pgconn');
const T0 = '2024-05-01T10:00:00.000Z';
const cp = (watermark: string) => ({ floor: '2024-05-01T00:00:00.000Z', watermark });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  server = await startTestPostgres();
}, 120_000);

afterAll(async () => {
  await dropSchemas(server.url, prefix);
  await server.stop();
});

async function admin(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: server.url });
  await c.connect();
  return c;
}

/** terminate every backend of `app` (application_name); returns how many */
async function terminate(c: pg.Client, app: string): Promise<number> {
  const { rows } = await c.query(
    `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()`,
    [app],
  );
  return rows.length;
}

async function until(what: string, ok: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('postgres store: connections that die', () => {
  it('sets application_name and keeps working after its idle connections are terminated', async () => {
    const app = `ln-test-idle-${prefix}`;
    const store = await openStore(withSchema(server.url, `${prefix}_idle`), {
      postgres: { applicationName: app },
    });
    const c = await admin();
    try {
      await Promise.all([store.counts(), store.listCheckpoints(), store.nextDueAt()]);
      for (let i = 0; i < 5; i++) {
        expect(await terminate(c, app)).toBeGreaterThan(0);
        await sleep(50);
        await store.commitBatch('r', [row('r', `rec${i}`)], cp(T0));
        expect((await store.counts()).total.pending).toBe(i + 1);
      }
    } finally {
      await c.end();
      await store.close();
    }
  });

  it('terminations under concurrent load (transactions, statements) never escape as an unhandled error', async () => {
    const app = `ln-test-load-${prefix}`;
    const store = await openStore(withSchema(server.url, `${prefix}_load`), {
      postgres: { applicationName: app, max: 4 },
    });
    const c = await admin();
    let stop = false;
    let done = 0;
    const failures: string[] = [];
    // more workers than connections, so released clients go straight to a waiting transaction:
    // the window in which pg-pool hands over a client that has no 'error' listener yet
    const worker = async () => {
      while (!stop) {
        try {
          await store.commitBatch('r', [], cp(T0));
          await store.acquireLease('r', 'A', 3000);
          await store.counts();
          done++;
        } catch (e) {
          failures.push(String((e as { code?: string }).code));
        }
      }
    };
    try {
      const workers = Array.from({ length: 6 }, worker);
      for (let k = 0; k < 30; k++) {
        await sleep(100);
        await terminate(c, app);
      }
      const before = done;
      await sleep(1500);
      stop = true;
      await Promise.all(workers);
      // it carried on after the last termination, and anything that failed failed as retryable
      expect(done).toBeGreaterThan(before);
      expect(failures.filter((f) => f !== 'ESTOREUNAVAILABLE')).toEqual([]);
      // the dead connections were noticed, and the next success cleared the store's problem
      expect(store.kind === 'postgres' && (store as PostgresStore).lastConnectionError).toBeTruthy();
      expect(store.connectionProblem?.()).toBeNull();
    } finally {
      stop = true;
      await c.end();
      await store.close();
    }
  }, 30_000);

  it('a transaction whose connection is terminated while it waits on a row lock is retried, once', async () => {
    const app = `ln-test-tx-${prefix}`;
    const schema = `${prefix}_tx`;
    const store = await openStore(withSchema(server.url, schema), { postgres: { applicationName: app } });
    await store.commitBatch('r', [], cp(T0));
    const locker = await admin();
    const c = await admin();
    try {
      // another session holds the checkpoint row, so the store's commit waits inside its transaction
      await locker.query('BEGIN');
      await locker.query(`SELECT * FROM "${schema}".checkpoints WHERE rule = 'r' FOR UPDATE`);
      const T1 = '2024-05-01T11:00:00.000Z';
      const commit = store.commitBatch('r', [row('r', 'a'), row('r', 'b')], cp(T1));
      await until('the store transaction to wait on the lock', async () => {
        const { rows } = await c.query(
          `SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`,
          [app],
        );
        return rows.length > 0;
      });
      expect(await terminate(c, app)).toBeGreaterThan(0);
      // the retry waits on the same lock until the other session lets go
      await sleep(400);
      await locker.query('COMMIT');
      expect(await commit).toEqual({ inserted: 2 });
      expect(await store.getCheckpoint('r')).toMatchObject({ watermark: T1 });
      expect(await store.existingRecordIds('r', ['a', 'b'])).toEqual(new Set(['a', 'b']));
      expect((await store.counts()).total.pending).toBe(2);
    } finally {
      await locker.end().catch(() => undefined);
      await c.end();
      await store.close();
    }
  });

  it('outcomes written while their connection is terminated mid-transaction land once', async () => {
    const app = `ln-test-out-${prefix}`;
    const schema = `${prefix}_out`;
    const store = await openStore(withSchema(server.url, schema), { postgres: { applicationName: app } });
    await store.commitBatch('r', [row('r', 'a')], cp(T0));
    const [claimed] = await store.claimDue({ owner: 'o', limit: 1, leaseMs: 60_000 });
    const locker = await admin();
    const c = await admin();
    try {
      await locker.query('BEGIN');
      await locker.query(`SELECT * FROM "${schema}".outbox WHERE id = $1 FOR UPDATE`, [claimed!.id]);
      const write = store.recordOutcomes('o', [
        {
          id: claimed!.id,
          kind: 'sent',
          result: { response: '250 ok', accepted: ['x@example.com'], rejected: [] },
        },
      ]);
      await until('the outcome write to wait on the lock', async () => {
        const { rows } = await c.query(
          `SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`,
          [app],
        );
        return rows.length > 0;
      });
      await terminate(c, app);
      await locker.query('COMMIT');
      await write;
      expect(await store.get(claimed!.id)).toMatchObject({ state: 'sent', attempts: 1 });
    } finally {
      await locker.end().catch(() => undefined);
      await c.end();
      await store.close();
    }
  });

  it('an unreachable database: a claim fails at once, a read after its retries, both retryable and naming the store without secrets', async () => {
    const store = new PostgresStore('postgres://notifier:sekret-pw@127.0.0.1:9/app', {
      connectTimeoutMs: 500,
    });
    try {
      const claim = await store.claimDue({ owner: 'o', limit: 1, leaseMs: 1000 }).catch((e: unknown) => e);
      expect(claim).toMatchObject({ code: 'ESTOREUNAVAILABLE', retryable: true });
      expect((claim as Error).message).toContain('postgres://127.0.0.1:9/app');
      expect((claim as Error).message).not.toContain('sekret');
      const started = Date.now();
      const read = await store.counts().catch((e: unknown) => e);
      expect(read).toMatchObject({ code: 'ESTOREUNAVAILABLE' });
      // retried with backoff (0.2 + 0.8 + 3.2 s) before giving up
      expect(Date.now() - started).toBeGreaterThan(4000);
      // readiness: 503 with the store named as the reason
      const view = {
        store,
        config: {},
        dispatcher: undefined,
        salesforce: { state: 'connected', lastError: null },
        smtp: { state: 'ok', lastError: null, checkedAt: null },
        apiUsage: null,
        rules: new Map(),
        isStopping: false,
      } as unknown as AppView;
      // the store knows it is gone, so the probe does not wait out another round of retries
      expect(store.connectionProblem()?.reason).toMatch(/unreachable: connect ECONNREFUSED/);
      const probed = Date.now();
      const report = readiness(view, await new OutboxCache(view).get(), false);
      expect(Date.now() - probed).toBeLessThan(2000);
      expect(report.ready).toBe(false);
      expect(report.components.store).toMatchObject({ ok: false, state: 'unavailable' });
      expect(report.reason).toMatch(
        /^store: PostgreSQL store postgres:\/\/127\.0\.0\.1:9\/app unreachable: /,
      );
      expect(report.reason).not.toContain('sekret');
      // a probe whose count runs into the reconnect backoff is answered after the cache's wait,
      // 503 for the store, instead of after the 4 s of retries
      const fresh = new PostgresStore('postgres://notifier:sekret-pw@127.0.0.1:9/app', {
        connectTimeoutMs: 500,
      });
      const freshView = { ...view, store: fresh } as unknown as AppView;
      try {
        const asked = Date.now();
        const late = readiness(freshView, await new OutboxCache(freshView, 2000, 300).get(), false);
        expect(Date.now() - asked).toBeLessThan(3000);
        expect(late.components.store).toMatchObject({ ok: false });
        expect(late.reason).toMatch(/^store: /);
      } finally {
        await fresh.close();
      }
    } finally {
      await store.close();
    }
  }, 20_000);
});
