// Readiness: is this process able to do its job right now? Store, Salesforce and SMTP are judged
// from what the App last saw (no network call per probe), plus the outbox depth from a short cache.
import type { App } from '../app/app.ts';
import { OUTBOX_STATES } from '../store/index.ts';
import type { OutboxState } from '../store/index.ts';
import { coerceError } from '../util/errors.ts';

/** The parts of App the HTTP endpoints read (App satisfies it). */
export type AppView = Pick<
  App,
  | 'config'
  | 'store'
  | 'dispatcher'
  | 'channels'
  | 'leadership'
  | 'pacer'
  | 'salesforce'
  | 'smtp'
  | 'apiUsage'
  | 'storeProblem'
  | 'rules'
  | 'isStopping'
  | 'verifySmtp'
>;

export type OutboxSnapshot =
  { ok: true; counts: Record<OutboxState, number>; at: number } | { ok: false; error: string; at: number };

/**
 * store.counts() at most once per ttl: probes and scrapes every few seconds from several clients
 * must not turn into a COUNT(*) each. Concurrent callers share one query.
 */
export class OutboxCache {
  private readonly app: Pick<AppView, 'store'>;
  private readonly ttlMs: number;
  private readonly waitMs: number;
  private last: OutboxSnapshot | undefined;
  private pending: Promise<OutboxSnapshot> | undefined;

  /** `waitMs`: how long a caller waits for a fresh count before it gets the last one (or none) */
  constructor(app: Pick<AppView, 'store'>, ttlMs = 2000, waitMs = 1500) {
    this.app = app;
    this.ttlMs = ttlMs;
    this.waitMs = waitMs;
  }

  get(): Promise<OutboxSnapshot> {
    if (this.last && Date.now() - this.last.at < this.ttlMs) return Promise.resolve(this.last);
    // A database known to be gone: answer now rather than wait out the query's reconnect backoff
    // (a probe has a timeout of its own; readiness is 503 for the store anyway).
    const down = this.app.store?.connectionProblem?.();
    if (down) return Promise.resolve({ ok: false, error: down.reason, at: Date.now() });
    this.pending ??= this.read().finally(() => (this.pending = undefined));
    // A count that goes into reconnect backoff (the database went away just now) must not hold
    // the probe for seconds: answer with the last count; readiness then reads the store's
    // connection state as it is at that moment.
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<OutboxSnapshot>((resolve) => {
      timer = setTimeout(
        () =>
          resolve(
            this.last ?? {
              ok: false,
              error: `store did not answer within ${this.waitMs} ms`,
              at: Date.now(),
            },
          ),
        this.waitMs,
      );
      timer.unref();
    });
    return Promise.race([this.pending, late]).finally(() => clearTimeout(timer));
  }

  private async read(): Promise<OutboxSnapshot> {
    const store = this.app.store;
    let snap: OutboxSnapshot;
    if (!store) snap = { ok: false, error: 'store not open yet', at: Date.now() };
    else {
      try {
        const c = await store.counts();
        const counts = Object.fromEntries(OUTBOX_STATES.map((s) => [s, c.total[s] ?? 0])) as Record<
          OutboxState,
          number
        >;
        snap = { ok: true, counts, at: Date.now() };
      } catch (e) {
        snap = { ok: false, error: coerceError(e).message, at: Date.now() };
      }
    }
    this.last = snap;
    return snap;
  }
}

export interface ComponentReport {
  ok: boolean;
  state: string;
  reason: string | null;
}

export interface RuleReport {
  name: string;
  object: string;
  lastPollAt: string | null;
  lastSuccessAt: string | null;
  /** seconds since the last successful poll; null before the first */
  lagSeconds: number | null;
  lastError: string | null;
  lastErrorSource: 'salesforce' | 'store' | null;
  /** this replica leads the rule's polling; false: another replica does (see `replicas`) */
  leader: boolean;
  /** this replica's lease, while it leads */
  lease: { epoch: number; expiresAt: string } | null;
}

export interface ReadinessReport {
  ready: boolean;
  status: 'ready' | 'not ready';
  /** why not ready ('stopping', or the failing components); null when ready */
  reason: string | null;
  components: {
    store: ComponentReport & { kind: string | null };
    salesforce: ComponentReport & { apiUsage: { used: number; limit: number } | null };
    smtp: ComponentReport & { circuit: 'open' | 'closed' | null; checkedAt: string | null };
    /** webhook, slack, teams: each channel a rule uses */
    channels?: Record<string, ComponentReport & { circuit: 'open' | 'closed'; inFlight: number }>;
  };
  rules: RuleReport[];
  /** this replica and the others alive at its last heartbeat */
  cluster: { replica: string; replicas: string[]; leaseRenewFailures: number } | null;
  outbox: { depth: number; pending: number; failed: number; sending: number } | null;
}

