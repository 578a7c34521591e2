// The emulated Pub/Sub API (gRPC, plaintext on loopback): GetTopic, GetSchema and Subscribe for
// the Change Data Capture topics /data/<Object>ChangeEvent of every object the org knows, with
// the documented subscription behaviour (Pub/Sub API guide, "Subscribe RPC Method", "Flow
// Control", "Keepalive Behavior", "Replaying an Event Stream"):
// - the first FetchRequest names the topic and the replay start (LATEST, EARLIEST, or CUSTOM after
//   a replay id); later ones only add credits (num_requested), at most 100 outstanding;
// - never more events than requested; events after the cursor go out as credits allow;
// - an empty FetchResponse with latest_replay_id as a keepalive when nothing was sent for
//   `keepaliveMs` (Salesforce: within 270 s);
// - a stream whose client holds zero credits for `idleTimeoutMs` (Salesforce: 60 s) is closed;
// - a replay id outside the retained window is refused with INVALID_ARGUMENT and the
//   replayid.corrupted error code; a session that is not (or no longer) valid with UNAUTHENTICATED.
// Replay ids are 8 bytes, big-endian, from one counter for the whole CDC bus (opaque to clients).
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { pubSubService } from '../../sources/salesforce/pubsub/proto.ts';
import type { FetchRequest, FetchResponse, ReplayPreset } from '../../sources/salesforce/pubsub/proto.ts';
import type { ChangeType } from '../cometd-events.ts';
import type { ChangeInfo, Org, OrgEvent, OrgListener, OrgRecord } from '../org.ts';
import { ERROR_CODES, pubSubError } from './errors.ts';
import type { PubSubError } from './errors.ts';
import { buildObjectSchema, encodeChange } from './schemas.ts';
import type { ObjectSchema } from './schemas.ts';

export const MAX_OUTSTANDING = 100;
const NO_CDC = new Set(['PushTopic']);

export interface PubSubEmulatorOptions {
  org: Org;
  orgId: string;
  /** the instance URL clients must send as `instanceurl` */
  instanceUrl: () => string;
  validateToken: (token: string) => boolean;
  now: () => number;
  host?: string;
  /** default 0: any free port */
  port?: number;
  /** default 270 s */
  keepaliveMs?: number;
  /** default 60 s */
  idleTimeoutMs?: number;
  /** default 72 h */
  retentionMs?: number;
  /** bound on retained events; the oldest go first. Default 100 000 */
  maxRetained?: number;
  log?: (line: string) => void;
}

interface BusEvent {
  replayId: number;
  at: number;
  topic: string;
  schemaId: string;
  id: string;
  payload: Buffer;
}

/** What one Subscribe stream did, for tests: credits asked, events sent. */
export interface SubscriptionStats {
  id: string;
  topic: string;
  requested: number;
  delivered: number;
  /** the most credits the server held for this stream at any time */
  maxOutstanding: number;
  open: boolean;
  closedBy?: string;
}

interface Subscription {
  stats: SubscriptionStats;
  call: grpc.ServerDuplexStream<FetchRequest, FetchResponse>;
  token: string;
  topic: string;
  cursor: number;
  credits: number;
  lastSentAt: number;
  zeroSince: number | null;
  timer: NodeJS.Timeout;
}

