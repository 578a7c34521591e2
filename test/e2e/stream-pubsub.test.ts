// Stream mode over the Pub/Sub API, end to end: the real CLI against the emulator's gRPC server,
// killed with SIGKILL mid-stream and restarted (none missed, none twice), a dropped stream
// counted in lead_notifier_stream_reconnects_total.
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

const openStreams = (s: Stack) => s.emu.pubsub.subscriptions().filter((x) => x.open).length;

describe('mode: stream over the Pub/Sub API', () => {
  it('survives kill -9 and a dropped stream: every lead notified exactly once', async () => {
    stack = await startStack({
      emulator: { pubsub: { keepaliveMs: 1000 } },
      // polls only at start-up and hourly: anything delivered in between came through the stream
      rule: { mode: 'stream', schedule: '0 0 * * * *', where: "LeadSource = 'Web'" },
      config: { http: { host: '127.0.0.1', port: 0 } },
    });
    const { emu } = stack;
    proc = stack.run();
    await proc.waitForLine(isMsg('subscribed to change events'), 20_000);
    await waitFor(() => openStreams(stack!) === 1, 10_000, 'the subscription');

    const web = emu.org.insert('Lead', leadFields(1)).Id;
    const phone = emu.org.insert('Lead', leadFields(2, { LeadSource: 'Phone Inquiry' })).Id;
    await waitFor(() => stack!.smtp.messages.length >= 1, 15_000, 'the streamed lead');

    // kill -9 right after more events: whatever was committed is not redone, the rest arrives
    const burst = Array.from({ length: 20 }, (_, i) => emu.org.insert('Lead', leadFields(10 + i)).Id);
    await waitFor(() => stack!.smtp.messages.length >= 3, 15_000, 'some of the burst');
    proc.kill('SIGKILL');
    await proc.exit;
    const whileDown = emu.org.insert('Lead', leadFields(3)).Id;
    proc = stack.run();
    await proc.waitForLine(isMsg('lead-notifier started'), 20_000);
    // rows caught mid-send by the kill are `unknown`, not re-sent (the outbox's at-most-once rule)
    const midSend = proc.lines
      .map((l) => JSON.parse(l) as { msg?: string; count?: number })
      .find((j) => j.msg?.startsWith('rows were mid-send'));
    const unknown = midSend?.count ?? 0;
    await waitFor(
      () => stack!.smtp.messages.length >= 22 - unknown,
      30_000,
      'the burst and the lead created while down',
    );

    // the server drops the stream: reconnect (counted), reconcile, and keep streaming
    await waitFor(() => openStreams(stack!) === 1, 10_000, 'the new subscription');
    emu.pubsub.endStreams();
    await proc.waitForLine(isMsg('Pub/Sub stream closed'), 10_000);
    await waitFor(() => openStreams(stack!) === 1, 10_000, 'resubscribed');
    const afterDrop = emu.org.insert('Lead', leadFields(4)).Id;
    await waitFor(() => stack!.smtp.messages.length >= 23 - unknown, 15_000, 'the lead after the drop');
    await new Promise((r) => setTimeout(r, 1000));
    const httpLine = proc.lines
      .map((l) => JSON.parse(l) as { msg?: string; url?: string })
      .find((j) => j.msg === 'http listening');
    const metrics = await (await fetch(`${httpLine!.url}/metrics`)).text();
    expect(metrics).toMatch(/^lead_notifier_stream_reconnects_total\{api="pubsub",reason="ended"\} 1$/m);
    proc.kill('SIGTERM');
    expect(await proc.exit).toBe(0);

    // the ledger: exactly one row per Web lead (none missed, none twice); mails never twice
    const expected = [web, ...burst, whileDown, afterDrop].sort();
    const listed = await stack.cli(['outbox', 'list', '--json', '--limit', '500']);
    const rows = JSON.parse(listed.stdout) as Array<{ recordId: string; state: string }>;
    expect(rows.map((r) => r.recordId).sort()).toEqual(expected);
    expect(rows.filter((r) => r.state === 'unknown').length).toBe(unknown);
    const mailed = stack.smtp.messages.map((m) => /\.([A-Za-z0-9]{18})@/.exec(m.messageId ?? '')?.[1]);
    expect(new Set(mailed).size).toBe(mailed.length);
    // every row that is not `unknown` was mailed; an `unknown` one may have reached SMTP before the kill
    const settled = rows.filter((r) => r.state !== 'unknown').map((r) => r.recordId);
    expect(settled.every((id) => mailed.includes(id))).toBe(true);
    expect(mailed.every((id) => expected.includes(id!))).toBe(true);
    expect(mailed).not.toContain(phone);
  }, 90_000);
});
