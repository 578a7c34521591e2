// on: updated end to end: the daemon (`lead-notifier run` as a child process) against the org
// emulator over HTTP and a real SMTP server. 500 Leads are changed 3,000 times in random field
// patterns, in rounds; after each round the test waits until the daemon has read it, so the
// notifications it must send follow from the sequence of changes alone, computed here without
// the daemon's code: "became Working - Contacted" and "a Web lead got a new owner".
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/process.ts';
import type { CliProcess } from '../helpers/process.ts';
import { rawHeader } from '../helpers/smtp-server.ts';
import { leadFields, startStack, teardown } from '../helpers/stack.ts';
import type { Stack } from '../helpers/stack.ts';

let stack: Stack | undefined;
let proc: CliProcess | undefined;

afterEach(async () => {
  await teardown(proc, stack);
  proc = undefined;
  stack = undefined;
});

const LEADS = 500;
const ROUNDS = 6;
const PER_ROUND = 500;
const STATUSES = [
  'Open - Not Contacted',
  'Working - Contacted',
  'Closed - Converted',
  'Closed - Not Converted',
];
const SOURCES = ['Web', 'Phone Inquiry', 'Partner Referral'];

/** a small seeded PRNG (mulberry32), so a failure can be replayed */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const UPDATE_RULES = [
  {
    name: 'lead-qualified',
    object: 'Lead',
    on: 'updated',
    schedule: '* * * * * *',
    startFrom: 'now',
    where: "Status = 'Working - Contacted'",
    select: ['LastName', 'Status'],
    email: {
      from: 'Lead desk <leads@example.com>',
      to: 'sales@example.com',
      subject: 'Working: {{LastName}}',
      text: '{{LastName}} was {{previous.Status}}',
    },
  },
  {
    name: 'owner-changed',
    object: 'Lead',
    on: 'updated',
    schedule: '* * * * * *',
    startFrom: 'now',
    where: "LeadSource = 'Web'",
    changed: ['OwnerId'],
    select: ['LastName', 'Owner.Email'],
    email: {
      from: 'Lead desk <leads@example.com>',
      to: '{{Owner.Email}}',
      subject: 'Yours now: {{LastName}}',
      text: 'from {{previous.OwnerId}}',
    },
  },
];

interface LeadState {
  Status: string;
  LeadSource: string;
  OwnerId: string;
}

interface Expected {
  /** `<rule>.<Id>.<version>` of every notification that must be sent */
  sent: Set<string>;
  /** ... and of those that must dead-letter (the new owner is a queue without an email) */
  dead: Set<string>;
}

const version = (ms: number) =>
  new Date(ms)
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z')
    .replace(/[-:]/g, '');

/** read straight from the daemon's SQLite file (WAL: readers never block it), faster than `status` */
function query<T>(s: Stack, sql: string): T[] {
  const db = new DatabaseSync(join(s.dir, 'notifier.db'), { readOnly: true });
  try {
    return db.prepare(sql).all() as T[];
  } catch {
    return []; // not created yet
  } finally {
    db.close();
  }
}

/**
 * Until the daemon has judged every touched Lead at its current version: both rules' stored
 * states carry the Lead's SystemModstamp (the watermark alone is not enough: a poll that reads
 * one side of `where` before a round and the other after may move it past a change that the next
 * poll, or sweep, judges).
 */
async function judged(s: Stack, versions: Map<string, number>): Promise<void> {
  const ids = [...versions.keys()];
  await waitFor(
    () => {
      const rows = query<{ rule: string; record_id: string; system_modstamp: string }>(
        s,
        `SELECT rule, record_id, system_modstamp FROM match_state WHERE record_id IN (${ids.map((id) => `'${id}'`).join(', ')})`,
      );
      const seen = new Set(rows.map((r) => `${r.rule}|${r.record_id}|${Date.parse(r.system_modstamp)}`));
      return UPDATE_RULES.every((r) => ids.every((id) => seen.has(`${r.name}|${id}|${versions.get(id)}`)));
    },
    60_000,
    'the daemon to judge every change of the round',
    100,
  );
}

/**
 * Creates the Leads (their first sight: created, unmodified, so a baseline), then applies
 * ROUNDS rounds of PER_ROUND random changes, each round in a new second and read by the daemon
 * before the next; `between` runs while the daemon works on a round (kill -9 goes there).
 */
