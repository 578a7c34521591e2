// Wires the pipeline: sources -> rules/templates -> store -> dispatchers -> SMTP and HTTP channels. start()/stop().
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import cron from 'node-cron';
import type { ScheduledTask } from 'node-cron';
import type { Connection } from 'jsforce';
import type { Logger } from 'pino';
import type { LoadedConfig, RuleConfig } from '../config/index.ts';
import { Dispatcher } from '../delivery/dispatcher.ts';
import type { DispatchEvent } from '../delivery/dispatcher.ts';
import { Pacer } from '../delivery/pacer.ts';
import { sendLimits } from '../config/index.ts';
import { createSmtpSink, smtpOnWorker } from '../sinks/index.ts';
import type { SmtpSink } from '../sinks/index.ts';
import { connectSalesforce, createConnection } from '../sources/salesforce/connection.ts';
import { isRequestLimitError, RulePoller } from '../sources/salesforce/poller.ts';
import type { ApiUsage, PollResult } from '../sources/salesforce/poller.ts';
import type { RuleStream } from '../sources/salesforce/stream.ts';
import { UpdatePoller } from '../sources/salesforce/update-poller.ts';
import { isStoreFailure, openStore, SqliteStore } from '../store/index.ts';
import type { PostgresStore } from '../store/index.ts';
import { compileRule } from '../templates/index.ts';
import { enabledRules, resendRuleNames } from '../rules/index.ts';
import { Enqueuer } from './enqueue.ts';
import type { ChannelRuntime } from './channels.ts';
import type { HttpChannelName } from '../types.ts';
import { Leadership } from '../cluster/leadership.ts';
import type { Store } from '../store/index.ts';
import { parseDuration } from '../util/duration.ts';
import { codeOf, coerceError } from '../util/errors.ts';

export interface RuleStatus {
  name: string;
  object: string;
  lastPollAt: string | null;
  lastSuccessAt: string | null;
  lastError: string | null;
  lastResult: PollResult | null;
  polling: boolean;
  /** this replica leads the rule's polling (always, with one replica) */
  leader: boolean;
  /** where lastError came from: the store is judged apart from Salesforce */
  lastErrorSource?: 'salesforce' | 'store' | null;
}

export interface AppEvents {
  onPoll?: (rule: string, result: PollResult) => void;
  onPollError?: (rule: string, err: Error) => void;
  onDispatch?: (e: DispatchEvent) => void;
  onApiUsage?: (usage: ApiUsage) => void;
  /** this replica started or stopped leading a rule */
  onLeadership?: (rule: string, leading: boolean) => void;
  onLeaseRenewFailure?: (err: Error) => void;
  /** a stream subscription was lost and is being re-established */
  onStreamReconnect?: (rule: string, api: string, reason: string) => void;
}

export interface AppOptions {
  logger: Logger;
  events?: AppEvents;
  /** poll every rule once right after start (default true) */
  pollOnStart?: boolean;
}

// Once the org's allocation is used up, polls pause (cursor unmoved) and probe again after 15 s,
// doubling up to 5 minutes: a probe costs one call, and the allocation is a rolling 24 h window.
const LIMIT_BACKOFF_MIN_MS = 15_000;
const LIMIT_BACKOFF_MAX_MS = 5 * 60_000;

