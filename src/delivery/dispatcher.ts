// The dispatcher: claims due outbox rows with a lease, hands each to the SMTP sink, and records the
// outcome. Sends happen outside any DB transaction. Each tick is ONE store transaction (a group
// commit, Store.cycle): the outcomes that completed since the last tick, the move to `sending` of
// the rows that take the freed connections, and a reservation of the next rows ahead, so every
// connection's next message is already read and parsed when it frees up. A reserved row stays
// pending (only leased), so `sending` is only ever a row handed to a connection: after a kill at
// most one row per connection is uncertain, and reserved rows simply come back due.
import { performance } from 'node:perf_hooks';
import type pino from 'pino';
import type { DeliveryConfig } from '../config/index.ts';
import { attempt, SendError, type Channel, type FailureKind } from '../sinks/types.ts';
import type { ChannelName, OutboxMessage } from '../types.ts';
import type { Outcome, OutboxRow, Store } from '../store/index.ts';
import { parseDuration } from '../util/duration.ts';
import { codeOf, coerceError } from '../util/errors.ts';
import { failureOutcome, type RetryPolicy } from './outcomes.ts';

export { isServerUnreachable } from './outcomes.ts';
import type { Pacer } from './pacer.ts';

export interface DispatcherOptions {
  store: Store;
  /** where rows go: any Channel (sinks/types.ts), SMTP or HTTP */
  sink: Channel<OutboxMessage>;
  /** claim only this channel's rows (one dispatcher per channel in use; none = every row) */
  channel?: ChannelName;
  delivery: DeliveryConfig;
  /** send slots; the pool's maxConnections */
  concurrency: number;
  leaseMs: number;
  /** unique per process */
  owner: string;
  logger: pino.Logger;
  /** metrics hook; must not throw (it is guarded anyway) */
  onEvent?: (e: DispatchEvent) => void;
  /** rules whose rows found `sending` with an expired lease go back to pending instead of unknown */
  resendRules?: string[];
  /** idle poll interval (default 1 s) */
  pollIntervalMs?: number;
  /**
   * how often to look for rows other processes abandoned (default leaseMs); with replicas, a
   * third of the lease ttl, so a dead replica's rows are reported soon after its heartbeat ends
   */
  recoverEveryMs?: number;
  /** paces sends to the relay's limit and is told about throttling replies (delivery/pacer.ts) */
  pacer?: Pacer;
  /**
   * may rows of replicas whose heartbeat ended be taken as a dead replica's now? (false right
   * after this process was paused or cut off from the store: the others' heartbeats look old
   * then only because nobody could write one); default yes
   */
  canJudgeOthers?: () => boolean;
}

export type DispatchEvent =
  | {
      type: 'outcome';
      outcome: Outcome['kind'];
      /** the sink's classification when the send failed */
      failure?: FailureKind;
      /** the failure's code (util/errors.ts CODES) */
      code?: string;
      id: number;
      rule: string;
      recordId: string;
      /** the row's channel (absent: email) */
      channel?: ChannelName;
      attempts: number;
      durationMs: number;
      responseCode?: number;
    }
  | { type: 'circuit'; state: 'open' | 'closed'; reason?: string; channel?: ChannelName }
  | { type: 'recovered'; ids: number[] }
  | { type: 'loop-error'; error: Error }
  /** the first tick that went through after loop errors (the store takes writes again) */
  | { type: 'loop-recovered'; afterErrors: number };

const DEFAULT_POLL_MS = 1000;
const MAX_LOOP_BACKOFF_MS = 30_000;
const MIN_WAKE_MS = 5;
/** how long one outcome may wait for the other sends' (a group commit), on a saturated thread */
const GATHER_MS = 1;
const ELU_WINDOW_MS = 100;
const BUSY_ELU = 0.8;

