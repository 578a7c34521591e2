import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { sendLimits, smtpSchema } from '../../src/config/index.ts';
import { PACE_MARGIN } from '../../src/config/relays.ts';
import {
  currentRate,
  currentSlowdown,
  dailyCount,
  emptyPaceState,
  Pacer,
  takeSends,
  throttle,
} from '../../src/delivery/pacer.ts';
import { classifySmtpError } from '../../src/sinks/index.ts';
import { isThrottleReply } from '../../src/sinks/throttle.ts';

const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 11, 1, 12, 0, 0);

describe('send limits from the config', () => {
  it('presets expand to the documented numbers', () => {
    const m365 = sendLimits(smtpSchema.parse({ host: 'h', rateLimit: 'microsoft365' }));
    expect(m365.ratePerMs! * 60_000).toBeCloseTo(30 * PACE_MARGIN);
    expect(m365.dailyLimit).toBe(10_000);
    const gmail = sendLimits(smtpSchema.parse({ host: 'h', rateLimit: 'gmail' }));
    expect(gmail.ratePerMs).toBeUndefined();
    expect(gmail.dailyLimit).toBe(2_000);
    const ses = sendLimits(smtpSchema.parse({ host: 'h', rateLimit: 'ses-sandbox' }));
    expect(ses.ratePerMs! * 1000).toBeCloseTo(1 * PACE_MARGIN);
    expect(ses.dailyLimit).toBe(200);
  });

  it('an explicit dailyLimit wins over the preset; a custom rate has no daily cap', () => {
    expect(
      sendLimits(smtpSchema.parse({ host: 'h', rateLimit: 'microsoft365', dailyLimit: 500 })).dailyLimit,
    ).toBe(500);
    const custom = sendLimits(smtpSchema.parse({ host: 'h', rateLimit: { messages: 14, per: '1s' } }));
    expect(custom.ratePerMs! * 1000).toBeCloseTo(14 * PACE_MARGIN);
    expect(custom.dailyLimit).toBeUndefined();
  });

  it('rejects an unknown preset and a zero window', () => {
    expect(smtpSchema.safeParse({ host: 'h', rateLimit: 'office365' }).success).toBe(false);
    expect(smtpSchema.safeParse({ host: 'h', rateLimit: { messages: 3, per: '0s' } }).success).toBe(false);
  });
});

/** limits as sendLimits makes them, without its safety margin, so the numbers are round */
const exact = (messages: number, perMs: number, dailyLimit?: number) => ({
  ratePerMs: messages / perMs,
  burst: 1,
  describe: 'test',
  ...(dailyLimit !== undefined ? { dailyLimit } : {}),
});

describe('token bucket', () => {
  const limits = exact(30, 60_000);

  it('spaces sends evenly at the limit: never more than `messages` in any window of `per`', () => {
    const s = emptyPaceState(T0, limits);
    const sentAt: number[] = [];
    // ask every 100 ms for 5 slots, for 3 minutes
    for (let t = T0; t < T0 + 180_000; t += 100) {
      const got = takeSends(s, limits, 5, t).granted;
      for (let i = 0; i < got; i++) sentAt.push(t);
    }
    expect(sentAt.length).toBeGreaterThanOrEqual(89);
    expect(sentAt.length).toBeLessThanOrEqual(91);
    for (let i = 30; i < sentAt.length; i++)
      expect(sentAt[i]! - sentAt[i - 30]!).toBeGreaterThanOrEqual(60_000);
  });

  it('says how long to wait for the next send', () => {
    const s = emptyPaceState(T0, limits);
    expect(takeSends(s, limits, 3, T0)).toEqual({ granted: 1, waitMs: 2000 });
    expect(takeSends(s, limits, 1, T0 + 500)).toEqual({ granted: 0, waitMs: 1500 });
    expect(takeSends(s, limits, 1, T0 + 2000).granted).toBe(1);
  });

  it('without a rate every slot may go', () => {
    const none = sendLimits({});
    const s = emptyPaceState(T0, none);
    expect(takeSends(s, none, 5, T0).granted).toBe(5);
    expect(takeSends(s, none, 5, T0).granted).toBe(5);
  });
});