export class App {
  readonly config: LoadedConfig;
  readonly owner = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  store: Store | undefined;
  sink: SmtpSink | undefined;
  /** the email dispatcher (email rows only) */
  dispatcher: Dispatcher | undefined;
  /** webhook, Slack, Teams: one HTTP channel and dispatcher each, for the channels rules use */
  channels = new Map<HttpChannelName, ChannelRuntime>();
  leadership: Leadership | undefined;
  /** paces sends to the relay's limits; reads for metrics */
  pacer: Pacer | undefined;
  conn: Connection | undefined;
  salesforce: { state: 'connecting' | 'connected' | 'error'; lastError: string | null } = {
    state: 'connecting',
    lastError: null,
  };
  /** SMTP as last seen: verified at start, then updated by every send outcome and the circuit */
  smtp: { state: 'unknown' | 'ok' | 'error'; lastError: string | null; checkedAt: string | null } = {
    state: 'unknown',
    lastError: null,
    checkedAt: null,
  };
  apiUsage: ApiUsage | null = null;
  /** the last store write that failed (disk full, read-only, database gone); cleared by the next that works */
  /** the last failed store write, by whom: a success of the same kind clears it */
  storeProblem: { reason: string; at: string; source: 'dispatcher' | 'poll' } | null = null;
  readonly rules = new Map<string, RuleStatus>();
  private readonly log: Logger;
  private readonly opts: AppOptions;
  private pollers = new Map<string, RulePoller | UpdatePoller>();
  readonly streamers = new Map<string, RuleStream>();
  private tasks: ScheduledTask[] = [];
  private inFlightPolls = new Set<Promise<void>>();
  private limitPausedUntil = 0;
  private limitBackoffMs = LIMIT_BACKOFF_MIN_MS;
  private connecting: Promise<void> | undefined;
  private started = false;
  private stopping = false;

  constructor(config: LoadedConfig, opts: AppOptions) {
    this.config = config;
    this.opts = opts;
    this.log = opts.logger.child({ component: 'app' });
  }

