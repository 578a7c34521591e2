// Stream mode: Change Data Capture over CometD (the emulator's, driven by jsforce's faye client),
// with the stored replay id, and reconciliation when that id has aged out.
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

describe('mode: stream', () => {
  it('notifies from change events between polls, resumes from the stored replay id, reconciles an expired one', async () => {
    stack = await startStack({
      emulator: { cometdConnectTimeoutMs: 2000 },
      streaming: { api: 'cometd' },
      // polls only at start-up and hourly: anything delivered in between came through the stream
      rule: { mode: 'stream', schedule: '0 0 * * * *', where: "LeadSource = 'Web'" },
    });
    const { emu } = stack;
    proc = stack.run();
    await proc.waitForLine(isMsg('subscribed to change events'), 20_000);

    const web = emu.org.insert('Lead', leadFields(1)).Id;
    const phone = emu.org.insert('Lead', leadFields(2, { LeadSource: 'Phone Inquiry' })).Id;
    await waitFor(() => stack!.smtp.messages.length >= 1, 15_000, 'the streamed lead');
    await proc.waitForLine(isMsg('change events'), 5000);
    expect(stack.smtp.messages[0]!.messageId).toBe(`<new-leads.${web}@example.com>`);

    // restart: resumes after the stored replay id; a lead created while it was down arrives once
    proc.kill('SIGTERM');
    expect(await proc.exit).toBe(0);
    const whileDown = emu.org.insert('Lead', leadFields(3)).Id;
    proc = stack.run();
    await waitFor(() => stack!.smtp.messages.length >= 2, 20_000, 'the lead created while down');

    // down again, and the retained events age out: the stored replay id is no longer valid
    proc.kill('SIGTERM');
    expect(await proc.exit).toBe(0);
    const aged = emu.org.insert('Lead', leadFields(4)).Id;
    emu.control.ageOutEvents();
    proc = stack.run();
    await proc.waitForLine(isMsg('stored replay id is no longer retained'), 20_000);
    await proc.waitForLine(isMsg('subscribed to change events'), 20_000);
    const afterwards = emu.org.insert('Lead', leadFields(5)).Id;
    await waitFor(() => stack!.smtp.messages.length >= 4, 20_000, 'four leads');
    await new Promise((r) => setTimeout(r, 1500));

    const ids = stack.smtp.messages.map((m) => /\.([A-Za-z0-9]{18})@/.exec(m.messageId ?? '')?.[1]);
    expect(ids.sort()).toEqual([web, whileDown, aged, afterwards].sort());
    expect(ids).not.toContain(phone);
  }, 90_000);
});