async function workload(
  s: Stack,
  seed: number,
  between?: (round: number) => Promise<void>,
): Promise<Expected> {
  const { emu } = s;
  const rand = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const users = emu.control.insert(
    'User',
    [1, 2, 3].map((i) => ({
      Username: `rep${i}@example.com`,
      Email: `rep${i}@example.com`,
      LastName: `Rep${i}`,
    })),
  );
  const [mailQueue, silentQueue] = emu.control.insert('Group', [
    { Name: 'Web queue', Type: 'Queue', Email: 'webqueue@example.com' },
    { Name: 'Silent queue', Type: 'Queue' },
  ]);
  const owners = [...users, mailQueue!, silentQueue!];
  const state = new Map<string, LeadState>();
  const ids = emu.control.insert(
    'Lead',
    Array.from({ length: LEADS }, (_, i) =>
      leadFields(i, { LeadSource: pick(SOURCES), OwnerId: pick(users), Status: STATUSES[0] }),
    ),
  );
  for (const id of ids) {
    const v = emu.org.get('Lead', id)!.values;
    state.set(id, { Status: String(v.Status), LeadSource: String(v.LeadSource), OwnerId: String(v.OwnerId) });
  }
  let last = emu.org.get('Lead', ids[0]!)!.values.SystemModstamp as number;
  // the first sight of every Lead (a watermark may already be past their second: the floor)
  await waitFor(
    () => {
      const rows = query<{ rule: string; n: number }>(
        s,
        'SELECT rule, count(*) AS n FROM match_state GROUP BY rule',
      );
      return UPDATE_RULES.every((r) => rows.find((x) => x.rule === r.name)?.n === LEADS);
    },
    30_000,
    'the first sight of every Lead',
    100,
  );

  const expected: Expected = { sent: new Set(), dead: new Set() };
  for (let round = 1; round <= ROUNDS; round++) {
    // a new second: every change of this round has a SystemModstamp later than the last one
    while (Math.floor(Date.now() / 1000) * 1000 <= last) await new Promise((r) => setTimeout(r, 50));
    const touched = new Set<string>();
    for (let k = 0; k < PER_ROUND; k++) {
      const id = pick(ids);
      const p = rand();
      // random field patterns: some qualify, some do not, some leads change twice in a round
      const fields: Record<string, unknown> = {};
      if (p < 0.35) fields.Status = pick(STATUSES);
      else if (p < 0.6) fields.OwnerId = pick(owners);
      else if (p < 0.7) fields.LeadSource = pick(SOURCES);
      else if (p < 0.8) Object.assign(fields, { Status: pick(STATUSES), OwnerId: pick(owners) });
      else if (p < 0.9) fields.Rating = pick(['Hot', 'Warm', 'Cold']);
      if (Object.keys(fields).length === 0)
        emu.control.touch('Lead', [id]); // a system change
      else emu.control.update('Lead', [{ Id: id, ...fields }]);
      touched.add(id);
    }
    // what the daemon will see: each touched Lead's state after the round, against before it
    const versions = new Map<string, number>();
    for (const id of touched) {
      const v = emu.org.get('Lead', id)!.values;
      const now: LeadState = {
        Status: String(v.Status),
        LeadSource: String(v.LeadSource),
        OwnerId: String(v.OwnerId),
      };
      const before = state.get(id)!;
      const stamp = v.SystemModstamp as number;
      versions.set(id, stamp);
      last = Math.max(last, stamp);
      const key = (rule: string) => `${rule}.${id}.${version(stamp)}`;
      const working = (x: LeadState) => x.Status === 'Working - Contacted';
      if (working(now) && !working(before)) expected.sent.add(key('lead-qualified'));
      if (now.LeadSource === 'Web' && now.OwnerId !== before.OwnerId) {
        (now.OwnerId === silentQueue ? expected.dead : expected.sent).add(key('owner-changed'));
      }
      state.set(id, now);
    }
    if (between) await between(round);
    await judged(s, versions);
  }
  return expected;
}

function keyOf(messageId: string | undefined): string | null {
  const m = /^<(.+)@example\.com>$/.exec(messageId ?? '');
  return m ? m[1]! : null;
}

interface StatusJson {
  outbox: { total: Record<string, number>; byRule: Record<string, Record<string, number>> };
  uncertain: Array<{ rule: string; recordId: string }>;
}

async function status(s: Stack): Promise<StatusJson> {
  return JSON.parse((await s.cli(['status', '--json'])).stdout) as StatusJson;
}

