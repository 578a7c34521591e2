// Poll leadership per rule. Every replica heartbeats into the store and holds its share (rules /
// live replicas) of rule leases; the store's clock decides expiry.
// Leases are renewed every ttl/3. A replica trusts a lease only until ttl * 3/4 after it SENT the
// renewal that granted it (the store set expiry to its own now + ttl, which is later), so a
// replica that cannot renew stops leading before the lease can have expired elsewhere. Writes are
// fenced by the epoch in the store besides (commitBatch refuses a stale one): a replica that was
// paused past its lease cannot move a cursor, whatever its timers believe on waking.
import type { Logger } from 'pino';
import type { LeaseFence, ReplicaInfo, RuleLease, Store } from '../store/index.ts';
import { LeaseLostError } from '../store/index.ts';
import { coerceError } from '../util/errors.ts';

export type LeaseStore = Pick<Store, 'acquireLease' | 'releaseLease' | 'heartbeat' | 'removeReplica'>;

export interface LeadershipOptions {
  store: LeaseStore;
  replica: { id: string; host: string; pid: number };
  rules: string[];
  ttlMs: number;
  logger: Logger;
  /** this replica now leads the rule (a new epoch: read state afresh) */
  onGain?: (rule: string, lease: RuleLease) => void;
  /** this replica no longer leads the rule: stop polling and streaming it */
  onLose?: (rule: string, reason: string) => void;
  onRenewFailure?: (err: Error) => void;
  /** local clock, for tests */
  now?: () => number;
}

interface Held {
  epoch: number;
  expiresAt: string;
  /** local time until which this replica acts as leader */
  trustUntil: number;
}

/** The fraction of the ttl a granted lease is trusted for, from the moment its request was sent. */
const TRUST_FRACTION = 0.75;

export class Leadership {
  readonly replicaId: string;
  renewFailures = 0;
  lastError: string | null = null;
  /** replicas alive at the last heartbeat (this one included) */
  replicas: ReplicaInfo[] = [];
  private readonly o: LeadershipOptions;
  private readonly held = new Map<string, Held>();
  /** local time of the first heartbeat of the current unbroken run of them (none: broken) */
  private steadySince: number | undefined;
  private lastBeatAt: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private beating: Promise<void> | undefined;
  private stopped = false;

  constructor(o: LeadershipOptions) {
    this.o = o;
    this.replicaId = o.replica.id;
  }

  private now(): number {
    return this.o.now ? this.o.now() : Date.now();
  }

  /** The first round (heartbeat, leases) is awaited, so a lone replica leads from its first poll. */
  async start(): Promise<void> {
    await this.tick();
    // The heartbeat runs on its own beside the lease round: a lease statement that waits on a row
    // lock (this replica's own enqueue transaction holds the lease row while it waits on a
    // checkpoint lock) must not stop it, or the others would take this live replica for dead.
    this.timer = setInterval(
      () => {
        void this.beat();
        void this.tick();
      },
      Math.max(50, Math.floor(this.o.ttlMs / 3)),
    );
    this.timer.unref();
  }

  /** One heartbeat (concurrent calls share it): the live replicas, and this one's steadiness. */
  beat(): Promise<void> {
    this.beating ??= this.heartbeatOnce().finally(() => (this.beating = undefined));
    return this.beating;
  }

  private async heartbeatOnce(): Promise<void> {
    if (this.stopped) return;
    try {
      this.replicas = await this.o.store.heartbeat(this.o.replica, this.o.ttlMs);
      const at = this.now();
      // a gap longer than the ttl (paused, or cut off from the store) breaks the run
      if (this.lastBeatAt === undefined || at - this.lastBeatAt > this.o.ttlMs) this.steadySince = at;
      this.steadySince ??= at;
      this.lastBeatAt = at;
    } catch (e) {
      this.steadySince = undefined;
      this.renewFailed(e, 'heartbeat');
    }
  }

  /**
   * This replica has heartbeated without a break for at least one ttl, so every other live
   * replica has had the time to heartbeat as well: only then may it judge one whose heartbeat
   * ended to be dead. Right after a pause or an outage every heartbeat looks old, its own too.
   */
  canJudgeOthers(): boolean {
    const now = this.now();
    return (
      this.steadySince !== undefined &&
      now - this.steadySince >= this.o.ttlMs &&
      // and still beating: a heartbeat that hangs says the store is in trouble for us too
      this.lastBeatAt !== undefined &&
      now - this.lastBeatAt < this.o.ttlMs
    );
  }

  isLeader(rule: string): boolean {
    const h = this.held.get(rule);
    return h !== undefined && this.now() < h.trustUntil;
  }

  /** The fence for a checkpoint write; throws LeaseLostError when this replica does not lead the rule. */
  fence(rule: string): LeaseFence {
    const h = this.held.get(rule);
    if (!h || this.now() >= h.trustUntil) throw new LeaseLostError(rule, this.replicaId, h?.epoch ?? 0);
    return { holder: this.replicaId, epoch: h.epoch };
  }

