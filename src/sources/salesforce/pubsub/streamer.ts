// Stream mode over the Pub/Sub API (gRPC): Change Data Capture events of /data/<Object>ChangeEvent,
// the same outward shape as the CometD RuleStreamer (start/stop/state; batches of record ids plus
// the replay id go to the poller's enqueueByIds, so the enrichment query, the ledger and the one
// transaction are the same), with the poller as the safety net.
//
// Discipline (Pub/Sub API guide, "Subscribe RPC Method", "Flow Control", "Keepalive Behavior",
// "Retry Long-Lived RPC Calls After an Error Occurs"):
// - subscribe CUSTOM after the stored replay id (bytes, stored base64 with the rows they produced),
//   LATEST when none is stored yet;
// - credits: 100 at the start, then as many as were committed, only once they are committed
//   (pooled to half the window, or at once when the server holds none), so the server never holds
//   more than 100 and never more than we have stored room for; a
//   keepalive (empty batch) moves the stored replay id to its latest_replay_id;
// - never a silent jump: a rejected replay id, an ended stream, UNAVAILABLE, any other error or
//   silence past the keepalive reconciles by poll from the last checkpoint, then resubscribes
//   (after a rejected id: from LATEST, the poll having covered the gap); UNAUTHENTICATED
//   authenticates again and resumes from the stored replay id; retries back off with jitter.
import * as grpc from '@grpc/grpc-js';
import type { Connection } from 'jsforce';
import type { Logger } from 'pino';
import { coerceError } from '../../../util/errors.ts';
import type { RulePoller } from '../poller.ts';
import type { UpdatePoller } from '../update-poller.ts';
import { SchemaCache } from './avro.ts';
import type { DecodedChange } from './avro.ts';
import { errorCodeOf, pubSubService } from './proto.ts';
import type { FetchRequest, FetchResponse, PubSubClient, PubSubClientConstructor } from './proto.ts';

/** Salesforce's cap on outstanding requested events per subscription. */
export const MAX_CREDITS = 100;

export type ReconnectReason =
  'auth' | 'replay_rejected' | 'ended' | 'unavailable' | 'silence' | 'commit_failed' | 'error';

export interface PubSubStreamerOptions {
  poller: RulePoller | UpdatePoller;
  conn: Connection;
  logger: Logger;
  /** host:port of the Pub/Sub API */
  endpoint: string;
  tls: boolean;
  /** poll the rule now and wait (reconciliation from the last checkpoint) */
  reconcile: () => Promise<void>;
  /** authenticate again after the session expired */
  reauthenticate: () => Promise<void>;
  /**
   * Store a committed batch: the decoded events (CREATE and UPDATE with their changedFields as
   * names) and the replay id to store with the rows. Default: the CREATE events' record ids to
   * the poller's enqueueByIds. An empty list is a keepalive: only the replay id moves.
   */
  deliver?: (changes: DecodedChange[], replayId: string) => Promise<void>;
  onReconnect?: (reason: ReconnectReason) => void;
  /** no message for this long = a dead stream; default 300 s (keepalives come within 270 s) */
  silenceMs?: number;
  /** reconnect backoff, default 500 ms doubling to 30 s, with jitter */
  backoff?: { minMs?: number; maxMs?: number };
}

interface Outcome {
  reason: ReconnectReason;
  code?: number;
  errorCode?: string;
  details?: string;
  receivedAny: boolean;
}

const CREATES = new Set(['CREATE', 'GAP_CREATE']);
const UPDATES = new Set(['CREATE', 'UPDATE', 'UNDELETE']);

export class PubSubStreamer {
  readonly channel: string;
  state: 'stopped' | 'subscribing' | 'subscribed' | 'reconciling' | 'error' = 'stopped';
  lastEventAt: string | null = null;
  /** this stream's credits: granted to the server, events received, events committed */
  credits = { granted: 0, received: 0, committed: 0 };
  /** committed events not yet granted back */
  private owed = 0;
  /** responses received while a batch was being stored: the next batch takes them all */
  private queued: FetchResponse[] = [];
  private readonly o: PubSubStreamerOptions;
  private readonly schemas: SchemaCache;
  private client: PubSubClient | undefined;
  private call: grpc.ClientDuplexStream<FetchRequest, FetchResponse> | undefined;
  private loop: Promise<void> | undefined;
  private chain: Promise<void> = Promise.resolve();
  private lastReplayId: string | null = null;
  private tenantId: string | undefined;
  private stopped = true;
  private wake: (() => void) | undefined;

  constructor(o: PubSubStreamerOptions) {
    this.o = o;
    this.channel = `/data/${o.poller.rule.object}ChangeEvent`;
    this.schemas = new SchemaCache((id) => this.fetchSchema(id));
  }