export class Dispatcher {
  private readonly o: DispatcherOptions;
  private readonly log: pino.Logger;
  private readonly policy: RetryPolicy;
  private readonly pollMs: number;
  private running = false;
  private stopping = false;
  /** stop() has returned: nothing runs any more (the store may be closed) */
  private halted = false;
  private circuitState: 'closed' | 'open' = 'closed';
  private sending = 0;
  /** ids handed to the sink whose outcome is not yet pushed */
  private inFlightIds = new Set<number>();
  /**
   * a cycle failed in a way that may have committed (its connection died around COMMIT): the
   * next one hands back whatever that cycle leased and this process does not hold
   */
  private reclaimNext = false;
  private outcomes: Outcome[] = [];
  /** rows reserved ahead (leased, still pending in the store), oldest first */
  private ready: OutboxRow[] = [];
  private tickScheduled = false;
  private ticking = false;
  private tickAgain = false;
  private wakeTimer: NodeJS.Timeout | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private contiguousErrors = 0;
  private lastRecoverAt = 0;
  private drainWaiters: (() => void)[] = [];
  /** threadBusy()'s last reading */
  private busy = false;
  private eluMark = performance.eventLoopUtilization();
  private eluAt = 0;

  constructor(o: DispatcherOptions) {
    if (!Number.isInteger(o.concurrency) || o.concurrency < 1)
      throw new Error('concurrency must be an integer >= 1');
    this.o = o;
    this.log = o.logger;
    this.policy = {
      maxAttempts: o.delivery.maxAttempts,
      maxAge: o.delivery.maxAge,
      maxAgeMs: parseDuration(o.delivery.maxAge),
      backoffBaseMs: o.delivery.backoffBaseMs,
      backoffMaxMs: o.delivery.backoffMaxMs,
    };
    this.pollMs = o.pollIntervalMs ?? DEFAULT_POLL_MS;
  }

  /** the channel whose rows this dispatcher sends (email when it sends every row) */
  get channelName(): ChannelName {
    return this.o.channel ?? 'email';
  }

  get circuit(): 'closed' | 'open' {
    return this.circuitState;
  }

  /** sends handed to SMTP whose outcome is not yet written */
  get inFlight(): number {
    return this.sending;
  }

  start(): void {
    if (this.running || this.stopping) return;
    this.running = true;
    this.lastRecoverAt = Date.now();
    this.scheduleTick();
  }

  /** new rows were enqueued: claim now instead of at the next poll */
  kick(): void {
    if (this.running) this.scheduleTick();
  }