  get isStopping(): boolean {
    return this.stopping;
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const cfg = this.config;
    const enabled = enabledRules(cfg);
    // The streaming clients (Pub/Sub over gRPC; CometD/faye with jsforce's Streaming API) are
    // loaded only when a rule streams, and before the connection is created: jsforce attaches its APIs to new connections.
    const createRuleStream = enabled.some((r) => r.mode === 'stream')
      ? (await import('../sources/salesforce/stream.ts')).createRuleStream
      : undefined;
    const conn = createConnection(cfg.salesforce, cfg.baseDir);
    this.conn = conn;
    // The first polls need a session: ask for it now, so the token round trip overlaps opening
    // and migrating the store; those polls wait for this attempt and report its failure. Only
    // with SQLite, where this process leads every rule: a PostgreSQL replica may start as a
    // follower, which makes no Salesforce calls (and is ready without them).
    const firstLogin =
      this.opts.pollOnStart !== false && cfg.store.startsWith('sqlite:') ? this.ensureConnected() : undefined;
    firstLogin?.catch(() => undefined);
    const store = await openStore(cfg.store, {
      baseDir: cfg.baseDir,
      exclusive: true,
      postgres: {
        // one poller commit per rule, the dispatcher's claim and outcome writes, the leases
        max: cfg.cluster.poolSize ?? enabled.length + 3,
        applicationName: `lead-notifier ${this.owner}`.slice(0, 63),
      },
    });
    this.store = store;
    await store.migrate();
    if (store.kind === 'postgres') await this.checkConnectionBudget(store as PostgresStore);
    const resendRules = resendRuleNames(cfg);
    // The SQLite store is held exclusively: any row still `sending` belongs to a process that died.
    const abandoned = await store.recoverAbandoned({ all: store.kind === 'sqlite', resendRules });
    if (abandoned.length > 0) {
      this.log.warn(
        { ids: abandoned.slice(0, 50), count: abandoned.length },
        'rows were mid-send when the last process stopped: marked unknown (see `lead-notifier outbox list --state unknown`) unless their rule says onUncertain: resend',
      );
    }

    const compiled = new Map(enabled.map((r) => [r.name, compileRule(r, cfg.baseDir)]));

    const smtpThread = smtpOnWorker(cfg.smtp, store instanceof SqliteStore && store.synchronous === 'full');
    this.sink = createSmtpSink(cfg.smtp, {
      baseDir: cfg.baseDir,
      logger: this.opts.logger.child({ component: 'smtp' }),
      inProcess: !smtpThread,
    });
    const leaseMs = cfg.delivery.leaseMs ?? cfg.smtp.sendTimeoutMs + 30_000;
    const leaseTtlMs = parseDuration(cfg.cluster.leaseTtl);
    this.pacer = new Pacer({
      limits: sendLimits(cfg.smtp),
      store,
      logger: this.opts.logger.child({ component: 'pacer' }),
    });
    this.dispatcher = new Dispatcher({
      store,
      sink: this.sink,
      channel: 'email',
      delivery: cfg.delivery,
      concurrency: cfg.smtp.pool.maxConnections,
      leaseMs,
      owner: this.owner,
      logger: this.opts.logger.child({ component: 'dispatcher' }),
      resendRules,
      recoverEveryMs: Math.min(leaseMs, Math.ceil(leaseTtlMs / 3)),
      pacer: this.pacer,
      canJudgeOthers: () => this.leadership?.canJudgeOthers() ?? false,
      onEvent: (e) => {
        if (e.type === 'loop-error' && isStoreFailure(e.error))
          this.storeProblem = { reason: e.error.message, at: new Date().toISOString(), source: 'dispatcher' };
        // the dispatcher's transaction went through again: the store takes its writes (on a
        // follower no poll would ever say so); a failing poll commit (a bigger write) still counts
        else if (e.type === 'loop-recovered' && this.storeProblem?.source === 'dispatcher')
          this.storeProblem = null;
        this.trackSmtp(e);
        this.opts.events?.onDispatch?.(e);
      },
    });
    this.dispatcher.start();
    void this.verifySmtp();
    // undici and the HTTP channel load only when a rule uses one (start-up time, as the stream clients)
    const usesChannels = enabled.some((r) => r.webhook || r.slack || r.teams);
    const createChannelRuntimes = usesChannels
      ? (await import('./channels.ts')).createChannelRuntimes
      : () => new Map<HttpChannelName, ChannelRuntime>();
    this.channels = createChannelRuntimes({
      rules: enabled,
      store,
      delivery: cfg.delivery,
      owner: this.owner,
      logger: this.opts.logger,
      resendRules,
      recoverEveryMs: Math.ceil(leaseTtlMs / 3),
      onEvent: (e) => {
        if (e.type === 'loop-error' && isStoreFailure(e.error))
          this.storeProblem = { reason: e.error.message, at: new Date().toISOString(), source: 'dispatcher' };
        else if (e.type === 'loop-recovered' && this.storeProblem?.source === 'dispatcher')
          this.storeProblem = null;
        this.opts.events?.onDispatch?.(e);
      },
    });
    for (const c of this.channels.values()) c.dispatcher.start();

    // Poll leadership: with one replica (always so with SQLite) this replica leads every rule.
    const byName = new Map(enabled.map((r) => [r.name, r]));
    const leadership = new Leadership({
      store,
      replica: { id: this.owner, host: hostname(), pid: process.pid },
      rules: enabled.map((r) => r.name),
      ttlMs: leaseTtlMs,
      logger: this.opts.logger.child({ component: 'leadership' }),
      onGain: (name) => {
        const status = this.rules.get(name);
        if (status) status.leader = true;
        this.opts.events?.onLeadership?.(name, true);
        const rule = byName.get(name);
        // a new term: poll now (and subscribe, in stream mode) from the stored checkpoint
        if (rule && this.pollers.has(name)) this.triggerPoll(rule);
      },
      onLose: (name) => {
        const status = this.rules.get(name);
        if (status) {
          status.leader = false;
          status.lastError = null; // another replica polls it now; its errors are not ours
        }
        this.opts.events?.onLeadership?.(name, false);
        // the stream follows the lease: a stale replay id must not be used (its writes are fenced anyway)
        const streamer = this.streamers.get(name);
        if (streamer && streamer.state !== 'stopped') void streamer.stop();
      },
      onRenewFailure: (err) => this.opts.events?.onLeaseRenewFailure?.(err),
    });
    this.leadership = leadership;
    for (const rule of enabled) {
      this.rules.set(rule.name, {
        name: rule.name,
        object: rule.object,
        lastPollAt: null,
        lastSuccessAt: null,
        lastError: null,
        lastResult: null,
        polling: false,
        leader: false,
      });
    }
    await leadership.start();

    for (const rule of enabled) {
      const c = compiled.get(rule.name)!;
      const enqueuer = new Enqueuer({
        rule,
        compiled: c,
        store,
        logger: this.opts.logger.child({ component: 'enqueue', rule: rule.name }),
        onEnqueued: () => {
          this.dispatcher?.kick();
          for (const c of this.channels.values()) c.dispatcher.kick();
        },
        fence: () => leadership.fence(rule.name),
      });
      const Poller = rule.on === 'updated' ? UpdatePoller : RulePoller;
      const poller = new Poller({
        rule,
        conn,
        store,
        commit: enqueuer.commit,
        apiVersion: cfg.salesforce.apiVersion,
        http: { timeout: cfg.salesforce.requestTimeoutMs },
        logger: this.opts.logger.child({ component: 'poller', rule: rule.name }),
        onApiUsage: (u) => {
          this.apiUsage = u;
          this.opts.events?.onApiUsage?.(u);
        },
      });
      this.pollers.set(rule.name, poller);
      // the leader fixes the floor at the first start; a follower's first poll as leader does
      if (leadership.isLeader(rule.name)) await poller.init();
      if (rule.mode === 'stream' && createRuleStream) {
        this.streamers.set(
          rule.name,
          createRuleStream(cfg.salesforce.streaming, {
            poller,
            conn,
            logger: this.opts.logger.child({ component: 'streamer', rule: rule.name }),
            reconcile: () => this.pollRule(rule, true),
            reauthenticate: () => {
              this.salesforce.state = 'connecting';
              return this.ensureConnected();
            },
            onReconnect: (api, reason) => this.opts.events?.onStreamReconnect?.(rule.name, api, reason),
          }),
        );
      }
      const task = cron.schedule(rule.schedule, () => this.triggerPoll(rule), {
        name: `poll:${rule.name}`,
        noOverlap: true,
      });
      this.tasks.push(task);
      if (rule.digest) this.tasks.push(this.scheduleDigest(rule, enqueuer));
    }
    this.log.info(
      {
        rules: enabled.map((r) => r.name),
        store: store.kind,
        owner: this.owner,
        smtp: smtpThread ? 'worker thread' : 'main thread',
      },
      'lead-notifier started',
    );
    if (this.opts.pollOnStart !== false) for (const rule of enabled) this.triggerPoll(rule, firstLogin);
  }

