// Stream mode: Change Data Capture events (/data/<Object>ChangeEvent over CometD) for low
// latency, with the poller kept as the safety net. The replay id is stored with the enqueued rows
// in one transaction, so a restart resumes after the last event processed.
//
// Salesforce keeps CDC events 72 hours. A stored replay id that has aged out makes the subscribe
// fail with `400::The replayId {X} you provided was invalid...`, which jsforce's Replay extension
// does not surface (jsforce issues 1061, 1709): we watch /meta/subscribe replies ourselves and
// then reconcile by polling from the last checkpoint before subscribing again for new events.
import type { Connection } from 'jsforce';
import { StreamingExtension } from 'jsforce/lib/api/streaming.js';
import type { Logger } from 'pino';
import { coerceError } from '../../util/errors.ts';
import type { RulePoller } from './poller.ts';
import type { UpdatePoller } from './update-poller.ts';

interface BayeuxMessage {
  channel?: string;
  successful?: boolean;
  error?: string;
  subscription?: string;
  data?: unknown;
}

interface ChangeEvent {
  payload?: { ChangeEventHeader?: { changeType?: string; recordIds?: unknown; entityName?: string } };
  event?: { replayId?: number | string };
}

interface FayeClient {
  subscribe(
    channel: string,
    listener: (message: unknown) => void,
  ): {
    then(ok: () => void, fail: (err: unknown) => void): unknown;
    cancel(): void;
  };
  disconnect(): void;
}

export interface StreamerOptions {
  poller: RulePoller | UpdatePoller;
  conn: Connection;
  logger: Logger;
  /** poll the rule now and wait (reconciliation from the last checkpoint) */
  reconcile: () => Promise<void>;
  /** authenticate again after the session expired */
  reauthenticate: () => Promise<void>;
  /** flush a batch of events after this long (default 200 ms) */
  batchMs?: number;
}

export function isInvalidReplayError(error: string | undefined): boolean {
  return typeof error === 'string' && /^400::The replayId .* you provided was invalid/.test(error);
}

export class RuleStreamer {
  readonly channel: string;
  state: 'stopped' | 'subscribing' | 'subscribed' | 'reconciling' | 'error' = 'stopped';
  lastEventAt: string | null = null;
  private readonly o: StreamerOptions;
  private client: FayeClient | undefined;
  private pending: Array<{ ids: string[]; replayId: string | null; gap: boolean }> = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private lastReplayId: string | null = null;
  private stopped = false;
  private recovering = false;

  constructor(o: StreamerOptions) {
    this.o = o;
    this.channel = `/data/${o.poller.rule.object}ChangeEvent`;
  }

  async start(): Promise<void> {
    this.stopped = false;
    const cp = await this.o.poller.init();
    this.lastReplayId = cp.replayId;
    this.subscribe(cp.replayId === null ? -1 : Number(cp.replayId));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.state = 'stopped';
    this.client?.disconnect();
    this.client = undefined;
    if (this.flushTimer) clearTimeout(this.flushTimer);
    await this.flushNow();
  }

  private subscribe(replayFrom: number): void {
    if (this.stopped) return;
    this.client?.disconnect();
    this.state = 'subscribing';
    const log = this.o.logger;
    const watchSubscribe = {
      incoming: (message: BayeuxMessage, callback: (m: BayeuxMessage) => void) => {
        if (message.channel === '/meta/subscribe' && message.successful === false) {
          this.onSubscribeFailed(message.error);
        }
        callback(message);
      },
    };
    const client = this.o.conn.streaming.createClient([
      new StreamingExtension.Replay(this.channel, replayFrom),
      new StreamingExtension.AuthFailure(() => this.onAuthFailure()),
      watchSubscribe,
    ]) as unknown as FayeClient;
    this.client = client;
    const sub = client.subscribe(this.channel, (message) => this.onEvent(message as ChangeEvent));
    sub.then(
      () => {
        if (this.client === client) this.state = 'subscribed';
        log.info({ channel: this.channel, replayFrom }, 'subscribed to change events');
      },
      (err: unknown) => log.warn({ err: coerceError(err), channel: this.channel }, 'subscribe failed'),
    );
  }