  /**
   * Stops claiming, then waits for in-flight sends and their outcome writes, up to timeoutMs. Rows
   * still in flight after that stay `sending` with their lease and are recovered as unknown later.
   */
  async stop(timeoutMs: number): Promise<void> {
    this.running = false;
    this.stopping = true;
    this.clearWake();
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
    if (this.isDrained()) {
      this.halted = true;
      return;
    }
    this.scheduleTick();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.drainWaiters.push(resolve)),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, timeoutMs)))),
    ]);
    clearTimeout(timer);
    this.halted = true;
    this.clearWake();
    if (!this.isDrained()) {
      this.log.warn(
        { inFlight: this.sending, unwritten: this.outcomes.length },
        'stopped with sends still in flight: their rows stay leased and will be reported unknown',
      );
    }
  }

  private isDrained(): boolean {
    return this.sending === 0 && this.outcomes.length === 0 && this.ready.length === 0 && !this.ticking;
  }

  private emit(e: DispatchEvent): void {
    if (!this.o.onEvent) return;
    try {
      this.o.onEvent(e);
    } catch (err) {
      this.log.error({ err: coerceError(err) }, 'dispatch event hook threw');
    }
  }

  private clearWake(): void {
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeTimer = undefined;
  }

  private scheduleTick(): void {
    if (this.tickScheduled || this.halted) return;
    this.tickScheduled = true;
    const run = () => {
      this.tickScheduled = false;
      void this.tick();
    };
    // On a saturated thread, a lone outcome while other sends are in flight waits GATHER_MS for
    // theirs: one commit then writes them together and starts the rows of every connection they
    // freed (a commit's WAL pages cost more than its rows: about a tenth less CPU a message,
    // bench/RESULTS.md sixth round). A thread with time to spare (nodemailer on its worker, a slow
    // relay) starts the next row at once instead: there the wait would only idle the connection.
    // A connection holds its finished row until then, so after a kill it is still at most one
    // uncertain row per connection. A failure (it may open the circuit or pause sending), several
    // outcomes, a kick or stopping go at once; setImmediate gathers the outcomes of one turn.
    const lone = this.outcomes.length === 1 && this.outcomes[0]!.kind === 'sent';
    if (lone && !this.stopping && this.sending > 0 && this.threadBusy()) setTimeout(run, GATHER_MS);
    else setImmediate(run);
  }

  /** the event loop's utilisation over the last ELU_WINDOW_MS is above BUSY_ELU */
  private threadBusy(): boolean {
    const now = Date.now();
    if (now - this.eluAt >= ELU_WINDOW_MS) {
      const mark = performance.eventLoopUtilization();
      this.busy = performance.eventLoopUtilization(mark, this.eluMark).utilization > BUSY_ELU;
      this.eluMark = mark;
      this.eluAt = now;
    }
    return this.busy;
  }

  private armWake(ms: number): void {
    this.clearWake();
    if (!this.running) return;
    this.wakeTimer = setTimeout(
      () => {
        this.wakeTimer = undefined;
        this.scheduleTick();
      },
      Math.max(0, ms),
    );
  }

  /** One step of the loop: one group commit of finished outcomes, the rows for the free slots and the next ones ahead. */
  private async tick(): Promise<void> {
    if (this.ticking) {
      this.tickAgain = true;
      return;
    }
    this.ticking = true;
    this.clearWake();
    let idleFor: number | undefined;
    try {
      if (this.running && Date.now() - this.lastRecoverAt >= (this.o.recoverEveryMs ?? this.o.leaseMs))
        await this.recoverExpired();
      const canSend = this.running && this.circuitState === 'closed';
      const slots = canSend ? this.o.concurrency - this.sending : 0;
      // pacing: start and claim only what the pacer allows now, and wake when it allows more
      const free = canSend && this.o.pacer ? this.o.pacer.allowance(slots) : slots;
      if (free < slots) idleFor = Math.max(MIN_WAKE_MS, this.o.pacer!.delayMs());
      const start = this.ready.splice(0, Math.max(0, free));
      const claim = Math.max(0, free - start.length);
      // keep one row ready per connection; none while we cannot send (those go back)
      const reserve = canSend ? Math.max(0, this.o.concurrency - this.ready.length) : 0;
      const release = canSend ? [] : this.ready.splice(0);
      const outcomes = this.outcomes;
      this.outcomes = [];
      const reclaim = this.reclaimNext;
      if (outcomes.length || start.length || claim || reserve || release.length || reclaim) {
        let res;
        try {
          res = await this.o.store.cycle({
            owner: this.o.owner,
            leaseMs: this.o.leaseMs,
            outcomes,
            start: start.map((r) => r.id),
            claim,
            reserve,
            release: release.map((r) => r.id),
            // what this process holds; a send in flight or an outcome unwritten keeps its row
            ...(reclaim
              ? {
                  reclaim: [
                    ...this.inFlightIds,
                    ...outcomes.map((o) => o.id),
                    ...start.map((r) => r.id),
                    ...this.ready.map((r) => r.id),
                  ],
                }
              : {}),
            ...(this.o.channel ? { channel: this.o.channel } : {}),
          });
        } catch (err) {
          // keep them: written on the next tick (each applies only while we hold the lease)
          this.outcomes = outcomes.concat(this.outcomes);
          // Did it commit? A dead connection leaves that unknown (an error raised by the database
          // itself rolled the transaction back). Then the rows it may have leased, and the ones it
          // was to start (sending now, or still reserved: nobody can tell), are handed back next.
          if (codeOf(err) === 'ESTOREUNAVAILABLE') {
            this.reclaimNext = true;
            this.ready = release.concat(this.ready);
          } else {
            this.ready = start.concat(release, this.ready);
          }
          throw err;
        }
        this.reclaimNext = false;
        if (res.reclaimed?.length) {
          this.log.warn(
            { ids: res.reclaimed.slice(0, 50), count: res.reclaimed.length },
            'rows leased by a dispatcher transaction whose reply was lost were never sent: back to pending',
          );
        }
        const started = new Set(res.started);
        // a reservation we no longer hold (lease expired and taken, or an operator acted) is dropped
        const toSend: OutboxRow[] = [];
        for (const row of start) {
          if (!started.has(row.id)) continue;
          row.attempts += 1; // counted by the store as it moved to sending
          toSend.push(row);
        }
        toSend.push(...res.claimed);
        this.ready.push(...res.reserved);
        // the pacer's last word: rows beyond the tokens it grants go back (release, EPACED)
        for (const row of this.o.pacer ? await this.paced(toSend) : toSend) void this.send(row);
        if (canSend && started.size + res.claimed.length < free)
          idleFor = Math.min(idleFor ?? Infinity, await this.untilNextDue());
      } else if (canSend && free > 0) {
        idleFor = await this.untilNextDue();
      }
      if (this.contiguousErrors > 0)
        this.emit({ type: 'loop-recovered', afterErrors: this.contiguousErrors });
      this.contiguousErrors = 0;
    } catch (err) {
      // store trouble is a loop-level error: log it, back off, keep going (never crash the loop)
      this.contiguousErrors++;
      const error = coerceError(err);
      const delay = Math.min(MAX_LOOP_BACKOFF_MS, 250 * 2 ** Math.min(this.contiguousErrors - 1, 10));
      this.log.error(
        { err: error, contiguousErrors: this.contiguousErrors, retryInMs: delay },
        'dispatcher loop error',
      );
      this.emit({ type: 'loop-error', error });
      idleFor = delay;
      this.tickAgain = false;
    } finally {
      this.ticking = false;
    }
    if (this.tickAgain || (this.outcomes.length && this.contiguousErrors === 0)) {
      this.tickAgain = false;
      this.scheduleTick();
    } else if (idleFor !== undefined) {
      if (this.stopping && this.outcomes.length) {
        // a store error while draining: try the outcome write again after the backoff
        this.wakeTimer = setTimeout(() => this.scheduleTick(), idleFor);
        this.wakeTimer.unref();
      } else {
        this.armWake(idleFor);
      }
    }
    if (this.stopping && this.isDrained()) {
      for (const w of this.drainWaiters.splice(0)) w();
    }
  }

  /**
   * The claimed rows the pacer lets go now; the rest (another replica took the shared bucket's
   * sends first) go straight back to pending, their attempt not counted.
   */
  private async paced(rows: OutboxRow[]): Promise<OutboxRow[]> {
    let granted = 0;
    try {
      granted = await this.o.pacer!.take(rows.length);
    } finally {
      for (const row of rows.slice(granted)) {
        this.outcomes.push({
          id: row.id,
          kind: 'release',
          error: 'held back by the send pace',
          code: 'EPACED',
          nextAttemptAt: new Date(),
        });
      }
    }
    return rows.slice(0, granted);
  }

  private async untilNextDue(): Promise<number> {
    const next = await this.o.store.nextDueAt(this.o.channel);
    if (!next) return this.pollMs;
    // at least a few ms: a row due "now" that the claim just missed must not spin the loop
    return Math.min(this.pollMs, Math.max(MIN_WAKE_MS, next.getTime() - Date.now()));
  }

  /**
   * Rows left `sending` past their lease: this process's own (it was paused or stalled past
   * the lease: the send may have gone out) and another (crashed) process's, each said as such.
   */
  private async recoverExpired(): Promise<void> {
    this.lastRecoverAt = Date.now();
    const resendRules = this.o.resendRules ?? [];
    const own = await this.o.store.recoverAbandoned({ resendRules, self: this.o.owner, onlySelf: true });
    if (own.length) {
      this.log.warn(
        { ids: own.slice(0, 50), count: own.length, leaseMs: this.o.leaseMs },
        "this process's own rows: their send lease expired while it was paused or stalled; marked unknown unless their rule says onUncertain: resend",
      );
      this.emit({ type: 'recovered', ids: own });
    }
    const ids = await this.o.store.recoverAbandoned({
      resendRules,
      deadOwners: this.o.canJudgeOthers?.() ?? true,
      self: this.o.owner,
    });
    if (ids.length) {
      this.log.warn(
        { ids: ids.slice(0, 50), count: ids.length },
        'rows abandoned mid-send by another process',
      );
      this.emit({ type: 'recovered', ids });
    }
  }

  private async send(row: OutboxRow): Promise<void> {
    this.sending++;
    this.inFlightIds.add(row.id);
    const started = Date.now();
    let outcome: Outcome;
    let failure: FailureKind | undefined;
    let responseCode: number | undefined;
    const tried = row.message
      ? await attempt(this.o.sink, row.message)
      : { kind: 'dead' as const, error: new SendError('row has no rendered message', { kind: 'dead' }) };
    if (tried.kind === 'sent') {
      outcome = { id: row.id, kind: 'sent', result: tried.result };
    } else {
      failure = tried.kind;
      responseCode = tried.error.responseCode;
      outcome = this.failureOutcome(row, tried.error);
    }
    this.sending--;
    this.inFlightIds.delete(row.id);
    this.outcomes.push(outcome);
    this.scheduleTick();
    const durationMs = Date.now() - started;
    const fields = {
      rule: row.rule,
      recordId: row.recordId,
      channel: row.channel,
      outboxId: row.id,
      attempt: row.attempts,
      outcome: outcome.kind,
      responseCode,
      ms: durationMs,
    };
    if (outcome.kind === 'sent') {
      this.log.info(
        { ...fields, responseCode: Number(/^\d{3}/.exec(outcome.result.response)?.[0]) || undefined },
        'sent',
      );
    } else {
      const level = outcome.kind === 'retry' || outcome.kind === 'release' ? 'warn' : 'error';
      this.log[level]({ ...fields, failure, error: outcome.error }, `send ${outcome.kind}`);
    }
    this.emit({
      type: 'outcome',
      outcome: outcome.kind,
      ...(failure ? { failure } : {}),
      ...(outcome.kind !== 'sent' && outcome.code ? { code: outcome.code } : {}),
      id: row.id,
      rule: row.rule,
      recordId: row.recordId,
      channel: row.channel,
      attempts: row.attempts,
      durationMs,
      ...(responseCode !== undefined ? { responseCode } : {}),
    });
  }

  private failureOutcome(row: OutboxRow, e: SendError): Outcome {
    const { outcome, effect } = failureOutcome(row, e, this.policy);
    // the relay said "later": slow down (the row stays pending, its attempt not spent)
    if (effect === 'throttle') void this.o.pacer?.throttled();
    if (effect === 'auth') this.openCircuit(outcome.error);
    if (effect === 'unreachable')
      this.openCircuit(
        `${this.channelName === 'email' ? 'SMTP server' : this.channelName} unreachable: ${outcome.error}`,
      );
    return outcome;
  }

  /** SMTP refuses us (auth, TLS) or is unreachable: stop claiming, keep rows pending, probe until it works again. */
  private openCircuit(reason: string): void {
    if (this.circuitState === 'open') return;
    this.circuitState = 'open';
    this.log.error(
      { reason, probeEveryMs: this.o.delivery.circuitRetryMs },
      `${this.circuitLabel} circuit open: sending paused, rows stay pending until a probe connects${this.channelName === 'email' ? ' and authenticates' : ''}`,
    );
    this.emit({ type: 'circuit', state: 'open', reason, channel: this.channelName });
    this.scheduleProbe();
  }

  private get circuitLabel(): string {
    return this.channelName === 'email' ? 'SMTP' : this.channelName;
  }

  private scheduleProbe(): void {
    if (this.probeTimer || this.stopping) return;
    this.probeTimer = setTimeout(() => {
      this.probeTimer = undefined;
      void this.probe();
    }, this.o.delivery.circuitRetryMs);
  }

  private async probe(): Promise<void> {
    if (this.stopping || this.circuitState === 'closed') return;
    try {
      await this.o.sink.verify();
    } catch (err) {
      this.log.debug({ err: coerceError(err) }, `${this.circuitLabel} circuit probe failed`);
      this.scheduleProbe();
      return;
    }
    this.circuitState = 'closed';
    this.log.info(
      `${this.circuitLabel} circuit closed: the probe connected${this.channelName === 'email' ? ' and authenticated' : ''}; sending resumes`,
    );
    this.emit({ type: 'circuit', state: 'closed', channel: this.channelName });
    this.scheduleTick();
  }
}