  /**
   * Digest rules: at each scheduled time, one digest of what was collected since the previous
   * one. A time missed while the daemon was down is not made up: its records go in the next.
   */
  private scheduleDigest(rule: RuleConfig, enqueuer: Enqueuer): ReturnType<typeof cron.schedule> {
    const log = this.opts.logger.child({ component: 'digest', rule: rule.name });
    return cron.schedule(
      rule.digest!.schedule,
      async () => {
        // one replica sends a rule's digest: the one that leads the rule's polling
        if (this.stopping || !this.leadership?.isLeader(rule.name)) return;
        const until = new Date(Math.floor(Date.now() / 1000) * 1000);
        try {
          const { outboxId, count } = await enqueuer.digest(until);
          if (outboxId !== null) log.info({ count, until: until.toISOString(), outboxId }, 'digest');
        } catch (e) {
          log.error({ err: coerceError(e) }, 'digest failed; its records stay for the next one');
        }
      },
      { name: `digest:${rule.name}`, noOverlap: true },
    );
  }

  /** Start a poll unless one is running for the rule (a rule never overlaps itself). */
  triggerPoll(rule: RuleConfig, login?: Promise<void>): void {
    const status = this.rules.get(rule.name);
    if (!status || status.polling || this.stopping) return;
    const p = this.pollRule(rule, false, login).finally(() => this.inFlightPolls.delete(p));
    this.inFlightPolls.add(p);
  }

