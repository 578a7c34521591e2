// Prometheus metrics on a registry of our own (never prom-client's global one, so tests and embedders
// can run several Apps in one process). Counters are fed by AppEvents; the outbox depth and the
// circuit are read at scrape time from whatever source is attached.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { AppEvents } from '../app/app.ts';
import type { DispatchEvent } from '../delivery/dispatcher.ts';
import type { PaceSnapshot } from '../delivery/pacer.ts';
import type { ApiUsage, PollResult } from '../sources/salesforce/poller.ts';
import { OUTBOX_STATES } from '../store/index.ts';
import type { OutboxState } from '../store/index.ts';

export const METRIC_PREFIX = 'lead_notifier_';

/** What the scrape-time gauges read; attached once the App exists. */
export interface MetricsSource {
  /** outbox rows by state (cached by the caller), or null when the store cannot answer */
  outboxCounts(): Promise<Record<OutboxState, number> | null>;
  circuitOpen(): boolean;
  /** the send pacer's state (delivery/pacer.ts), or null before the App has one */
  pace?(): PaceSnapshot | null;
}

export interface MetricsOptions {
  /** rule names: their series start at 0 instead of appearing on first use */
  rules?: string[];
  /** the channels in use: their circuit series start at 0 (default: email) */
  channels?: string[];
  /** process metrics (CPU, memory, event loop lag, GC), prefixed lead_notifier_; default true */
  defaultMetrics?: boolean;
}