export function readiness(
  app: AppView,
  outbox: OutboxSnapshot,
  stopping: boolean,
  now = Date.now(),
): ReadinessReport {
  // Reads can work while writes fail (a full disk, a read-only file): the last failed write counts too.
  const kind = app.store?.kind ?? null;
  // A database server that cannot be reached is named as such at once, before any step fails on it.
  const unreachable = app.store?.connectionProblem?.() ?? null;
  const store: ReadinessReport['components']['store'] = unreachable
    ? { ok: false, state: 'unavailable', reason: `${unreachable.reason} (since ${unreachable.since})`, kind }
    : !outbox.ok
      ? { ok: false, state: 'error', reason: outbox.error, kind }
      : app.storeProblem
        ? { ok: false, state: 'error', reason: `writes failing: ${app.storeProblem.reason}`, kind }
        : { ok: true, state: 'ok', reason: null, kind };

  const rules: RuleReport[] = [...app.rules.values()].map((r) => ({
    name: r.name,
    object: r.object,
    lastPollAt: r.lastPollAt,
    lastSuccessAt: r.lastSuccessAt,
    lagSeconds:
      r.lastSuccessAt === null ? null : Math.max(0, Math.round((now - Date.parse(r.lastSuccessAt)) / 1000)),
    lastError: r.lastError,
    lastErrorSource: r.lastErrorSource ?? null,
    leader: r.leader,
    lease: app.leadership?.lease(r.name) ?? null,
  }));

  // Salesforce is usable when we are authenticated and every rule's last call succeeded. Rules
  // another replica leads are polled there: not ours to judge.
  let sf: ComponentReport;
  const led = rules.filter((r) => r.leader);
  const failing = led.filter((r) => r.lastError !== null && r.lastErrorSource !== 'store');
  const neverPolled = led.filter((r) => r.lastSuccessAt === null && r.lastErrorSource !== 'store');
  if (app.salesforce.state === 'error')
    sf = { ok: false, state: 'error', reason: app.salesforce.lastError ?? 'authentication failed' };
  else if (led.length === 0 && rules.length > 0)
    // a follower makes no Salesforce calls; the leaders' readiness speaks for Salesforce
    sf = { ok: true, state: 'follower', reason: null };
  else if (failing.length > 0)
    sf = {
      ok: false,
      state: 'error',
      reason: failing.map((r) => `rule ${r.name}: ${r.lastError}`).join('; '),
    };
  else if (app.salesforce.state !== 'connected')
    sf = { ok: false, state: app.salesforce.state, reason: 'not connected yet' };
  else if (neverPolled.length > 0)
    sf = {
      ok: false,
      state: 'connected',
      reason: `no successful poll yet: ${neverPolled.map((r) => r.name).join(', ')}`,
    };
  else sf = { ok: true, state: 'connected', reason: null };

  // SMTP is usable when verified or a send went through since, and the circuit is closed.
  const circuit = app.dispatcher?.circuit ?? null;
  let smtp: ComponentReport;
  if (circuit === 'open')
    smtp = { ok: false, state: 'circuit-open', reason: app.smtp.lastError ?? 'SMTP authentication failed' };
  else if (app.smtp.state === 'ok') smtp = { ok: true, state: 'ok', reason: null };
  else if (app.smtp.state === 'unknown') smtp = { ok: false, state: 'unknown', reason: 'not verified yet' };
  else smtp = { ok: false, state: 'error', reason: app.smtp.lastError ?? 'SMTP unreachable' };

  const components = {
    store,
    salesforce: {
      ...sf,
      apiUsage: app.apiUsage ? { used: app.apiUsage.used, limit: app.apiUsage.limit } : null,
    },
    smtp: { ...smtp, circuit, checkedAt: app.smtp.checkedAt },
  };
  const problems = (['store', 'salesforce', 'smtp'] as const)
    .filter((k) => !components[k].ok)
    .map((k) => `${k}: ${components[k].reason}`);
  // An HTTP channel is judged by its circuit only: before its first send it is not known to fail.
  const channels: NonNullable<ReadinessReport['components']['channels']> = {};
  for (const [name, c] of app.channels ?? []) {
    const circuit = c.dispatcher.circuit;
    channels[name] =
      circuit === 'open'
        ? {
            ok: false,
            state: 'circuit-open',
            reason: c.status.lastError ?? 'circuit open',
            circuit,
            inFlight: c.dispatcher.inFlight,
          }
        : {
            ok: true,
            state: c.status.state,
            reason: c.status.state === 'error' ? c.status.lastError : null,
            circuit,
            inFlight: c.dispatcher.inFlight,
          };
    if (circuit === 'open') problems.push(`${name}: ${channels[name].reason}`);
  }
  const ready = !stopping && problems.length === 0;
  const c = outbox.ok ? outbox.counts : null;
  return {
    ready,
    status: ready ? 'ready' : 'not ready',
    reason: stopping ? 'stopping' : problems.length > 0 ? problems.join('; ') : null,
    components: Object.keys(channels).length > 0 ? { ...components, channels } : components,
    rules,
    cluster: app.leadership
      ? {
          replica: app.leadership.replicaId,
          replicas: app.leadership.replicas.map((r) => r.id),
          leaseRenewFailures: app.leadership.renewFailures,
        }
      : null,
    outbox: c
      ? { depth: c.pending + c.failed + c.sending, pending: c.pending, failed: c.failed, sending: c.sending }
      : null,
  };
}
