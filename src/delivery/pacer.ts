// The send pacer: a token bucket shared by the dispatcher's send slots that keeps the sends under
// the relay's limit (smtp.rateLimit, smtp.dailyLimit), told about throttling replies so that it
// slows down and pauses instead of spending attempts, then recovers. Its state lives in the store
// when a limit is configured (so the daily count survives restarts, and replicas on PostgreSQL
// share one bucket); otherwise in memory, where it only reacts to throttling replies.
import type pino from 'pino';
import type { SendLimits } from '../config/index.ts';
import type { PaceState, Store } from '../store/index.ts';
import { coerceError } from '../util/errors.ts';

const HOUR_MS = 3_600_000;
/** the daily window, counted in whole hours: any 24 h ending now lies within the last 25 buckets */
const WINDOW_HOURS = 25;
/** the pace falls at most to 1/8 of the limit */
const MAX_SLOWDOWN = 8;
/** a pause after a throttling reply, doubled for each one that follows soon after, up to 5 min */
const MIN_PAUSE_MS = 1_000;
const MAX_PAUSE_MS = 5 * 60_000;
/** the slowdown halves every this many send intervals without a throttling reply (at least 1 s) */
const RECOVERY_INTERVALS = 10;
const MIN_RECOVERY_HALF_LIFE_MS = 1_000;

export function emptyPaceState(now: number, limits: SendLimits): PaceState {
  return {
    tokens: limits.burst ?? 1,
    at: now,
    slowdown: 1,
    throttledAt: 0,
    pausedUntil: 0,
    strikes: 0,
    hours: [],
  };
}

function recoveryHalfLife(limits: SendLimits): number {
  const interval = limits.ratePerMs ? 1 / limits.ratePerMs : 0;
  return Math.max(MIN_RECOVERY_HALF_LIFE_MS, RECOVERY_INTERVALS * interval);
}

/** the slowdown in force at `now`: it decays back to 1 since the last throttling reply */
export function currentSlowdown(s: PaceState, limits: SendLimits, now: number): number {
  if (s.slowdown <= 1) return 1;
  const halvings = Math.max(0, now - s.throttledAt) / recoveryHalfLife(limits);
  return Math.max(1, s.slowdown / 2 ** halvings);
}

/** sends per ms at `now` (Infinity without a configured rate), 0 while paused */
export function currentRate(s: PaceState, limits: SendLimits, now: number): number {
  if (now < s.pausedUntil) return 0;
  if (!limits.ratePerMs) return Infinity;
  return limits.ratePerMs / currentSlowdown(s, limits, now);
}

/** sends counted in the rolling daily window at `now` */
export function dailyCount(s: PaceState, now: number): number {
  const first = Math.floor(now / HOUR_MS) - (WINDOW_HOURS - 1);
  let n = 0;
  for (const [hour, count] of s.hours) if (hour >= first) n += count;
  return n;
}

export interface Take {
  granted: number;
  /** when nothing (or not all) was granted: ms until the next send may go */
  waitMs: number;
}

/** Takes up to `want` sends from the bucket at `now`; a pure step over the state. */
export function takeSends(s: PaceState, limits: SendLimits, want: number, now: number): Take {
  const burst = limits.burst ?? 1;
  const rate = currentRate(s, limits, now);
  if (rate === Infinity) s.tokens = Math.max(s.tokens, want);
  else if (rate > 0) s.tokens = Math.min(burst, s.tokens + Math.max(0, now - s.at) * rate);
  s.at = now;
  if (now < s.pausedUntil) return { granted: 0, waitMs: s.pausedUntil - now };
  let granted = Math.min(want, Math.floor(s.tokens + 1e-9));
  let waitMs = 0;
  if (limits.dailyLimit !== undefined) {
    const left = limits.dailyLimit - dailyCount(s, now);
    if (left < granted) {
      granted = Math.max(0, left);
      // the oldest counted hour leaves the window at the end of its 25th hour
      const first = Math.floor(now / HOUR_MS) - (WINDOW_HOURS - 1);
      const oldest = Math.min(...s.hours.filter(([h]) => h >= first).map(([h]) => h));
      waitMs = Number.isFinite(oldest) ? (oldest + WINDOW_HOURS) * HOUR_MS - now : HOUR_MS;
    }
  }
  if (granted > 0) {
    s.tokens -= granted;
    countSends(s, granted, now);
  }
  if (granted < want && waitMs === 0) {
    waitMs = rate === Infinity || rate === 0 ? MIN_PAUSE_MS : Math.ceil((1 - (s.tokens % 1)) / rate);
  }
  return { granted, waitMs };
}

/**
 * A throttling reply: pause every send slot (doubling the pause when throttling keeps coming),
 * halve the pace (to 1/8 at most); replies to sends that were already out when the pause began
 * are the same event and change nothing.
 */
export function throttle(s: PaceState, limits: SendLimits, now: number): boolean {
  if (now < s.pausedUntil) return false;
  const interval = limits.ratePerMs ? 1 / limits.ratePerMs : 0;
  const base = Math.max(MIN_PAUSE_MS, interval);
  const lastPause = Math.min(MAX_PAUSE_MS, base * 2 ** Math.max(0, s.strikes - 1));
  // a quiet stretch of a few pauses' length since the last one starts the doubling afresh
  if (now - s.pausedUntil > 4 * lastPause) s.strikes = 0;
  s.strikes++;
  const pause = Math.min(MAX_PAUSE_MS, base * 2 ** (s.strikes - 1));
  s.slowdown = Math.min(MAX_SLOWDOWN, currentSlowdown(s, limits, now) * 2);
  s.throttledAt = now;
  s.pausedUntil = now + pause;
  s.tokens = 0;
  s.at = now;
  return true;
}