  async start(): Promise<void> {
    if (!this.stopped) return;
    this.stopped = false;
    this.state = 'subscribing';
    const cp = await this.o.poller.init();
    this.lastReplayId = cp.replayId;
    const Client = pubSubService() as unknown as PubSubClientConstructor;
    this.client = new Client(
      this.o.endpoint,
      this.o.tls ? grpc.credentials.createSsl() : grpc.credentials.createInsecure(),
      { 'grpc.max_receive_message_length': 32 * 1024 * 1024, 'grpc.keepalive_time_ms': 60_000 },
    );
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.state = 'stopped';
    this.call?.cancel();
    this.wake?.();
    await this.loop;
    await this.chain;
    this.client?.close();
    this.client = undefined;
  }

  private async run(): Promise<void> {
    const log = this.o.logger;
    let attempt = 0;
    while (!this.stopped) {
      const out = await this.subscribeOnce();
      await this.chain;
      if (this.stopped) break;
      if (out.receivedAny) attempt = 0;
      this.state = 'error';
      this.o.onReconnect?.(out.reason);
      log.warn(
        {
          reason: out.reason,
          code: out.code,
          errorCode: out.errorCode,
          details: out.details,
          channel: this.channel,
        },
        out.reason === 'replay_rejected'
          ? 'stored replay id was rejected: reconciling by poll from the last checkpoint, then subscribing for new events'
          : out.reason === 'auth'
            ? 'Pub/Sub session not accepted; authenticating again, then resuming from the stored replay id'
            : 'Pub/Sub stream closed; reconciling by poll from the last checkpoint, then resubscribing',
      );
      try {
        if (out.reason === 'auth') {
          await this.o.reauthenticate();
        } else {
          this.state = 'reconciling';
          await this.o.reconcile();
          if (out.reason === 'replay_rejected') this.lastReplayId = null;
        }
      } catch (e) {
        log.error(
          { err: coerceError(e), channel: this.channel },
          'recovery step failed; retrying after backoff',
        );
      }
      await this.backoff(attempt++);
    }
  }