export function replayIdBytes(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

function replayIdNumber(b: Buffer): number | null {
  if (b.length !== 8) return null;
  const n = b.readBigUInt64BE();
  return n > BigInt(Number.MAX_SAFE_INTEGER) ? null : Number(n);
}

export class PubSubEmulator {
  endpoint = '';
  private readonly o: PubSubEmulatorOptions;
  private readonly server = new grpc.Server();
  private readonly bus: BusEvent[] = [];
  private lastReplayId = 0;
  private readonly schemas = new Map<string, ObjectSchema>();
  private readonly subs = new Set<Subscription>();
  private readonly history: SubscriptionStats[] = [];
  private readonly listeners: Array<[OrgEvent, OrgListener]> = [];
  private readonly failNext: PubSubError[] = [];
  private rejectReplays = 0;
  private readonly lastHeaders = new Map<string, Record<string, unknown>>();
  private closed = false;

  constructor(o: PubSubEmulatorOptions) {
    this.o = o;
    const service = pubSubService().service;
    const unsupported = (_call: unknown, cb: (err: PubSubError) => void) =>
      cb(pubSubError(grpc.status.UNIMPLEMENTED, ERROR_CODES.unsupported, 'Publishing is not emulated.'));
    this.server.addService(service, {
      GetTopic: (
        call: grpc.ServerUnaryCall<{ topic_name: string }, unknown>,
        cb: grpc.sendUnaryData<unknown>,
      ) => this.getTopic(call, cb),
      GetSchema: (
        call: grpc.ServerUnaryCall<{ schema_id: string }, unknown>,
        cb: grpc.sendUnaryData<unknown>,
      ) => this.getSchema(call, cb),
      Subscribe: (call: grpc.ServerDuplexStream<FetchRequest, FetchResponse>) => this.subscribe(call),
      Publish: unsupported,
      PublishStream: (call: grpc.ServerDuplexStream<unknown, unknown>) =>
        call.emit(
          'error',
          pubSubError(grpc.status.UNIMPLEMENTED, ERROR_CODES.unsupported, 'Publishing is not emulated.'),
        ),
      ManagedSubscribe: (call: grpc.ServerDuplexStream<unknown, unknown>) =>
        call.emit(
          'error',
          pubSubError(
            grpc.status.UNIMPLEMENTED,
            ERROR_CODES.unsupported,
            'Managed subscriptions are not emulated.',
          ),
        ),
    });
    this.listen('insert', (r, c) => this.onChange('CREATE', r, c));
    this.listen('update', (r, c) => this.onChange('UPDATE', r, c));
    this.listen('delete', (r, c) => this.onChange('DELETE', r, c));
    this.listen('undelete', (r, c) => this.onChange('UNDELETE', r, c));
  }

  async start(): Promise<void> {
    const host = this.o.host ?? '127.0.0.1';
    const port = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(
        `${host}:${this.o.port ?? 0}`,
        grpc.ServerCredentials.createInsecure(),
        (err, p) => (err ? reject(err) : resolve(p)),
      );
    });
    this.endpoint = `${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`;
  }

  // ------------------------------------------------------------------------------ faults, tests

  /** Ends every open Subscribe stream with status OK, as a server-side stream end. */
  endStreams(): number {
    return this.closeAll((s) => {
      s.call.end();
      return 'ended';
    });
  }

  /** Fails every open Subscribe stream with the status (default UNAVAILABLE). */
  failStreams(
    code: grpc.status = grpc.status.UNAVAILABLE,
    details = 'Http2StreamException: The HTTP/2 server reset the stream.',
  ): number {
    return this.closeAll((s) => {
      s.call.emit('error', { code, details, metadata: new grpc.Metadata() });
      return grpc.status[code];
    });
  }

  /** The next `count` Subscribe calls fail at once with the status (default UNAVAILABLE). */
  failNextSubscribes(count = 1, code: grpc.status = grpc.status.UNAVAILABLE): void {
    for (let i = 0; i < count; i++)
      this.failNext.push({
        code,
        details: 'This application is down for maintenance',
        metadata: new grpc.Metadata(),
      });
  }

  /** The next `count` CUSTOM subscriptions are refused as if their replay id were corrupted. */
  rejectNextReplayIds(count = 1): void {
    this.rejectReplays += count;
  }

  /** Drops retained events older than `olderThanMs` (default: all), as retention would. */
  ageOut(olderThanMs?: number): void {
    const cutoff = olderThanMs === undefined ? Number.POSITIVE_INFINITY : this.o.now() - olderThanMs;
    let n = 0;
    while (n < this.bus.length && this.bus[n]!.at < cutoff) n++;
    this.bus.splice(0, n);
  }

  /** Every Subscribe stream so far, oldest first. */
  subscriptions(): SubscriptionStats[] {
    return this.history.map((s) => ({ ...s }));
  }

  /** The header of the last change event built for the object, as encoded (for tests). */
  lastHeader(object: string): Record<string, unknown> | undefined {
    return this.lastHeaders.get(object);
  }

  schemaFor(object: string): ObjectSchema | undefined {
    return this.schema(object);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const [event, l] of this.listeners) this.o.org.off(event, l);
    this.closeAll((s) => {
      s.call.end();
      return 'shutdown';
    });
    this.server.forceShutdown();
  }

  // ------------------------------------------------------------------------------ RPCs

  private authError(metadata: grpc.Metadata): PubSubError | undefined {
    const token = String(metadata.get('accesstoken')[0] ?? '');
    const instanceUrl = String(metadata.get('instanceurl')[0] ?? '').replace(/\/+$/, '');
    const tenant = String(metadata.get('tenantid')[0] ?? '');
    if (
      !token ||
      !this.o.validateToken(token) ||
      tenant !== this.o.orgId ||
      instanceUrl !== this.o.instanceUrl()
    ) {
      return pubSubError(
        grpc.status.UNAUTHENTICATED,
        ERROR_CODES.auth,
        'An error occurred while trying to authenticate. Check the accesstoken, instanceurl and tenantid headers.',
      );
    }
    return undefined;
  }

  private schema(object: string): ObjectSchema | undefined {
    let s = this.schemas.get(object);
    if (!s) {
      s = buildObjectSchema(this.o.org, object);
      if (s) this.schemas.set(object, s);
    }
    return s;
  }

  /** The schema of a topic name, if it is a CDC topic of a known object (names are case-sensitive). */
  private topicSchema(topic: string): ObjectSchema | undefined {
    const m = /^\/data\/([A-Za-z0-9_]+)ChangeEvent$/.exec(topic);
    if (!m || NO_CDC.has(m[1]!)) return undefined;
    const def = this.o.org.describe(m[1]!);
    if (!def || def.name !== m[1]) return undefined;
    return this.schema(def.name);
  }

  private getTopic(
    call: grpc.ServerUnaryCall<{ topic_name: string }, unknown>,
    cb: grpc.sendUnaryData<unknown>,
  ): void {
    const denied = this.authError(call.metadata);
    if (denied) return cb(denied);
    const s = this.topicSchema(call.request.topic_name);
    if (!s) return cb(this.topicNotFound(call.request.topic_name));
    cb(null, {
      topic_name: s.topic,
      tenant_guid: this.o.orgId,
      can_publish: false,
      can_subscribe: true,
      schema_id: s.schemaId,
      rpc_id: randomUUID(),
    });
  }

  private getSchema(
    call: grpc.ServerUnaryCall<{ schema_id: string }, unknown>,
    cb: grpc.sendUnaryData<unknown>,
  ): void {
    const denied = this.authError(call.metadata);
    if (denied) return cb(denied);
    const s = [...this.schemas.values()].find((x) => x.schemaId === call.request.schema_id);
    if (!s) {
      return cb(
        pubSubError(
          grpc.status.INVALID_ARGUMENT,
          ERROR_CODES.schemaNotFound,
          `Schema ${call.request.schema_id} not found.`,
        ),
      );
    }
    cb(null, { schema_json: s.schemaJson, schema_id: s.schemaId, rpc_id: randomUUID() });
  }

  private topicNotFound(topic: string): PubSubError {
    return pubSubError(
      grpc.status.NOT_FOUND,
      ERROR_CODES.topicNotFound,
      `Topic ${topic} not found or not enabled for Change Data Capture.`,
    );
  }

  private subscribe(call: grpc.ServerDuplexStream<FetchRequest, FetchResponse>): void {
    const fail = (err: PubSubError) => {
      call.emit('error', err);
    };
    const queued = this.failNext.shift();
    if (queued) return fail(queued);
    const denied = this.authError(call.metadata);
    if (denied) return fail(denied);
    let sub: Subscription | undefined;
    call.on('data', (req: FetchRequest) => {
      if (!sub) {
        sub = this.open(call, req, fail);
        return;
      }
      if (req.topic_name && req.topic_name !== sub.topic) {
        this.close1(sub, 'topic mismatch');
        return fail(
          pubSubError(
            grpc.status.INVALID_ARGUMENT,
            ERROR_CODES.topicMismatch,
            'The topic of a subscription cannot change.',
          ),
        );
      }
      this.grant(sub, req.num_requested ?? 0);
    });
    const gone = () => {
      if (sub) this.close1(sub, 'client');
    };
    call.on('end', () => {
      gone();
      call.end();
    });
    call.on('cancelled', gone);
    call.on('error', gone);
  }

  private open(
    call: grpc.ServerDuplexStream<FetchRequest, FetchResponse>,
    req: FetchRequest,
    fail: (err: PubSubError) => void,
  ): Subscription | undefined {
    const topic = req.topic_name ?? '';
    const schema = this.topicSchema(topic);
    if (!schema) {
      fail(this.topicNotFound(topic));
      return undefined;
    }
    const preset: ReplayPreset = req.replay_preset ?? 'LATEST';
    let cursor: number;
    if (preset === 'EARLIEST') cursor = (this.bus[0]?.replayId ?? this.lastReplayId + 1) - 1;
    else if (preset === 'CUSTOM') {
      const n = replayIdNumber(req.replay_id ?? Buffer.alloc(0));
      if (this.rejectReplays > 0 || n === null || !this.replayRetained(n)) {
        if (this.rejectReplays > 0) this.rejectReplays -= 1;
        fail(
          pubSubError(
            grpc.status.INVALID_ARGUMENT,
            ERROR_CODES.replayCorrupted,
            'The Replay ID validation failed. Ensure that the Replay ID is valid and within the retention window.',
          ),
        );
        return undefined;
      }
      cursor = n;
    } else cursor = this.lastReplayId;
    const token = String(call.metadata.get('accesstoken')[0] ?? '');
    const stats: SubscriptionStats = {
      id: randomUUID(),
      topic,
      requested: 0,
      delivered: 0,
      maxOutstanding: 0,
      open: true,
    };
    this.history.push(stats);
    const keepaliveMs = this.o.keepaliveMs ?? 270_000;
    const idleMs = this.o.idleTimeoutMs ?? 60_000;
    const sub: Subscription = {
      stats,
      call,
      token,
      topic,
      cursor,
      credits: 0,
      lastSentAt: this.o.now(),
      zeroSince: this.o.now(),
      timer: setInterval(
        () => this.tick(sub, keepaliveMs, idleMs),
        Math.max(10, Math.min(1000, keepaliveMs / 4, idleMs / 4)),
      ),
    };
    sub.timer.unref();
    this.subs.add(sub);
    this.grant(sub, req.num_requested ?? 0);
    return sub;
  }

  /** Events after `n` are all still retained (n itself may be a keepalive position). */
  private replayRetained(n: number): boolean {
    if (n < 0 || n > this.lastReplayId) return false;
    const oldest = this.bus[0];
    return oldest ? n >= oldest.replayId - 1 : n === this.lastReplayId;
  }

  private grant(sub: Subscription, n: number): void {
    if (n > 0) {
      sub.stats.requested += n;
      sub.credits = Math.min(MAX_OUTSTANDING, sub.credits + n);
      sub.stats.maxOutstanding = Math.max(sub.stats.maxOutstanding, sub.credits);
    }
    this.pump(sub);
  }

  private tick(sub: Subscription, keepaliveMs: number, idleMs: number): void {
    const now = this.o.now();
    if (!this.o.validateToken(sub.token)) {
      this.close1(sub, 'session expired');
      sub.call.emit(
        'error',
        pubSubError(
          grpc.status.UNAUTHENTICATED,
          ERROR_CODES.auth,
          'The session expired. Authenticate again.',
        ),
      );
      return;
    }
    if (sub.credits === 0 && sub.zeroSince !== null && now - sub.zeroSince >= idleMs) {
      this.close1(sub, 'idle without credits');
      sub.call.end();
      return;
    }
    if (now - sub.lastSentAt >= keepaliveMs) {
      // nothing for this topic after the cursor: the cursor moves to the tip of the bus
      if (this.nextFor(sub, 1).length === 0) sub.cursor = this.lastReplayId;
      this.send(sub, []);
    }
  }

  private nextFor(sub: Subscription, limit: number): BusEvent[] {
    let lo = 0;
    let hi = this.bus.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.bus[mid]!.replayId <= sub.cursor) lo = mid + 1;
      else hi = mid;
    }
    const out: BusEvent[] = [];
    for (let i = lo; i < this.bus.length && out.length < limit; i++) {
      if (this.bus[i]!.topic === sub.topic) out.push(this.bus[i]!);
    }
    return out;
  }

  private pump(sub: Subscription): void {
    if (!this.subs.has(sub)) return;
    while (sub.credits > 0) {
      const batch = this.nextFor(sub, sub.credits);
      if (batch.length === 0) break;
      sub.credits -= batch.length;
      sub.stats.delivered += batch.length;
      sub.cursor = batch[batch.length - 1]!.replayId;
      this.send(sub, batch);
    }
    if (sub.credits === 0) sub.zeroSince ??= this.o.now();
    else sub.zeroSince = null;
  }

  private send(sub: Subscription, events: BusEvent[]): void {
    sub.lastSentAt = this.o.now();
    sub.call.write({
      events: events.map((e) => ({
        event: { id: e.id, schema_id: e.schemaId, payload: e.payload, headers: [] },
        replay_id: replayIdBytes(e.replayId),
      })),
      latest_replay_id: replayIdBytes(sub.cursor),
      rpc_id: randomUUID(),
      pending_num_requested: sub.credits,
    });
  }

  private close1(sub: Subscription, why: string): void {
    if (!this.subs.delete(sub)) return;
    clearInterval(sub.timer);
    sub.stats.open = false;
    sub.stats.closedBy = why;
  }

  private closeAll(how: (s: Subscription) => string): number {
    const all = [...this.subs];
    for (const s of all) {
      this.close1(s, 'fault');
      s.stats.closedBy = how(s);
    }
    return all.length;
  }

  // ------------------------------------------------------------------------------ org events

  private listen(event: OrgEvent, listener: OrgListener): void {
    const safe: OrgListener = (r, c) => {
      try {
        listener(r, c);
      } catch (err) {
        // an event we cannot build must never fail the org write that caused it
        this.o.log?.(`emulator: pubsub event failed: ${(err as Error).message}`);
      }
    };
    this.o.org.on(event, safe);
    this.listeners.push([event, safe]);
  }

  private onChange(changeType: ChangeType, r: OrgRecord, change: ChangeInfo): void {
    if (this.closed || NO_CDC.has(r.object)) return;
    const schema = this.schema(r.object);
    if (!schema) return;
    const now = this.o.now();
    const encoded = encodeChange(this.o.org, schema, r, changeType, change.changedFields, now);
    this.lastHeaders.set(r.object, encoded.header);
    this.lastReplayId += 1;
    this.bus.push({
      replayId: this.lastReplayId,
      at: now,
      topic: schema.topic,
      schemaId: schema.schemaId,
      id: encoded.id,
      payload: encoded.payload,
    });
    const retention = this.o.retentionMs ?? 72 * 60 * 60 * 1000;
    let n = 0;
    while (n < this.bus.length && this.bus[n]!.at < now - retention) n++;
    const excess = this.bus.length - n - (this.o.maxRetained ?? 100_000);
    this.bus.splice(0, n + Math.max(0, excess));
    for (const s of this.subs) if (s.topic === schema.topic) this.pump(s);
  }
}