  /**
   * Poll one rule now and wait for it. `wait`: when a poll is already running, wait for it and
   * poll again (stream reconciliation must cover events up to now). `login`: a login attempt
   * already under way (start-up's) to wait for instead of starting one.
   */
  async pollRule(rule: RuleConfig, wait = false, login?: Promise<void>): Promise<void> {
    const status = this.rules.get(rule.name);
    const poller = this.pollers.get(rule.name);
    if (!status || !poller) return;
    // another replica leads this rule: it polls (and streams) it; we only dispatch
    if (!this.leadership?.isLeader(rule.name)) return;
    if (status.polling) {
      if (!wait) return;
      while (status.polling) await sleep(100);
    }
    if (Date.now() < this.limitPausedUntil) {
      this.log.debug({ rule: rule.name }, 'poll skipped: API allocation exhausted, waiting');
      return;
    }
    status.polling = true;
    status.lastPollAt = new Date().toISOString();
    const log = this.opts.logger.child({ component: 'poller', rule: rule.name });
    try {
      await (login ?? this.ensureConnected());
      const streamer = this.streamers.get(rule.name);
      if (streamer && streamer.state === 'stopped' && !this.stopping) await streamer.start();
      const result = await poller.pollOnce();
      status.lastSuccessAt = new Date().toISOString();
      status.lastError = null;
      status.lastErrorSource = null;
      this.storeProblem = null; // a poll commits its checkpoint: the store takes writes again
      status.lastResult = result;
      this.limitBackoffMs = LIMIT_BACKOFF_MIN_MS;
      log.info(
        {
          read: result.read,
          enqueued: result.enqueued,
          dead: result.dead,
          pages: result.pages,
          apiCalls: result.apiCalls,
          apiUsage: this.apiUsage ? `${this.apiUsage.used}/${this.apiUsage.limit}` : undefined,
          watermark: result.watermark,
          ms: result.durationMs,
          ...memoryFields(),
        },
        'poll',
      );
      this.opts.events?.onPoll?.(rule.name, result);
    } catch (e) {
      const err = coerceError(e);
      status.lastError = err.message;
      status.lastErrorSource = isStoreFailure(err) ? 'store' : 'salesforce';
      this.opts.events?.onPollError?.(rule.name, err);
      if (isRequestLimitError(err)) {
        // The allocation is org-wide: pause every rule, cursor unmoved, and try again later.
        this.limitPausedUntil = Date.now() + this.limitBackoffMs;
        log.warn(
          { err, resumeAt: new Date(this.limitPausedUntil).toISOString() },
          'Salesforce API allocation exhausted (REQUEST_LIMIT_EXCEEDED); polling paused, cursor unchanged',
        );
        this.limitBackoffMs = Math.min(this.limitBackoffMs * 2, LIMIT_BACKOFF_MAX_MS);
      } else if (status.lastErrorSource === 'store') {
        this.storeProblem = { reason: err.message, at: new Date().toISOString(), source: 'poll' };
        log.error(
          { err },
          'store write failed (disk full, read-only file or database unavailable?); cursor unchanged, retried on the next tick',
        );
      } else if (codeOf(err) === 'ELEASELOST') {
        status.lastError = null;
        log.warn({ err }, 'poll stopped: this replica no longer leads the rule; its write was refused');
      } else {
        log.error({ err }, 'poll failed; cursor unchanged, retried on the next tick');
      }
    } finally {
      status.polling = false;
    }
  }