  private backoff(attempt: number): Promise<void> {
    const min = this.o.backoff?.minMs ?? 500;
    const max = this.o.backoff?.maxMs ?? 30_000;
    const ms = Math.min(max, min * 2 ** Math.min(attempt, 20)) * (0.5 + Math.random() / 2);
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = done;
    });
  }

  private async metadata(): Promise<grpc.Metadata> {
    const conn = this.o.conn;
    this.tenantId ??= conn.userInfo?.organizationId ?? (await conn.identity()).organization_id;
    const md = new grpc.Metadata();
    md.set('accesstoken', conn.accessToken ?? '');
    md.set('instanceurl', conn.instanceUrl);
    md.set('tenantid', this.tenantId);
    return md;
  }

  private unary<T>(
    method: 'GetTopic' | 'GetSchema',
    req: { topic_name: string } | { schema_id: string },
    md: grpc.Metadata,
  ): Promise<T> {
    return new Promise((resolve, reject) => {
      const cb = (err: grpc.ServiceError | null, res?: T) =>
        err || !res ? reject(err ?? new Error('empty reply')) : resolve(res);
      const opts = { deadline: Date.now() + 30_000 };
      if (method === 'GetTopic') this.client!.GetTopic(req as { topic_name: string }, md, opts, cb as never);
      else this.client!.GetSchema(req as { schema_id: string }, md, opts, cb as never);
    });
  }

  private async fetchSchema(schemaId: string): Promise<string> {
    const info = await this.unary<{ schema_json: string }>(
      'GetSchema',
      { schema_id: schemaId },
      await this.metadata(),
    );
    return info.schema_json;
  }

  private subscribeOnce(): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      let receivedAny = false;
      let done = false;
      let watchdog: NodeJS.Timeout | undefined;
      const finish = (o: Omit<Outcome, 'receivedAny'>) => {
        if (done) return;
        done = true;
        clearTimeout(watchdog);
        resolve({ ...o, receivedAny });
      };
      const silenceMs = this.o.silenceMs ?? 300_000;
      void (async () => {
        let md: grpc.Metadata;
        try {
          md = await this.metadata();
          const topic = await this.unary<{ can_subscribe: boolean }>(
            'GetTopic',
            { topic_name: this.channel },
            md,
          );
          if (!topic.can_subscribe)
            throw new Error(`${this.channel}: subscribing is not allowed for this user`);
        } catch (e) {
          return finish(classify(e));
        }
        if (this.stopped) return finish({ reason: 'ended' });
        const call = this.client!.Subscribe(md);
        this.call = call;
        this.credits = { granted: 0, received: 0, committed: 0 };
        this.owed = 0;
        const arm = () => {
          clearTimeout(watchdog);
          watchdog = setTimeout(() => {
            finish({ reason: 'silence', details: `no message for ${silenceMs} ms` });
            call.cancel();
          }, silenceMs);
        };
        call.on('data', (res: FetchResponse) => {
          receivedAny = true;
          arm();
          this.state = 'subscribed';
          this.queued.push(res);
          this.chain = this.chain.then(() => this.process(call, finish));
        });
        call.on('error', (err: unknown) => finish(classify(err)));
        call.on('status', (s: grpc.StatusObject) => {
          if (s.code === grpc.status.OK) finish({ reason: 'ended', details: s.details });
        });
        call.on('end', () => finish({ reason: 'ended' }));
        const first: FetchRequest = { topic_name: this.channel, num_requested: MAX_CREDITS };
        if (this.lastReplayId) {
          first.replay_preset = 'CUSTOM';
          first.replay_id = Buffer.from(this.lastReplayId, 'base64');
        } else {
          first.replay_preset = 'LATEST';
        }
        call.write(first);
        this.credits.granted += MAX_CREDITS;
        arm();
        this.o.logger.info(
          { channel: this.channel, api: 'pubsub', replay: first.replay_preset, replayId: this.lastReplayId },
          'subscribed to change events',
        );
      })();
    });
  }

  private async process(
    call: grpc.ClientDuplexStream<FetchRequest, FetchResponse>,
    finish: (o: Omit<Outcome, 'receivedAny'>) => void,
  ): Promise<void> {
    // Everything that arrived while the previous batch was stored is one batch: one enrichment
    // query and one commit, so a slow store makes batches bigger rather than a queue longer.
    const responses = this.queued.splice(0);
    if (responses.length === 0) return;
    const log = this.o.logger;
    const deliver = this.o.deliver ?? ((changes, replayId) => this.enqueueChanges(changes, replayId));
    const events = responses.flatMap((r) => r.events ?? []);
    if (events.length === 0) {
      // keepalive: nothing is in flight (batches are processed in order), so the position is ours
      const last = responses[responses.length - 1]!;
      const latest = last.latest_replay_id?.length ? last.latest_replay_id.toString('base64') : null;
      if (!latest || latest === this.lastReplayId) return;
      try {
        await deliver([], latest);
        this.lastReplayId = latest;
      } catch (e) {
        log.warn({ err: coerceError(e) }, 'keepalive replay id not stored; kept the previous one');
      }
      return;
    }
    this.credits.received += events.length;
    this.lastEventAt = new Date().toISOString();
    const replayId = events[events.length - 1]!.replay_id.toString('base64');
    const changes: DecodedChange[] = [];
    let gap = false;
    for (const e of events) {
      try {
        const c = await this.schemas.decode(e.event.schema_id, e.event.payload, e.replay_id);
        if (c.changeType.startsWith('GAP_')) gap = true;
        changes.push(c);
      } catch (err) {
        // an event we cannot read carries nothing we can trust: the poll covers it
        gap = true;
        log.warn(
          { err: coerceError(err), eventId: e.event.id },
          'change event not decodable; reconciling by poll',
        );
      }
    }
    try {
      if (gap) await this.o.reconcile();
      await deliver(changes, replayId);
    } catch (e) {
      // Nothing was committed: resubscribe from the stored replay id and get these again.
      log.error({ err: coerceError(e) }, 'change events not stored; resubscribing from the stored replay id');
      finish({ reason: 'commit_failed', details: coerceError(e).message });
      call.cancel();
      return;
    }
    this.lastReplayId = replayId;
    this.credits.committed += events.length;
    this.owed += events.length;
    // Grants are pooled: refilling one credit per one-event batch would keep batches at one event
    // (a round trip each) after a burst. Granted once half the window is owed, or at once when the
    // server holds none, so the stream never stalls and never holds more than was committed.
    const outstanding = this.credits.granted - this.credits.received;
    if (this.call === call && !this.stopped && (outstanding === 0 || this.owed >= MAX_CREDITS / 2)) {
      call.write({ num_requested: this.owed });
      this.credits.granted += this.owed;
      this.owed = 0;
    }
  }

  private async enqueueChanges(changes: DecodedChange[], replayId: string): Promise<void> {
    // an updated rule reads UPDATE events, and CREATE ones as each record's first sight (its
    // baseline), as the CometD streamer does; every recordId of an event is read
    const wanted = this.o.poller.rule.on === 'updated' ? UPDATES : CREATES;
    const ids = changes.filter((c) => wanted.has(c.changeType)).flatMap((c) => c.recordIds);
    const inserted = await this.o.poller.enqueueByIds(ids, replayId);
    if (changes.length > 0) {
      this.o.logger.info(
        { events: changes.length, records: ids.length, enqueued: inserted, replayId, api: 'pubsub' },
        'change events',
      );
    }
  }
}

function classify(e: unknown): Omit<Outcome, 'receivedAny'> {
  const err = e as Partial<grpc.ServiceError>;
  const code = typeof err.code === 'number' ? err.code : undefined;
  const errorCode = errorCodeOf(err);
  const details = typeof err.details === 'string' ? err.details : coerceError(e).message;
  const base = { code, errorCode, details };
  if (code === grpc.status.UNAUTHENTICATED) return { reason: 'auth', ...base };
  if (errorCode?.includes('replayid') || (code === grpc.status.INVALID_ARGUMENT && /replay/i.test(details)))
    return { reason: 'replay_rejected', ...base };
  if (code === grpc.status.UNAVAILABLE) return { reason: 'unavailable', ...base };
  return { reason: 'error', ...base };
}