  /** the lease this replica holds for the rule, if any (for status and readiness) */
  lease(rule: string): { epoch: number; expiresAt: string } | null {
    if (!this.isLeader(rule)) return null;
    const h = this.held.get(rule)!;
    return { epoch: h.epoch, expiresAt: h.expiresAt };
  }

  /** One round: heartbeat, renew what is held, hand over beyond the fair share, take free rules. */
  tick(): Promise<void> {
    this.ticking ??= this.round().finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  private async round(): Promise<void> {
    if (this.stopped) return;
    const { store, ttlMs } = this.o;
    const id = this.replicaId;
    await this.beat();
    const fair = this.share();

    for (const [rule, h] of [...this.held]) {
      if (this.stopped) return;
      const sentAt = this.now();
      let lease: RuleLease | null;
      try {
        lease = await store.acquireLease(rule, id, ttlMs);
      } catch (e) {
        this.renewFailed(e, `renew ${rule}`);
        if (!this.isLeader(rule)) this.lose(rule, 'lease not renewed in time (store unavailable)');
        continue;
      }
      if (!lease) this.lose(rule, 'another replica holds the lease');
      else if (lease.epoch !== h.epoch) {
        // our lease expired (a pause, a slow store) and we took it again: a new term
        this.lose(rule, 'lease expired before it was renewed');
        this.gain(rule, lease, sentAt);
      } else
        this.held.set(rule, {
          epoch: lease.epoch,
          expiresAt: lease.expiresAt,
          trustUntil: this.trust(sentAt),
        });
    }

    // Beyond the fair share (another replica joined): hand the surplus over.
    const mine = [...this.held.keys()].sort();
    for (const rule of mine.slice(fair)) {
      const h = this.held.get(rule)!;
      this.lose(rule, 'handed over to spread rules across replicas');
      try {
        await store.releaseLease(rule, { holder: id, epoch: h.epoch });
      } catch (e) {
        this.renewFailed(e, `release ${rule}`); // it expires on its own
      }
    }

    // Below it: take rules whose lease is free or expired, in an order of our own so that
    // replicas starting together do not all reach for the same rule first.
    const candidates = this.o.rules.filter((r) => !this.held.has(r));
    rotate(candidates, hash(id));
    for (const rule of candidates) {
      if (this.stopped || this.held.size >= fair) break;
      const sentAt = this.now();
      try {
        const lease = await store.acquireLease(rule, id, ttlMs);
        if (lease) this.gain(rule, lease, sentAt);
      } catch (e) {
        this.renewFailed(e, `acquire ${rule}`);
        break;
      }
    }
  }

  /**
   * How many rules this replica should lead: rules / live replicas, the remainder going to the
   * first replicas by id, so the shares add up to the rule count and every replica knows its own.
   */
  private share(): number {
    const ids = this.replicas.map((r) => r.id).sort();
    if (!ids.includes(this.replicaId)) return this.o.rules.length; // no heartbeat yet: alone
    const n = this.o.rules.length;
    const rank = ids.indexOf(this.replicaId);
    return Math.floor(n / ids.length) + (rank < n % ids.length ? 1 : 0);
  }

  private trust(sentAt: number): number {
    return sentAt + Math.floor(this.o.ttlMs * TRUST_FRACTION);
  }

  private gain(rule: string, lease: RuleLease, sentAt: number): void {
    this.held.set(rule, { epoch: lease.epoch, expiresAt: lease.expiresAt, trustUntil: this.trust(sentAt) });
    this.o.logger.info({ rule, epoch: lease.epoch, expiresAt: lease.expiresAt }, 'leading rule');
    this.o.onGain?.(rule, lease);
  }

  private lose(rule: string, reason: string): void {
    const h = this.held.get(rule);
    if (!h) return;
    this.held.delete(rule);
    this.o.logger.warn({ rule, epoch: h.epoch, reason }, 'no longer leading rule');
    this.o.onLose?.(rule, reason);
  }

  private renewFailed(e: unknown, what: string): void {
    const err = coerceError(e);
    this.renewFailures++;
    this.lastError = `${what}: ${err.message}`;
    this.o.logger.warn({ err, what }, 'lease renewal failed');
    this.o.onRenewFailure?.(err);
  }

  /** Stop renewing and give every lease up (a clean stop hands the rules over at once). Safe twice. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.ticking;
    await this.beating;
    for (const rule of [...this.held.keys()]) this.lose(rule, 'stopping');
    try {
      await this.o.store.removeReplica(this.replicaId);
    } catch (e) {
      this.o.logger.warn(
        { err: coerceError(e) },
        'could not hand leases over on stop; they expire on their own',
      );
    }
  }
}

function hash(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) >>> 0;
  return h;
}

function rotate<T>(xs: T[], by: number): void {
  if (xs.length === 0) return;
  const k = by % xs.length;
  xs.push(...xs.splice(0, k));
}