/** nothing left to send, and the capture server has parsed every message the daemon saw accepted */
async function settled(s: Stack): Promise<boolean> {
  const [row] = query<{ open: number; sent: number }>(
    s,
    "SELECT sum(state IN ('pending', 'sending', 'failed')) AS open, sum(state = 'sent') AS sent FROM outbox",
  );
  return row !== undefined && row.open === 0 && s.smtp.messages.length >= row.sent;
}

describe('on: updated, end to end', () => {
  it('500 Leads changed 3,000 times: exactly the expected notifications, threaded to the created one', async () => {
    stack = await startStack({ extraRules: UPDATE_RULES });
    proc = stack.run();
    await proc.waitForLine((_l, j) => j?.msg === 'poll', 20_000);
    const expected = await workload(stack, 10);
    await waitFor(() => settled(stack!), 60_000, 'the outbox to drain', 100);

    const delivered = new Map<string, number>();
    for (const m of stack.smtp.messages) {
      const k = keyOf(m.messageId);
      if (k && !k.startsWith('new-leads.')) delivered.set(k, (delivered.get(k) ?? 0) + 1);
    }
    expect([...delivered].filter(([, n]) => n > 1)).toEqual([]);
    expect(new Set(delivered.keys())).toEqual(expected.sent);
    const st = await status(stack);
    expect(st.outbox.byRule['owner-changed']?.dead ?? 0).toBe(expected.dead.size);
    expect(st.outbox.total.dead ?? 0).toBe(expected.dead.size);
    expect(stack.smtp.messages.filter((m) => keyOf(m.messageId)?.startsWith('new-leads.'))).toHaveLength(
      LEADS,
    );
    // every update notification threads under the Lead's created notification
    const sample = stack.smtp.messages.find((m) => keyOf(m.messageId)?.startsWith('lead-qualified.'))!;
    const id = keyOf(sample.messageId)!.split('.')[1];
    expect(rawHeader(sample.raw, 'In-Reply-To')).toBe(`<new-leads.${id}@example.com>`);
    expect(rawHeader(sample.raw, 'References')).toBe(`<new-leads.${id}@example.com>`);
    console.log(
      `updates: ${expected.sent.size} notifications sent, ${expected.dead.size} dead-lettered (queue without email), from ${ROUNDS * PER_ROUND} changes`,
    );
  }, 120_000);

  it('the same with kill -9 ten times: none missed, none twice, uncertain rows reported', async () => {
    // without the created rule: 500 fewer emails to wait for, the update path is what is tested
    stack = await startStack({ rule: { enabled: false }, extraRules: UPDATE_RULES });
    proc = stack.run();
    await proc.waitForLine((_l, j) => j?.msg === 'poll', 20_000);
    let kills = 0;
    const kill = async () => {
      await new Promise((r) => setTimeout(r, 100 + Math.random() * 500));
      proc!.kill('SIGKILL');
      await proc!.exit;
      kills++;
      proc = stack!.run();
    };
    // ten kills over six rounds: twice in most rounds, at random moments of the daemon's work
    const expected = await workload(stack, 20, async (round) => {
      await kill();
      if (round <= 4) await kill();
    });
    expect(kills).toBe(10);
    await waitFor(() => settled(stack!), 60_000, 'the outbox to drain', 100);
    proc.kill('SIGTERM');
    expect(await proc.exit).toBe(0);

    const st = await status(stack);
    const uncertain = new Set(st.uncertain.map((u) => `${u.rule}.${u.recordId}`));
    const delivered = new Map<string, number>();
    for (const m of stack.smtp.messages) {
      const k = keyOf(m.messageId);
      if (k && !k.startsWith('new-leads.')) delivered.set(k, (delivered.get(k) ?? 0) + 1);
    }
    expect([...delivered].filter(([, n]) => n > 1)).toEqual([]);
    const unexpected = [...delivered.keys()].filter((k) => !expected.sent.has(k));
    expect(unexpected).toEqual([]);
    const missing = [...expected.sent].filter((k) => !delivered.has(k) && !uncertain.has(k));
    expect(missing).toEqual([]);
    expect(st.outbox.byRule['owner-changed']?.dead ?? 0).toBe(expected.dead.size);
    console.log(
      `updates, kill -9 x10: ${delivered.size} of ${expected.sent.size} delivered, ${uncertain.size} uncertain reported`,
    );
  }, 180_000);
});