describe('daily limit', () => {
  it('stops at the limit in any rolling 24 hours and resumes as old hours leave the window', () => {
    const l = sendLimits({ dailyLimit: 100 });
    const s = emptyPaceState(T0, l);
    expect(takeSends(s, l, 60, T0).granted).toBe(60);
    expect(takeSends(s, l, 60, T0 + 10 * HOUR).granted).toBe(40);
    expect(dailyCount(s, T0 + 20 * HOUR)).toBe(100);
    const blocked = takeSends(s, l, 1, T0 + 20 * HOUR);
    expect(blocked.granted).toBe(0);
    // the first 60 were counted in T0's hour: they leave the window 25 hours after it began
    expect(T0 + 20 * HOUR + blocked.waitMs).toBe(T0 + 25 * HOUR);
    expect(dailyCount(s, T0 + 25 * HOUR)).toBe(40);
    expect(takeSends(s, l, 100, T0 + 25 * HOUR).granted).toBe(60);
  });
});

describe('throttling', () => {
  // one send a second: pauses start at 1 s, the slowdown halves every 10 intervals = 10 s
  const limits = exact(60, 60_000);

  it('pauses, halves the pace, then recovers to the limit', () => {
    const s = emptyPaceState(T0, limits);
    expect(throttle(s, limits, T0)).toBe(true);
    expect(currentRate(s, limits, T0 + 10)).toBe(0);
    expect(takeSends(s, limits, 1, T0 + 10).waitMs).toBe(990);
    // replies to sends already out when the pause began are the same event
    expect(throttle(s, limits, T0 + 500)).toBe(false);
    expect(currentSlowdown(s, limits, T0)).toBe(2);
    expect(currentSlowdown(s, limits, T0 + 5000)).toBeCloseTo(Math.SQRT2, 5);
    // the slowdown halves every 10 intervals (at least 1 s) = 10 s
    expect(currentSlowdown(s, limits, T0 + 10_000)).toBeCloseTo(1, 5);
    expect(currentRate(s, limits, T0 + 60_000) * 60_000).toBeCloseTo(60);
  });

  it('doubles the pause while throttling keeps coming, and starts afresh after a quiet stretch', () => {
    const s = emptyPaceState(T0, limits);
    throttle(s, limits, T0);
    const first = s.pausedUntil - T0;
    throttle(s, limits, s.pausedUntil + 1);
    const second = s.pausedUntil - (T0 + first + 1);
    expect(second).toBe(2 * first);
    throttle(s, limits, s.pausedUntil + 3_600_000);
    expect(s.strikes).toBe(1);
  });

  it('an in-memory pacer (no limit configured) pauses on a throttling reply', async () => {
    const p = new Pacer({ limits: sendLimits({}), logger: pino({ level: 'silent' }) });
    expect(p.allowance(5)).toBe(5);
    await p.throttled();
    expect(p.allowance(5)).toBe(0);
    expect(p.delayMs()).toBeGreaterThan(900);
    expect(p.snapshot()).toMatchObject({ paused: true, throttled: 1, messagesPerSecond: 0 });
  });
});

describe('which replies are throttling', () => {
  it.each([
    [421, '421 4.7.0 Rate limit exceeded'],
    [421, '421 4.7.0 Try again later, closing connection.'],
    [450, '450 4.7.1 Client host rejected: try again later'],
    [451, '451 4.7.500 Server busy. Please try again later'],
    [454, '454 4.7.0 Too many login attempts, please try again later.'],
    [452, '452 4.5.3 Too many recipients'],
    [451, '451 4.5.0 Message submission rate for this client has exceeded the configured limit'],
  ])('%i %s', (code, response) => {
    expect(isThrottleReply(code, response)).toBe(true);
    expect(
      classifySmtpError(
        { code: 'EENVELOPE', responseCode: code, response, command: 'MAIL FROM' },
        'before-data',
      ),
    ).toBe('throttle');
  });

  it.each([
    [421, '421 Service not available, closing transmission channel'],
    [451, '451 4.3.0 Local error in processing'],
    [550, '550 5.7.1 Relaying denied'],
    [554, '554 5.7.0 Rate limit exceeded'],
    [250, '250 4.7.0 odd but fine'],
  ])('not %i %s', (code, response) => {
    expect(isThrottleReply(code, response)).toBe(false);
    expect(classifySmtpError({ responseCode: code, response, command: 'DATA' }, 'after-data')).not.toBe(
      'throttle',
    );
  });
});