  private onEvent(message: ChangeEvent): void {
    const header = message.payload?.ChangeEventHeader;
    const replay = message.event?.replayId;
    const replayId = replay === undefined ? null : String(replay);
    this.lastEventAt = new Date().toISOString();
    const type = header?.changeType ?? '';
    const ids = Array.isArray(header?.recordIds)
      ? header.recordIds.filter((x): x is string => typeof x === 'string')
      : [];
    // GAP_* and overflow events carry no data we can trust: reconcile by polling instead.
    const gap = type.startsWith('GAP_') || type === 'GAP_OVERFLOW';
    // an updated rule reads UPDATE events, and CREATE ones as each record's first sight (baseline);
    // one event may name several records (a transaction's identical changes): all are read
    const wanted =
      this.o.poller.rule.on === 'updated'
        ? type === 'CREATE' || type === 'UPDATE' || type === 'UNDELETE'
        : type === 'CREATE' || type === 'GAP_CREATE';
    this.pending.push({ ids: wanted ? ids : [], replayId, gap });
    this.flushTimer ??= setTimeout(() => {
      this.flushTimer = undefined;
      void this.flushNow();
    }, this.o.batchMs ?? 200);
  }

  private flushNow(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      const batch = this.pending.splice(0);
      if (batch.length === 0) return;
      const ids = batch.flatMap((b) => b.ids);
      const replayId =
        batch
          .map((b) => b.replayId)
          .filter((r) => r !== null)
          .at(-1) ?? this.lastReplayId;
      try {
        if (batch.some((b) => b.gap)) await this.o.reconcile();
        const inserted = await this.o.poller.enqueueByIds(ids, replayId);
        this.lastReplayId = replayId;
        this.o.logger.info(
          { events: batch.length, records: ids.length, enqueued: inserted, replayId },
          'change events',
        );
      } catch (e) {
        // Nothing was committed: the next poll (the safety net) or a re-delivery picks them up.
        this.o.logger.error(
          { err: coerceError(e) },
          'change events not processed; the poll safety net will catch them',
        );
      }
    });
    return this.flushing;
  }

  private onSubscribeFailed(error: string | undefined): void {
    if (this.stopped || this.recovering) return;
    this.state = 'error';
    if (!isInvalidReplayError(error)) {
      this.o.logger.error({ error, channel: this.channel }, 'subscribe refused');
      return;
    }
    this.recovering = true;
    this.o.logger.warn(
      { error, channel: this.channel },
      'stored replay id is no longer retained: reconciling by poll from the last checkpoint, then subscribing for new events',
    );
    this.client?.disconnect();
    this.client = undefined;
    void (async () => {
      try {
        this.state = 'reconciling';
        await this.o.reconcile();
        this.lastReplayId = null;
        this.subscribe(-1);
      } catch (e) {
        this.o.logger.error({ err: coerceError(e) }, 'reconciliation failed; retrying subscribe later');
        setTimeout(() => this.subscribe(-1), 5000).unref();
      } finally {
        this.recovering = false;
      }
    })();
  }

  private onAuthFailure(): void {
    if (this.stopped || this.recovering) return;
    this.recovering = true;
    this.state = 'error';
    this.o.logger.warn({ channel: this.channel }, 'streaming session expired; authenticating again');
    this.client?.disconnect();
    this.client = undefined;
    void (async () => {
      try {
        await this.o.reauthenticate();
        this.subscribe(this.lastReplayId === null ? -1 : Number(this.lastReplayId));
      } catch (e) {
        this.o.logger.error({ err: coerceError(e) }, 'could not authenticate for streaming; retrying');
        setTimeout(
          () => this.subscribe(this.lastReplayId === null ? -1 : Number(this.lastReplayId)),
          5000,
        ).unref();
      } finally {
        this.recovering = false;
      }
    })();
  }
}