// Polls take from milliseconds (nothing new) to minutes (a backfill with many pages).
const POLL_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
// An SMTP send: a pooled connection answers in milliseconds, a slow relay in seconds.
const SEND_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class Metrics {
  readonly registry = new Registry();
  private source: MetricsSource | undefined;

  readonly recordsSeen: Counter<'rule'>;
  readonly enqueued: Counter<'rule'>;
  readonly sent: Counter<'rule'>;
  readonly retried: Counter<'rule'>;
  readonly dead: Counter<'rule'>;
  readonly uncertain: Counter<'rule'>;
  readonly sendFailures: Counter<'rule' | 'outcome' | 'code'>;
  readonly outboxDepth: Gauge<'state'>;
  readonly pollDuration: Histogram<'rule'>;
  readonly sendDuration: Histogram;
  readonly apiUsageRatio: Gauge;
  readonly apiCalls: Counter<'rule'>;
  readonly lastSuccessfulPoll: Gauge<'rule'>;
  readonly pollErrors: Counter<'rule'>;
  readonly circuitOpen: Gauge;
  /** every channel's outcomes (email, webhook, slack, teams), beside the per-rule series */
  readonly channelOutcomes: Counter<'channel' | 'outcome'>;
  readonly channelCircuitOpen: Gauge<'channel'>;
  readonly ruleLeader: Gauge<'rule'>;
  readonly leaseRenewFailures: Counter;
  readonly throttled: Counter<'rule'>;
  readonly pace: Gauge;
  readonly paceLimit: Gauge;
  readonly dailySent: Gauge;
  readonly dailyLimit: Gauge;
  readonly streamReconnects: Counter<'api' | 'reason'>;
  readonly sendApiRequests: Counter<'token' | 'route' | 'status'>;
  readonly sendApiQueued: Counter<'token'>;
  readonly sendApiSent: Counter<'token'>;
  readonly sendApiDead: Counter<'token'>;

  constructor(opts: MetricsOptions = {}) {
    const registers = [this.registry];
    const p = METRIC_PREFIX;
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: p });
    this.recordsSeen = new Counter({
      name: `${p}records_seen_total`,
      help: 'Records read from Salesforce by polls (lookback re-reads count again; the ledger skips them)',
      labelNames: ['rule'],
      registers,
    });
    this.enqueued = new Counter({
      name: `${p}notifications_enqueued_total`,
      help: 'Outbox rows created: records new to the rule, each notified at most once',
      labelNames: ['rule'],
      registers,
    });
    this.sent = new Counter({
      name: `${p}notifications_sent_total`,
      help: 'Notifications the SMTP server accepted',
      labelNames: ['rule'],
      registers,
    });
    this.retried = new Counter({
      name: `${p}notifications_retried_total`,
      help: 'Send attempts that failed temporarily (4xx reply or connection error) and were scheduled again',
      labelNames: ['rule'],
      registers,
    });
    this.dead = new Counter({
      name: `${p}notifications_dead_total`,
      help: 'Notifications given up: permanent SMTP rejection, too old, or a template that failed to render',
      labelNames: ['rule'],
      registers,
    });
    this.uncertain = new Counter({
      name: `${p}notifications_uncertain_total`,
      help: 'Sends whose connection broke after the message data went out (maybe delivered; state unknown)',
      labelNames: ['rule'],
      registers,
    });
    this.sendFailures = new Counter({
      name: `${p}send_failures_total`,
      help: 'Failed send attempts by outcome (retry, dead, uncertain, release) and failure code (ECONNECTION, EENVELOPE, ...)',
      labelNames: ['rule', 'outcome', 'code'],
      registers,
    });
    const source = (): MetricsSource | undefined => this.source;
    this.outboxDepth = new Gauge({
      name: `${p}outbox_depth`,
      help: 'Outbox rows by state, read from the store at scrape time (cached for about 2 s)',
      labelNames: ['state'],
      registers,
      async collect() {
        const counts = await source()
          ?.outboxCounts()
          .catch(() => null);
        this.reset();
        if (!counts) return;
        for (const s of OUTBOX_STATES) this.set({ state: s }, counts[s] ?? 0);
      },
    });
    this.pollDuration = new Histogram({
      name: `${p}poll_duration_seconds`,
      help: 'Duration of successful polls, all pages included',
      labelNames: ['rule'],
      buckets: POLL_BUCKETS,
      registers,
    });
    this.sendDuration = new Histogram({
      name: `${p}send_duration_seconds`,
      help: 'Duration of SMTP send attempts, whatever their outcome',
      buckets: SEND_BUCKETS,
      registers,
    });
    this.apiUsageRatio = new Gauge({
      name: `${p}salesforce_api_usage_ratio`,
      help: "The org's daily API requests used / allowed, from the last Sforce-Limit-Info header (api-usage=used/limit)",
      registers,
    });
    this.apiCalls = new Counter({
      name: `${p}salesforce_api_calls_total`,
      help: 'Salesforce REST calls made by polls (queries and nextRecordsUrl pages)',
      labelNames: ['rule'],
      registers,
    });
    this.lastSuccessfulPoll = new Gauge({
      name: `${p}last_successful_poll_timestamp_seconds`,
      help: 'Unix time of the last successful poll of the rule',
      labelNames: ['rule'],
      registers,
    });
    this.pollErrors = new Counter({
      name: `${p}poll_errors_total`,
      help: 'Polls that failed (cursor unchanged; retried on the next tick)',
      labelNames: ['rule'],
      registers,
    });
    this.circuitOpen = new Gauge({
      name: `${p}smtp_circuit_open`,
      help: '1 while the SMTP circuit is open (authentication failed; rows wait as pending), else 0',
      registers,
      collect() {
        const s = source();
        if (s) this.set(s.circuitOpen() ? 1 : 0);
      },
    });
    this.circuitOpen.set(0);
    this.ruleLeader = new Gauge({
      name: `${p}rule_leader`,
      help: "1 while this replica leads the rule's polling (and stream), else 0",
      labelNames: ['rule'],
      registers,
    });
    this.leaseRenewFailures = new Counter({
      name: `${p}lease_renew_failures_total`,
      help: 'Heartbeats and rule lease renewals that failed (store unavailable); a leader stops polling before its lease can expire',
      registers,
    });
    this.throttled = new Counter({
      name: `${p}smtp_throttled_total`,
      help: 'Throttling replies from the SMTP relay (421/450/451/454 4.7.x, 4.5.x): the row stays pending, the pace slows',
      labelNames: ['rule'],
      registers,
    });
    const pace = (): PaceSnapshot | null => source()?.pace?.() ?? null;
    this.pace = new Gauge({
      name: `${p}smtp_pace_messages_per_second`,
      help: 'The send pace now: the rate limit, lowered after throttling replies; 0 while paused, +Inf when unlimited',
      registers,
      collect() {
        const s = pace();
        if (s) this.set(s.messagesPerSecond);
      },
    });
    this.paceLimit = new Gauge({
      name: `${p}smtp_rate_limit_messages_per_second`,
      help: 'The configured smtp.rateLimit in messages per second (absent when none)',
      registers,
      collect() {
        const s = pace();
        this.reset();
        if (s?.limitPerSecond != null) this.set(s.limitPerSecond);
      },
    });
    this.dailySent = new Gauge({
      name: `${p}smtp_daily_sent`,
      help: 'Messages sent in the rolling 24 hours that smtp.dailyLimit counts (hourly resolution)',
      registers,
      collect() {
        const s = pace();
        if (s) this.set(s.dailyCount);
      },
    });
    this.dailyLimit = new Gauge({
      name: `${p}smtp_daily_limit`,
      help: 'The configured smtp.dailyLimit (absent when none)',
      registers,
      collect() {
        const s = pace();
        this.reset();
        if (s?.dailyLimit != null) this.set(s.dailyLimit);
      },
    });
    this.channelOutcomes = new Counter({
      name: `${p}channel_notifications_total`,
      help: 'Send attempts by channel (email, webhook, slack, teams) and outcome (sent, retry, dead, uncertain, release)',
      labelNames: ['channel', 'outcome'],
      registers,
    });
    this.channelCircuitOpen = new Gauge({
      name: `${p}channel_circuit_open`,
      help: "1 while the channel's circuit is open (refused credentials or unreachable; its rows wait as pending), else 0",
      labelNames: ['channel'],
      registers,
    });
    for (const channel of opts.channels ?? ['email']) this.channelCircuitOpen.set({ channel }, 0);
    this.streamReconnects = new Counter({
      name: `${p}stream_reconnects_total`,
      help: 'Stream subscriptions lost and re-established (after a reconcile by poll where needed), by API and reason',
      labelNames: ['api', 'reason'],
      registers,
    });
    // the Send API, by token NAME (never its value); '-' = no known token
    this.sendApiRequests = new Counter({
      name: `${p}send_api_requests_total`,
      help: "Send API requests by token name ('-': no known token), route (send, messages, other) and HTTP status",
      labelNames: ['token', 'route', 'status'],
      registers,
    });
    this.sendApiQueued = new Counter({
      name: `${p}send_api_queued_total`,
      help: 'Send API messages written to the outbox (idempotent replays not counted)',
      labelNames: ['token'],
      registers,
    });
    this.sendApiSent = new Counter({
      name: `${p}send_api_sent_total`,
      help: 'Send API messages the SMTP server accepted',
      labelNames: ['token'],
      registers,
    });
    this.sendApiDead = new Counter({
      name: `${p}send_api_dead_total`,
      help: 'Send API messages given up (permanent rejection, too old, attempts spent)',
      labelNames: ['token'],
      registers,
    });
    for (const rule of opts.rules ?? []) this.initRule(rule);
  }

  /** the Send API's token names: their series start at 0 */
  initSendApiTokens(names: string[]): void {
    for (const token of names)
      for (const c of [this.sendApiQueued, this.sendApiSent, this.sendApiDead]) c.inc({ token }, 0);
  }

  /** Reads for the scrape-time gauges (outbox depth, circuit). */
  attach(source: MetricsSource): void {
    this.source = source;
  }

  /** Hooks for `new App(config, { logger, events: metrics.events })`. */
  readonly events: AppEvents = {
    onPoll: (rule, result) => this.onPoll(rule, result),
    onPollError: (rule) => this.pollErrors.inc({ rule }),
    onDispatch: (e) => this.onDispatch(e),
    onApiUsage: (u) => this.onApiUsage(u),
    onLeadership: (rule, leading) => this.ruleLeader.set({ rule }, leading ? 1 : 0),
    onLeaseRenewFailure: () => this.leaseRenewFailures.inc(),
    onStreamReconnect: (_rule, api, reason) => this.streamReconnects.inc({ api, reason }),
  };

  /** Prometheus text exposition format. */
  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  private initRule(rule: string): void {
    for (const c of [
      this.recordsSeen,
      this.enqueued,
      this.sent,
      this.retried,
      this.dead,
      this.uncertain,
      this.apiCalls,
      this.pollErrors,
      this.throttled,
    ])
      c.inc({ rule }, 0);
    this.ruleLeader.set({ rule }, 0);
  }

  private onPoll(rule: string, r: PollResult): void {
    this.recordsSeen.inc({ rule }, r.read);
    this.enqueued.inc({ rule }, r.enqueued);
    // rows whose template failed to render are enqueued straight as dead
    if (r.dead > 0) this.dead.inc({ rule }, r.dead);
    this.apiCalls.inc({ rule }, r.apiCalls);
    this.pollDuration.observe({ rule }, r.durationMs / 1000);
    this.lastSuccessfulPoll.set({ rule }, Date.now() / 1000);
  }

  private onDispatch(e: DispatchEvent): void {
    if (e.type === 'circuit') {
      const channel = e.channel ?? 'email';
      this.channelCircuitOpen.set({ channel }, e.state === 'open' ? 1 : 0);
      if (channel === 'email') this.circuitOpen.set(e.state === 'open' ? 1 : 0);
      return;
    }
    if (e.type !== 'outcome') return;
    const rule = e.rule;
    // Send API rows are rule api:<token name> (http/send-api.ts)
    const token = rule.startsWith('api:') ? rule.slice(4) : undefined;
    if (token !== undefined && e.outcome === 'sent') this.sendApiSent.inc({ token });
    if (token !== undefined && e.outcome === 'dead') this.sendApiDead.inc({ token });
    this.channelOutcomes.inc({ channel: e.channel ?? 'email', outcome: e.outcome });
    if (e.outcome !== 'sent') this.sendFailures.inc({ rule, outcome: e.outcome, code: e.code ?? 'ESEND' });
    if (e.failure === 'throttle') this.throttled.inc({ rule });
    // 'release': the circuit put the row back without an attempt; neither a send nor a retry
    if (e.outcome === 'release') return;
    this.sendDuration.observe(e.durationMs / 1000);
    switch (e.outcome) {
      case 'sent':
        this.sent.inc({ rule });
        break;
      case 'retry':
        this.retried.inc({ rule });
        break;
      case 'dead':
        this.dead.inc({ rule });
        break;
      case 'uncertain':
        this.uncertain.inc({ rule });
        break;
      default:
        break;
    }
  }

  private onApiUsage(u: ApiUsage): void {
    if (u.limit > 0) this.apiUsageRatio.set(u.used / u.limit);
  }
}