  /**
   * Warn when this replica's pool cannot fit in what the server has left: under load its
   * checkouts would then fail with "too many connections" instead of waiting for a free one.
   */
  private async checkConnectionBudget(store: PostgresStore): Promise<void> {
    try {
      const b = await store.connectionBudget();
      // the pool has opened one connection already (counted in `open`)
      if (b.pool - 1 > b.free) {
        this.log.warn(
          { poolSize: b.pool, maxConnections: b.max, reserved: b.reserved, open: b.open, free: b.free },
          'PostgreSQL has fewer free connections than this replica may open (cluster.poolSize): lower poolSize, run fewer replicas or raise max_connections',
        );
      }
    } catch (e) {
      this.log.debug({ err: coerceError(e) }, 'could not read the server connection limit');
    }
  }

  /** Connect, EHLO, STARTTLS, AUTH: readiness knows SMTP works before the first send. */
  async verifySmtp(): Promise<void> {
    try {
      await this.sink?.verify();
      this.smtp = { state: 'ok', lastError: null, checkedAt: new Date().toISOString() };
    } catch (e) {
      const err = coerceError(e);
      this.smtp = { state: 'error', lastError: err.message, checkedAt: new Date().toISOString() };
      this.log.warn({ err }, 'SMTP verification failed; sends will be retried');
    }
  }

  private trackSmtp(e: DispatchEvent): void {
    const at = new Date().toISOString();
    if (e.type === 'circuit') {
      this.smtp =
        e.state === 'open'
          ? { state: 'error', lastError: e.reason ?? 'authentication failed', checkedAt: at }
          : { state: 'ok', lastError: null, checkedAt: at };
    } else if (e.type === 'outcome') {
      if (e.outcome === 'sent') this.smtp = { state: 'ok', lastError: null, checkedAt: at };
      // A 4xx reply means the server is there and talking; no reply at all means it is not.
      else if (e.failure === 'auth' || (e.failure === 'retry' && e.responseCode === undefined))
        this.smtp = {
          state: 'error',
          lastError: `send failed (${e.responseCode ?? 'no connection'})`,
          checkedAt: at,
        };
    }
  }

  /** Authenticate once; a failed attempt is retried on the next poll. */
  private async ensureConnected(): Promise<void> {
    if (this.salesforce.state === 'connected') return;
    this.connecting ??= (async () => {
      try {
        await connectSalesforce(this.conn!, this.config.salesforce, this.config.baseDir);
        this.salesforce = { state: 'connected', lastError: null };
        this.log.info({ instanceUrl: this.conn!.instanceUrl }, 'connected to Salesforce');
      } catch (e) {
        const err = coerceError(e);
        this.salesforce = { state: 'error', lastError: err.message };
        throw new Error(`Salesforce authentication failed: ${err.message}`, { cause: e });
      } finally {
        this.connecting = undefined;
      }
    })();
    return this.connecting;
  }

  /** Stop polling, let in-flight sends finish within the bound, close everything. Safe twice. */
  async stop(timeoutMs = parseDuration(this.config.shutdownTimeout)): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const deadline = Date.now() + timeoutMs;
    for (const t of this.tasks) await t.destroy();
    this.tasks = [];
    for (const s of this.streamers.values()) await s.stop();
    // A poll commits page by page; waiting for it is bounded like the sends.
    await Promise.race([
      Promise.allSettled([...this.inFlightPolls]),
      sleep(Math.max(0, deadline - Date.now())),
    ]);
    // hand the rules over now rather than after the lease ttl
    await this.leadership?.stop();
    const left = Math.max(0, deadline - Date.now());
    await Promise.all([
      this.dispatcher?.stop(left),
      ...[...this.channels.values()].map((c) => c.dispatcher.stop(left)),
    ]);
    await Promise.all([this.sink?.close(), ...[...this.channels.values()].map((c) => c.sink.close())]);
    await this.store?.close();
    this.log.info('lead-notifier stopped');
  }
}

function memoryFields(): Record<string, number> {
  const m = process.memoryUsage();
  const mb = (n: number) => Math.round(n / 1048576);
  return {
    rssMb: mb(m.rss),
    heapMb: mb(m.heapUsed),
    heapTotalMb: mb(m.heapTotal),
    externalMb: mb(m.external),
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}
