// on: updated in stream mode: CDC UPDATE events (changedFields, enriched by the same queries)
// through the same ledger; an expired replay id during updates is reconciled by poll, nothing lost.
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/process.ts';
import type { CliProcess } from '../helpers/process.ts';
import { leadFields, startStack, teardown } from '../helpers/stack.ts';
import type { Stack } from '../helpers/stack.ts';

let stack: Stack | undefined;
let proc: CliProcess | undefined;

afterEach(async () => {
  await teardown(proc, stack);
  proc = undefined;
  stack = undefined;
});

const isMsg = (text: string) => (_l: string, j: Record<string, unknown> | null) =>
  typeof j?.msg === 'string' && j.msg.includes(text);

function states(s: Stack): number {
  const db = new DatabaseSync(join(s.dir, 'notifier.db'), { readOnly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM match_state').get() as { n: number }).n;
  } catch {
    return 0;
  } finally {
    db.close();
  }
}

const version = (ms: number) =>
  new Date(ms)
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z')
    .replace(/[-:]/g, '');

describe('on: updated, mode: stream', () => {
  it('notifies qualifying UPDATE events, and reconciles the changes made while its replay id expired', async () => {
    stack = await startStack({
      emulator: { cometdConnectTimeoutMs: 2000 },
      // the CometD Streaming API: its CDC JSON payload, replay ids and expiry are what this covers
      streaming: { api: 'cometd' },
      // polls only at start-up and hourly: what arrives in between came through the stream
      rule: {
        name: 'working',
        on: 'updated',
        mode: 'stream',
        schedule: '0 0 * * * *',
        where: "Status = 'Working - Contacted'",
        select: ['LastName', 'Status'],
        email: {
          from: 'Lead desk <leads@example.com>',
          to: 'sales@example.com',
          subject: '{{LastName}} is being worked',
          text: 'changed: {{#each changedFields}}{{this}} {{/each}}',
        },
      },
    });
    const { emu } = stack;
    proc = stack.run();
    await proc.waitForLine(isMsg('subscribed to change events'), 20_000);
    // created after the rule started: their CREATE events are their first sight (baselines)
    const ids = emu.control.insert(
      'Lead',
      Array.from({ length: 30 }, (_, i) => leadFields(i)),
    );
    await waitFor(() => states(stack!) === 30, 15_000, 'the first sight of every Lead', 100);
    const expected = new Set<string>();
    const qualify = (some: string[]) => {
      for (const id of some) {
        const r = emu.org.update('Lead', id, { Status: 'Working - Contacted' });
        expected.add(`working.${id}.${version(r.values.SystemModstamp as number)}`);
      }
    };
    await new Promise((r) => setTimeout(r, 1000)); // a new second for the changes
    qualify(ids.slice(0, 10));
    for (const id of ids.slice(10, 15)) emu.org.update('Lead', id, { Rating: 'Hot' }); // not qualifying
    await waitFor(() => stack!.smtp.messages.length >= 10, 15_000, 'the streamed updates');
    expect(stack.smtp.messages[0]!.parsed.text?.trim()).toBe('changed: Status');

    // down; meanwhile Leads qualify and the retained events age out
    proc.kill('SIGTERM');
    expect(await proc.exit).toBe(0);
    qualify(ids.slice(10, 20));
    emu.control.ageOutEvents();
    proc = stack.run();
    await proc.waitForLine(isMsg('stored replay id is no longer retained'), 20_000);
    await proc.waitForLine(isMsg('subscribed to change events'), 20_000);
    await new Promise((r) => setTimeout(r, 1000));
    qualify(ids.slice(20, 25));
    await waitFor(() => stack!.smtp.messages.length >= 25, 20_000, 'all qualifying changes');
    await new Promise((r) => setTimeout(r, 1500));

    const got = stack.smtp.messages.map((m) => /^<(.+)@example\.com>$/.exec(m.messageId ?? '')?.[1]);
    expect(got).toHaveLength(25);
    expect(new Set(got)).toEqual(expected);
  }, 90_000);
});
