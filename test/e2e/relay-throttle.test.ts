// The scenario from outside, as a new user would run it: the real `run` daemon against the
// org emulator and a relay that answers `421 4.7.0 Rate limit exceeded` past its limit (time-scaled
// from 30 in 20 s to 15 in 3 s), a backlog of Leads and `delivery.maxAttempts: 3`. Before pacing,
// that setup dead-lettered most of the backlog; now every row is delivered once, none dead, the
// throttling shows in the metrics, and /readyz stays ready while paced.
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor, type CliProcess } from '../helpers/process.ts';
import { smtpError } from '../helpers/smtp-server.ts';
import { leadFields, startStack, teardown, type Stack } from '../helpers/stack.ts';

let stack: Stack | undefined;
let proc: CliProcess | undefined;
afterEach(async () => {
  await teardown(proc, stack);
  proc = stack = undefined;
});

const LIMIT = 15;
const WINDOW_MS = 3000;
const LEADS = 24;

function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line ? Number(line.split(' ').at(-1)) : NaN;
}

async function scenario(smtpExtra: Record<string, unknown>) {
  const accepted: number[] = [];
  let throttled = 0;
  stack = await startStack({
    smtp: {
      onMail: () => {
        const now = Date.now();
        while (accepted.length && accepted[0]! <= now - WINDOW_MS) accepted.shift();
        if (accepted.length >= LIMIT) {
          throttled++;
          throw smtpError(421, '4.7.0 Rate limit exceeded');
        }
        accepted.push(now);
      },
    },
    config: {
      http: { enabled: true, host: '127.0.0.1', port: 0 },
      delivery: { maxAttempts: 3, backoffBaseMs: 200, backoffMaxMs: 2000, circuitRetryMs: 1000 },
    },
  });
  const smtp = stack.config.smtp as Record<string, unknown>;
  // the backlog exists before the first poll: startFrom is an instant before it
  stack.writeConfig({
    ...stack.config,
    smtp: { ...smtp, pool: { maxConnections: 5 }, ...smtpExtra },
    rules: [
      {
        ...(stack.config.rules as Record<string, unknown>[])[0],
        startFrom: new Date(Date.now() - 60_000).toISOString(),
      },
    ],
  });
  for (let i = 0; i < LEADS; i++) stack.emu.org.insert('Lead', leadFields(i));
  proc = stack.run();
  const line = await proc.waitForLine((_l, j) => j?.msg === 'http listening', 20_000);
  const url = (JSON.parse(line) as { url: string }).url;
  const readyWhilePaced: number[] = [];
  const started = Date.now();
  await waitFor(
    async () => {
      readyWhilePaced.push((await fetch(`${url}/readyz`)).status);
      return stack!.smtp.messages.length >= LEADS;
    },
    40_000,
    'the backlog to drain',
  );
  const seconds = (Date.now() - started) / 1000;
  const metrics = await (await fetch(`${url}/metrics`)).text();
  return { throttled: () => throttled, metrics, seconds, readyWhilePaced };
}

describe('a rate-limited relay, from outside', () => {
  it('maxAttempts 3, no rateLimit configured: all delivered once, none dead, throttling counted', async () => {
    const r = await scenario({});
    const ids = stack!.smtp.messages.map((m) => m.messageId);
    expect(new Set(ids).size).toBe(LEADS);
    expect(ids).toHaveLength(LEADS);
    expect(metric(r.metrics, 'lead_notifier_notifications_sent_total{rule="new-leads"}')).toBe(LEADS);
    expect(metric(r.metrics, 'lead_notifier_notifications_dead_total{rule="new-leads"}')).toBe(0);
    expect(r.throttled()).toBeGreaterThan(0);
    expect(metric(r.metrics, 'lead_notifier_smtp_throttled_total{rule="new-leads"}')).toBe(r.throttled());
    expect(metric(r.metrics, 'lead_notifier_notifications_dead_total{rule="new-leads"}')).toBe(0);
    // once it had been ready, pacing never made it unready
    const firstReady = r.readyWhilePaced.indexOf(200);
    expect(firstReady).toBeGreaterThanOrEqual(0);
    expect(r.readyWhilePaced.slice(firstReady).every((s) => s === 200)).toBe(true);
    console.log(
      `unpaced: ${LEADS} delivered, 0 dead, ${r.throttled()} throttled replies, ${r.seconds.toFixed(1)} s`,
    );
  });

  it('with rateLimit at the relay limit: paced by it (the limit and the pace in the metrics), none dead', async () => {
    const r = await scenario({ rateLimit: { messages: LIMIT, per: `${WINDOW_MS / 1000}s` } });
    expect(stack!.smtp.messages).toHaveLength(LEADS);
    expect(metric(r.metrics, 'lead_notifier_notifications_sent_total{rule="new-leads"}')).toBe(LEADS);
    expect(metric(r.metrics, 'lead_notifier_notifications_dead_total{rule="new-leads"}')).toBe(0);
    const perSecond = metric(r.metrics, 'lead_notifier_smtp_rate_limit_messages_per_second');
    expect(perSecond).toBeCloseTo((LIMIT / WINDOW_MS) * 1000, 5);
    expect(metric(r.metrics, 'lead_notifier_smtp_pace_messages_per_second')).toBeGreaterThan(0);
    console.log(
      `paced: ${LEADS} delivered, 0 dead, ${r.throttled()} throttled replies, ${r.seconds.toFixed(1)} s ` +
        `(limit ${LIMIT} per ${WINDOW_MS / 1000} s)`,
    );
  });
});
