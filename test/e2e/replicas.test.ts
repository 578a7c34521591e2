// Several `lead-notifier run` processes on one PostgreSQL (a schema per test) against the org
// emulator and a capture SMTP server: one poller per rule by lease, shared dispatch, replicas
// killed, paused past their lease and cut off from the database, and still every lead is
// delivered once (or listed as uncertain), with the Salesforce API calls of one replica.
import { hostname } from 'node:os';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { waitFor } from '../helpers/process.ts';
import type { CliProcess } from '../helpers/process.ts';
import { dropSchemas, randomSchema, startTestPostgres, withSchema } from '../helpers/postgres.ts';
import type { TestPostgres } from '../helpers/postgres.ts';
import { leadFields, startStack } from '../helpers/stack.ts';
import type { Stack, StackOptions } from '../helpers/stack.ts';

let server: TestPostgres;
const prefix = randomSchema('t_e2e_rep');
const stacks: Stack[] = [];
const procs: CliProcess[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const LEASE_TTL_MS = 3000;

beforeAll(async () => {
  server = await startTestPostgres();
}, 120_000);

afterEach(async () => {
  for (const p of procs.splice(0)) {
    p.proc.kill('SIGCONT');
    p.kill('SIGKILL');
    await p.exit;
  }
  for (const s of stacks.splice(0)) await s.close();
});

afterAll(async () => {
  await dropSchemas(server.url, prefix);
  await server.stop();
});

async function clusterStack(schema: string, smtp?: StackOptions['smtp']): Promise<Stack> {
  const s = await startStack({
    ...(smtp ? { smtp } : {}),
    config: {
      store: withSchema(server.url, `${prefix}_${schema}`),
      cluster: { leaseTtl: `${LEASE_TTL_MS}ms` },
    },
  });
  stacks.push(s);
  return s;
}

function run(s: Stack): CliProcess {
  const p = s.run();
  procs.push(p);
  return p;
}

async function started(p: CliProcess): Promise<void> {
  try {
    await p.waitForLine((_l, j) => j?.msg === 'lead-notifier started', 45_000);
  } catch (e) {
    // what the silent process waits on, for the failure message
    const admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    const { rows } = await admin
      .query(
        `SELECT application_name, state, wait_event_type, wait_event, left(query, 100) AS q FROM pg_stat_activity WHERE application_name LIKE 'lead-notifier%'`,
      )
      .finally(() => admin.end());
    throw new Error(
      `${String(e)}\npid ${p.proc.pid}, exit ${p.proc.exitCode}\n${JSON.stringify(rows, null, 1)}`,
      { cause: e },
    );
  }
}

interface Status {
  outbox: { total: Record<string, number> };
  uncertain: Array<{ recordId: string }>;
  leases: Array<{ rule: string; leader: string | null; epoch: number }>;
  replicas: Array<{ id: string; alive: boolean }>;
  checkpoints: Array<{ rule: string; watermark: string }>;
}

async function status(s: Stack): Promise<Status> {
  const r = await s.cli(['status', '--json']);
  if (r.code !== 0) throw new Error(`status failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Status;
}

/** the process leading `new-leads` (owner ids are host:pid:uuid) */
async function leaderOf(s: Stack, among: CliProcess[]): Promise<CliProcess> {
  let found: CliProcess | undefined;
  await waitFor(
    async () => {
      const lease = (await status(s)).leases.find((l) => l.rule === 'new-leads');
      const pid = lease?.leader ? Number(lease.leader.split(':')[1]) : NaN;
      found = among.find((p) => p.proc.pid === pid && p.proc.exitCode === null);
      return found !== undefined;
    },
    20_000,
    'a leader',
    200,
  );
  return found!;
}

function deliveries(s: Stack): Map<string, number> {
  const counts = new Map<string, number>();
  for (const m of s.smtp.messages) {
    const match = /^<new-leads\.([A-Za-z0-9]{18})@/.exec(m.messageId ?? '');
    if (match) counts.set(match[1]!, (counts.get(match[1]!) ?? 0) + 1);
  }
  return counts;
}

async function settled(s: Stack, n: number): Promise<boolean> {
  const t = (await status(s)).outbox.total;
  return t.sent! + t.unknown! + t.dead! === n && t.pending === 0 && t.sending === 0 && t.failed === 0;
}

/** terminate every database connection of these processes (their application_name carries the pid) */
async function terminateBackends(admin: pg.Client, pids: number[]): Promise<number> {
  const names = pids.map((pid) => `lead-notifier ${hostname()}:${pid}:%`);
  const { rows } = await admin.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE ANY($1::text[])`,
    [names],
  );
  return rows.length;
}

describe('several replicas on one PostgreSQL', () => {
  it('3 replicas, 2,000 leads over 60 s, one killed twice and one paused past its lease: none missed, none twice, one replica’s API calls', async () => {
    const cluster = await clusterStack('three');
    const single = await clusterStack('one');
    const replicas = [run(cluster), run(cluster), run(cluster)];
    const alone = run(single);
    await Promise.all([...replicas, alone].map(started));

    const ids: string[] = [];
    const baseIds: string[] = [];
    // the same workload into both orgs: 40 batches of 50, one every 1.5 s
    const creator = (async () => {
      for (let b = 0; b < 40; b++) {
        for (let i = 0; i < 50; i++) {
          ids.push(cluster.emu.org.insert('Lead', leadFields(b * 50 + i)).Id);
          baseIds.push(single.emu.org.insert('Lead', leadFields(b * 50 + i)).Id);
        }
        await sleep(1500);
      }
    })();

    const events: string[] = [];
    await sleep(8000);
    // kill -9 the leader: its rule moves to another replica within about one lease ttl
    const first = await leaderOf(cluster, replicas);
    let killedIndex = replicas.indexOf(first);
    first.kill('SIGKILL');
    await first.exit;
    const killedAt = Date.now();
    await leaderOf(cluster, replicas);
    events.push(`leader killed; rule led again after ${Date.now() - killedAt} ms`);
    replicas[killedIndex] = run(cluster);
    await started(replicas[killedIndex]!);

    await sleep(6000);
    // SIGSTOP the leader past its lease, then let it go on: it must not move the cursor
    const paused = await leaderOf(cluster, replicas);
    const linesBefore = paused.lines.length;
    const pausedIndex = replicas.indexOf(paused);
    paused.proc.kill('SIGSTOP');
    await sleep(LEASE_TTL_MS * 2.5);
    const during = await status(cluster);
    const takenOver = during.leases.find((l) => l.rule === 'new-leads');
    expect(takenOver?.leader).not.toBeNull();
    expect(Number(takenOver!.leader!.split(':')[1])).not.toBe(paused.proc.pid);
    paused.proc.kill('SIGCONT');
    // on waking it finds its lease gone and stops leading; whatever it had in flight was fenced
    await waitFor(
      () => paused.lines.slice(linesBefore).some((l) => l.includes('"msg":"no longer leading rule"')),
      10_000,
      'the resumed replica to give the rule up',
    );
    const woke = paused.lines.slice(linesBefore);
    const after = woke.slice(
      0,
      woke.findIndex((l) => l.includes('"msg":"no longer leading rule"')),
    );
    events.push(
      `paused leader resumed: gave the rule up; ${after.filter((l) => l.includes('write was refused')).length} late writes refused, ${after.filter((l) => l.includes('"msg":"poll"')).length} polls completed by it before it gave up`,
    );

    await sleep(10_000);
    // the same replica as before killed a second time
    killedIndex = replicas.indexOf(replicas[killedIndex]!);
    replicas[killedIndex]!.kill('SIGKILL');
    await replicas[killedIndex]!.exit;
    replicas[killedIndex] = run(cluster);
    await started(replicas[killedIndex]!);

    await creator;
    expect(ids).toHaveLength(2000);
    await waitFor(() => settled(cluster, 2000), 90_000, 'the cluster to settle', 1000);
    await waitFor(() => settled(single, 2000), 60_000, 'the single replica to settle', 1000);

    // nothing exited on its own: the SIGKILLed ones were replaced, the others still run
    for (const p of replicas) expect(p.proc.exitCode).toBeNull();
    expect(paused.proc.exitCode).toBeNull();
    expect(replicas[pausedIndex]).toBe(paused);

    const st = await status(cluster);
    const uncertain = new Set(st.uncertain.map((u) => u.recordId));
    expect(uncertain.size).toBe(st.outbox.total.unknown);
    expect(st.outbox.total.dead).toBe(0);
    const got = deliveries(cluster);
    expect([...got].filter(([, n]) => n > 1)).toEqual([]);
    expect(ids.filter((id) => !got.has(id) && !uncertain.has(id))).toEqual([]);
    const base = deliveries(single);
    expect(baseIds.filter((id) => base.get(id) !== 1)).toEqual([]);
    // one poller per rule: the three together spend about what one replica spends
    const clusterCalls = cluster.emu.control.limits().used;
    const singleCalls = single.emu.control.limits().used;
    expect(clusterCalls).toBeLessThanOrEqual(singleCalls * 1.2);
    // the SIGKILLed leader's rows were recovered by its heartbeat's expiry, not left sending
    expect(st.outbox.total.sending).toBe(0);
    console.log(
      [
        `replicas e2e: API calls 3 replicas ${clusterCalls}, 1 replica ${singleCalls} (ratio ${(clusterCalls / singleCalls).toFixed(2)})`,
        `delivered ${got.size}, uncertain ${uncertain.size} (of which ${[...uncertain].filter((id) => got.has(id)).length} had in fact arrived), duplicated 0`,
        ...events,
      ].join('\n'),
    );
    for (const p of [...replicas, alone]) p.kill('SIGTERM');
    for (const p of [...replicas, alone]) expect(await p.exit).toBe(0);
  }, 240_000);

  it('every database connection terminated five times, and once while a transaction waits on a row lock: no exit, none lost or twice', async () => {
    // each message takes the relay 300 ms: a backlog builds and rows are in `sending` at any moment
    // (as on a loaded machine)
    const cluster = await clusterStack('term', { onData: async () => void (await sleep(300)) });
    const replicas = [run(cluster), run(cluster)];
    await Promise.all(replicas.map(started));
    const pids = replicas.map((p) => p.proc.pid!);
    const admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    const schema = `${prefix}_term`;
    try {
      const ids: string[] = [];
      const creator = (async () => {
        for (let b = 0; b < 20; b++) {
          for (let i = 0; i < 25; i++) ids.push(cluster.emu.org.insert('Lead', leadFields(b * 25 + i)).Id);
          await sleep(500);
        }
      })();
      let terminated = 0;
      for (let k = 0; k < 5; k++) {
        await sleep(1200);
        terminated += await terminateBackends(admin, pids);
      }
      // hold the rule's checkpoint row so the leader's enqueue transaction waits on it, then cut
      // that connection while the transaction is open
      // (its own session: pg_stat_activity is a snapshot fixed for the length of a transaction)
      const locker = new pg.Client({ connectionString: server.url });
      await locker.connect();
      await locker.query('BEGIN');
      await locker.query(`SELECT * FROM "${schema}".checkpoints WHERE rule = 'new-leads' FOR UPDATE`);
      await waitFor(
        async () => {
          const { rows } = await admin.query(
            `SELECT 1 FROM pg_stat_activity WHERE application_name LIKE ANY($1::text[]) AND wait_event_type = 'Lock'`,
            [pids.map((pid) => `lead-notifier ${hostname()}:${pid}:%`)],
          );
          return rows.length > 0;
        },
        15_000,
        'a daemon transaction waiting on the row lock',
        100,
      ).catch(async (e: unknown) => {
        const act = await admin.query(
          `SELECT application_name, state, wait_event_type, wait_event, left(query, 80) AS q FROM pg_stat_activity WHERE application_name LIKE 'lead-notifier%'`,
        );
        const procState = replicas
          .map((p) => `pid ${p.proc.pid} exit ${p.proc.exitCode} stderr: ${p.stderr.slice(-5).join(' | ')}`)
          .join('\n');
        console.log(`${procState}\n${JSON.stringify(act.rows, null, 1)}`);
        throw new Error(
          `${String(e)}\n${replicas
            .map((p) =>
              p.lines
                .filter((l) => !l.includes('"msg":"sent"'))
                .slice(-15)
                .join('\n'),
            )
            .join('\n---\n')}`,
        );
      });
      // held for four lease ttls (as a slow lock holder on a loaded machine does): both replicas'
      // lease statements wait on it, and each must go on heartbeating all the same, or the other
      // takes it for dead and reports its in-flight rows unknown
      await sleep(LEASE_TTL_MS * 4);
      const { rows: killedInTx } = await admin.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE ANY($1::text[]) AND wait_event_type = 'Lock'`,
        [pids.map((pid) => `lead-notifier ${hostname()}:${pid}:%`)],
      );
      await sleep(500);
      await locker.query('COMMIT');
      await locker.end();
      await creator;
      await waitFor(() => settled(cluster, 500), 60_000, 'every lead delivered', 1000);
      for (const p of replicas) {
        expect(p.proc.exitCode).toBeNull();
        expect(p.stderr.join('\n')).not.toMatch(/Connection terminated|Unhandled/);
      }
      const st = await status(cluster);
      const got = deliveries(cluster);
      expect([...got].filter(([, n]) => n > 1)).toEqual([]);
      // no process died, so nothing was left uncertain by recovery
      expect(st.outbox.total.unknown).toBe(0);
      expect(ids.filter((id) => got.get(id) !== 1)).toEqual([]);
      expect(terminated).toBeGreaterThan(0);
      expect(killedInTx.length).toBeGreaterThan(0);
      console.log(
        `replicas e2e: ${terminated} connections terminated over 5 rounds + ${killedInTx.length} inside a waiting transaction; ${got.size} delivered once, 0 lost, 0 twice, 0 exits`,
      );
      for (const p of replicas) p.kill('SIGTERM');
      for (const p of replicas) expect(await p.exit).toBe(0);
    } finally {
      await admin.end();
    }
  }, 120_000);
});