function countSends(s: PaceState, n: number, now: number): void {
  const hour = Math.floor(now / HOUR_MS);
  const first = hour - (WINDOW_HOURS - 1);
  s.hours = s.hours.filter(([h]) => h >= first);
  const cur = s.hours.find(([h]) => h === hour);
  if (cur) cur[1] = Math.max(0, cur[1] + n);
  else if (n > 0) s.hours.push([hour, n]);
}

/** What metrics and status show. */
export interface PaceSnapshot {
  /** sends per second now: 0 while paused, Infinity when unlimited */
  messagesPerSecond: number;
  /** the configured limit (smtp.rateLimit) in sends per second, or null */
  limitPerSecond: number | null;
  slowdown: number;
  paused: boolean;
  dailyCount: number;
  dailyLimit: number | null;
  throttled: number;
}

export interface PacerOptions {
  limits: SendLimits;
  /** keeps the state when a limit is configured; without one the state is in memory */
  store?: Pick<Store, 'updateSendPace'>;
  /** the state's row: one per relay */
  key?: string;
  logger: pino.Logger;
}

export class Pacer {
  readonly limits: SendLimits;
  private readonly store: Pick<Store, 'updateSendPace'> | undefined;
  private readonly key: string;
  private readonly log: pino.Logger;
  private readonly limited: boolean;
  /** the state as last seen (in memory it is the state) */
  private state: PaceState;
  /** difference between the store's clock and ours, from its last answer */
  private skew = 0;
  private notBefore = 0;
  private throttledCount = 0;

  constructor(o: PacerOptions) {
    this.limits = o.limits;
    this.limited = o.limits.ratePerMs !== undefined || o.limits.dailyLimit !== undefined;
    this.store = this.limited ? o.store : undefined;
    this.key = o.key ?? 'smtp';
    this.log = o.logger;
    this.state = emptyPaceState(Date.now(), o.limits);
  }

  /**
   * How many of `free` send slots may be claimed now, judged from the state as last seen (no I/O):
   * exact for one process; with replicas sharing the bucket, take() has the final word.
   */
  allowance(free: number): number {
    const now = Date.now() + this.skew;
    if (free <= 0 || now < this.notBefore) return 0;
    // no limit configured and not paused: nothing to compute on the hot path
    if (!this.limited && now >= this.state.pausedUntil) return free;
    const probe = structuredClone(this.state);
    return takeSends(probe, this.limits, free, now).granted;
  }

  /** ms until allowance() may be above 0 again */
  delayMs(): number {
    const probe = structuredClone(this.state);
    const now = Date.now() + this.skew;
    const t = takeSends(probe, this.limits, 1, now);
    return Math.max(t.granted > 0 ? 0 : t.waitMs, this.notBefore - now, 0);
  }

  /** Takes `want` sends from the bucket; returns how many may go now. */
  async take(want: number): Promise<number> {
    if (want <= 0) return 0;
    const t = await this.update((s, now) => takeSends(s, this.limits, want, now));
    if (t.granted < want) this.notBefore = Date.now() + this.skew + t.waitMs;
    return t.granted;
  }

  /** The relay answered a send with a throttling reply. Never throws. */
  async throttled(): Promise<void> {
    this.throttledCount++;
    try {
      const reacted = await this.update((s, now) => throttle(s, this.limits, now));
      if (reacted) {
        const now = Date.now() + this.skew;
        this.notBefore = this.state.pausedUntil;
        this.log.warn(
          {
            pauseMs: this.state.pausedUntil - now,
            pacePerMinute: paceText(currentRate(this.state, this.limits, this.state.pausedUntil)),
            limit: this.limits.describe,
          },
          'SMTP relay throttled us: sending paused, pace reduced; rows stay pending without spending attempts',
        );
      }
    } catch (err) {
      this.log.error({ err: coerceError(err) }, 'could not record the throttling reply');
    }
  }

  snapshot(): PaceSnapshot {
    const now = Date.now() + this.skew;
    const rate = currentRate(this.state, this.limits, now);
    return {
      messagesPerSecond: rate * 1000,
      limitPerSecond: this.limits.limitPerMs ? this.limits.limitPerMs * 1000 : null,
      slowdown: currentSlowdown(this.state, this.limits, now),
      paused: now < this.state.pausedUntil,
      dailyCount: dailyCount(this.state, now),
      dailyLimit: this.limits.dailyLimit ?? null,
      throttled: this.throttledCount,
    };
  }

  private async update<T>(step: (s: PaceState, now: number) => T): Promise<T> {
    if (!this.store) {
      const out = step(this.state, Date.now());
      return out;
    }
    const { result, state, now } = await this.store.updateSendPace(this.key, (stored, now) => {
      const s = stored ?? emptyPaceState(now, this.limits);
      return { state: s, result: step(s, now) };
    });
    this.skew = now - Date.now();
    this.state = state;
    return result;
  }
}

function paceText(perMs: number): string {
  if (perMs === Infinity) return 'unlimited';
  return (perMs * 60_000).toFixed(1);
}
