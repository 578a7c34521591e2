// Operator tools against a real store and a running (or stopped) daemon: status, outbox list /
// retry / resolve, send-test, and the clear errors for a missing store.
import { afterEach, describe, expect, it } from 'vitest';
import { openStore } from '../../src/store/index.ts';
import { runCli, waitFor } from '../helpers/process.ts';
import type { CliProcess } from '../helpers/process.ts';
import { smtpError } from '../helpers/smtp-server.ts';
import { leadFields, startStack, teardown } from '../helpers/stack.ts';
import type { Stack } from '../helpers/stack.ts';

let stack: Stack | undefined;
let proc: CliProcess | undefined;

afterEach(async () => {
  await teardown(proc, stack);
  proc = undefined;
  stack = undefined;
});

interface ListedRow {
  id: number;
  recordId: string;
  state: string;
  lastError: string | null;
}

describe('operating the outbox', () => {
  it('status, outbox list/retry for a dead row, resolve for an uncertain one', async () => {
    stack = await startStack();
    const { emu, smtp } = stack;
    // the server refuses one recipient permanently at first
    let refuse = true;
    smtp.setHandler('onRcpt', (address) => {
      if (refuse && address === 'sales@example.com') throw smtpError(550, 'mailbox unavailable');
    });
    proc = stack.run();
    await proc.waitForLine((_l, j) => j?.msg === 'poll');
    const lead = emu.org.insert('Lead', leadFields(1)).Id;
    const statusOf = async () =>
      JSON.parse((await stack!.cli(['status', '--json'])).stdout) as {
        outbox: { total: Record<string, number> };
      };
    await waitFor(async () => (await statusOf()).outbox.total.dead === 1, 20_000, 'a dead row');

    const listed = await stack.cli(['outbox', 'list', '--state', 'dead', '--json']);
    expect(listed.code).toBe(0);
    const rows = JSON.parse(listed.stdout) as ListedRow[];
    expect(rows).toHaveLength(1);
    expect(rows[0]!.recordId).toBe(lead);
    expect(rows[0]!.lastError).toMatch(/550/);

    const table = await stack.cli(['status']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/new-leads\s+0\s+0\s+0\s+0\s+1\s+0/);

    // fixed on the server side: retry it while the daemon runs
    refuse = false;
    const retried = await stack.cli(['outbox', 'retry', String(rows[0]!.id)]);
    expect(retried.code).toBe(0);
    await waitFor(() => smtp.messages.length === 1, 20_000, 'the retried row to be sent');
    expect((await statusOf()).outbox.total.sent).toBe(1);

    // retrying a sent row is refused with a reason
    const again = await stack.cli(['outbox', 'retry', String(rows[0]!.id)]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/only dead, failed and unknown rows can be retried/);

    proc.kill('SIGTERM');
    expect(await proc.exit).toBe(0);

    // an uncertain row, as a crash mid-send leaves it
    const store = await openStore(`sqlite:${stack.dir}/notifier.db`);
    const sent = (await store.get(rows[0]!.id))!;
    const orphan = {
      rule: 'new-leads',
      object: 'Lead',
      recordId: '00Q000000000001AAA',
      recordCreatedDate: sent.recordCreatedDate,
      message: sent.message,
      state: 'pending' as const,
    };
    await store.commitBatch('new-leads', [orphan], {
      floor: '2026-01-01T00:00:00Z',
      watermark: '2026-01-01T00:00:00Z',
    });
    await store.claimDue({ owner: 'crashed', limit: 10, leaseMs: 60_000 });
    const [uncertainId] = await store.recoverAbandoned({ all: true });
    await store.close();
    const unknownRows = JSON.parse(
      (await stack.cli(['outbox', 'list', '--state', 'uncertain', '--json'])).stdout,
    ) as ListedRow[];
    expect(unknownRows.map((r) => r.id)).toEqual([uncertainId]);
    const st = JSON.parse((await stack.cli(['status', '--json'])).stdout) as {
      uncertain: Array<{ id: number }>;
    };
    expect(st.uncertain.map((u) => u.id)).toEqual([uncertainId]);
    const resolved = await stack.cli([
      'outbox',
      'resolve',
      String(uncertainId),
      '--as',
      'sent',
      '--note',
      'found in the inbox',
    ]);
    expect(resolved.code).toBe(0);
    const after = JSON.parse(
      (await stack.cli(['outbox', 'list', '--state', 'sent', '--json'])).stdout,
    ) as ListedRow[];
    expect(after.map((r) => r.id).sort()).toEqual([rows[0]!.id, uncertainId].sort());
    const bad = await stack.cli(['outbox', 'resolve', String(uncertainId), '--as', 'maybe']);
    expect(bad.code).toBe(2);
  }, 60_000);

  it('send-test renders a sample record and sends it once to --to only, outside the ledger', async () => {
    stack = await startStack();
    const r = await stack.cli(['send-test', '--rule', 'new-leads', '--to', 'me@example.com']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/sent test of rule new-leads/);
    await waitFor(() => stack!.smtp.messages.length === 1, 10_000, 'the test email');
    const m = stack.smtp.messages[0]!;
    expect(m.envelope.rcptTo).toEqual(['me@example.com']);
    expect(m.parsed.subject).toMatch(/^\[test\] New lead: /);
    expect(m.messageId).toMatch(/^<send-test\./);
    // and against a real record
    const id = stack.emu.org.insert('Lead', leadFields(7)).Id;
    const real = await stack.cli([
      'send-test',
      '--rule',
      'new-leads',
      '--to',
      'me@example.com',
      '--record-id',
      id,
    ]);
    expect(real.code).toBe(0);
    await waitFor(() => stack!.smtp.messages.length === 2, 10_000, 'the second test email');
    expect(stack.smtp.messages[1]!.parsed.subject).toBe('[test] New lead: First7 Last7 (Company 7)');
    const unknownRule = await stack.cli(['send-test', '--rule', 'nope', '--to', 'me@example.com']);
    expect(unknownRule.code).toBe(2);
    expect(unknownRule.stderr).toMatch(/no rule named 'nope'/);
  }, 30_000);

  it('a missing store gets a clear error, not a stack trace', async () => {
    stack = await startStack();
    for (const args of [['status'], ['outbox', 'list']]) {
      const r = await stack.cli(args);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        /store file does not exist: .*notifier\.db \(has the daemon run with this config yet\?\)/,
      );
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it('a store held by a running daemon refuses a second daemon, naming its pid', async () => {
    stack = await startStack();
    proc = stack.run();
    await proc.waitForLine((_l, j) => j?.msg === 'poll');
    const second = await runCli(['run', '-c', stack.configPath], { timeoutMs: 15_000 });
    expect(second.code).toBe(1);
    expect(second.stdout + second.stderr).toMatch(new RegExp(`pid ${proc.proc.pid}`));
  });
});
