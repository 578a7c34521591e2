// The emulated org's Streaming API: Bayeux 1.0 over HTTP long-polling, as Salesforce serves it
// at /cometd/{version}. Channels: Change Data Capture (/data/{Object}ChangeEvent and
// /data/ChangeEvents) and PushTopic (/topic/{Name}); durable replay with `ext.replay`.
//
// References: Bayeux Protocol 1.0 (message fields, advice, error format "code:args:message"),
// Streaming API Developer Guide ("Message Durability", "Streaming API Error Codes", "Clients and
// Timeouts": a client that does not reconnect within 40 s is forgotten), Change Data Capture
// Developer Guide (event shape), Spring '18 release notes (401::Authentication invalid with
// advice reconnect none, which jsforce's AuthFailure extension listens for).
//
// What a client sees:
// - handshake advertises long-polling only, advice { timeout: connectTimeoutMs, interval: 0,
//   reconnect: 'retry' } and ext { replay: true, 'payload.format': true }.
// - subscribe takes `ext.replay = { [channel]: replayId }`: -1 new events only (also the default
//   without a replay map), -2 everything retained, N everything after N. N must lie between the
//   oldest retained event of that channel and the last id issued, else the subscribe fails with
//   ERR.invalidReplay (faye rejects the subscription; its error's `message` is the whole string).
// - CDC replay ids come from one counter for the whole bus (so /data/ChangeEvents and
//   /data/LeadChangeEvent carry the same id for the same change); each PushTopic has its own.
// - a bad session fails any message with 401::Authentication invalid and advice reconnect 'none'
//   (a held connect is re-checked when it is answered); an unknown, idle (clientIdleMs) or evicted
//   (maxClients) client gets 403::Unknown client with advice reconnect 'handshake'.
//
// Delivery keeps no per-client event copies: each subscription holds a cursor (the last replayId
// delivered) into the channel's retained log, and a connect reply takes at most `batchSize`
// events. A slow client therefore costs no memory; it can only fall behind retention.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import type { ChangeInfo, Org, OrgEvent, OrgListener, OrgRecord } from './org.ts';
import {
  ChannelLog,
  ReplayCounter,
  buildChangeEvent,
  buildPushTopicEvent,
  pushTopicFromRecord,
  updateNotifies,
  type ChangeType,
  type PushTopicDef,
  type PushTopicEventType,
} from './cometd-events.ts';

export interface CometdOptions {
  org: Org;
  validateToken(token: string): boolean;
  retention: { cdcMs: number; pushTopicMs: number };
  /** how long /meta/connect is held (Salesforce advises 110000) */
  connectTimeoutMs?: number;
  now?: () => Date;
  /** a client that has not connected for this long after its last connect ended is forgotten (40 s) */
  clientIdleMs?: number;
  /** most events in one connect reply */
  batchSize?: number;
  /** most events retained per channel, whatever their age */
  maxRetainedPerChannel?: number;
  /** most live clients; the longest idle one is forgotten beyond it */
  maxClients?: number;
}

type Message = Record<string, unknown>;

interface Subscription {
  log: ChannelLog;
  /** replayId of the last event delivered (or skipped by -1) */
  cursor: number;
}

interface PendingConnect {
  res: ServerResponse;
  /** replies to the other messages of the same request, sent with the connect reply */
  replies: Message[];
  connect: Message;
  timer: NodeJS.Timeout;
  status: number;
}

interface Client {
  id: string;
  token: string;
  subscriptions: Map<string, Subscription>;
  pending: PendingConnect | null;
  lastSeen: number;
  flushScheduled: boolean;
  /** why the server let go of it: a held connect is answered accordingly */
  gone: 'disconnected' | 'evicted' | null;
}

const BAYEUX_VERSION = '1.0';
const CONNECTION_TYPES = ['long-polling'];
const CDC_PREFIX = '/data/';
const ALL_CHANGE_EVENTS = '/data/ChangeEvents';
const TOPIC_PREFIX = '/topic/';
/** CDC has no change events for these (they are not entities of the CDC "Selected Entities"). */
const NO_CDC = new Set(['PushTopic']);

// Error texts exactly as Salesforce sends them (Streaming API Developer Guide, error codes).
export const ERR = {
  authInvalid: '401::Authentication invalid',
  handshakeDenied: '403::Handshake denied',
  unknownClient: '403::Unknown client',
  badRequest: '400::Bad request',
  malformedJson: '400::Malformed JSON',
  noVersion: "400::API version in the URI is mandatory. URI format: '/cometd/62.0'",
  channelNotSpecified: '400::Channel name not specified',
  leadingSlash: "400::Channel subscriptions must start with a leading '/'",
  channelMissing: (channel: string) =>
    `400::The channel you requested to subscribe to does not exist {${channel}}`,
  invalidReplay: (replayId: unknown) =>
    `400::The replayId {${String(replayId)}} you provided was invalid. ` +
    'Please provide a valid ID, -2 to replay all events, or -1 to replay only new events.',
  replayNotInMap: (channel: string, map: unknown) =>
    `400::The replayId for channel {${channel}} wasn't found using the provided replay ID map ` +
    `{${JSON.stringify(map)}}. Ensure that the channel name you provided in the replay map is valid ` +
    'and matches the channel name used for subscribing.',
  connectionType: (type: unknown) => `400::Invalid connection type {${String(type)}}`,
  publishDenied: (channel: string) => `403:${channel}:Publish not allowed`,
  unknownMeta: (channel: string) => `404:${channel}:Unknown channel`,
} as const;

function isObject(v: unknown): v is Message {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function bearerToken(req: IncomingMessage): string | null {
  const header = req.headers.authorization;
  if (typeof header !== 'string') return null;
  const m = /^(?:Bearer|OAuth)\s+(\S+)\s*$/i.exec(header);
  return m?.[1] ?? null;
}

function parseReplayId(value: unknown): number | null {
  if (typeof value === 'number' && Number.isSafeInteger(value)) return value;
  if (typeof value === 'string' && /^-?\d{1,16}$/.test(value.trim())) return Number(value.trim());
  return null;
}

export class CometdServer {
  private readonly org: Org;
  private readonly validateToken: (token: string) => boolean;
  private readonly retention: { cdcMs: number; pushTopicMs: number };
  private readonly connectTimeoutMs: number;
  private readonly now: () => Date;
  private readonly clientIdleMs: number;
  private readonly batchSize: number;
  private readonly maxRetained: number;
  private readonly maxClients: number;

  private readonly clients = new Map<string, Client>();
  private readonly logs = new Map<string, ChannelLog>();
  private readonly cdcCounter = new ReplayCounter();
  /** PushTopics by Name; each has its own replay counter, kept across redefinitions */
  private readonly topics = new Map<string, PushTopicDef>();
  private readonly topicCounters = new Map<string, ReplayCounter>();
  private readonly listeners: Array<[OrgEvent, OrgListener]> = [];
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(opts: CometdOptions) {
    this.org = opts.org;
    this.validateToken = opts.validateToken;
    this.retention = opts.retention;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 110_000;
    this.now = opts.now ?? (() => new Date());
    this.clientIdleMs = opts.clientIdleMs ?? 40_000;
    this.batchSize = opts.batchSize ?? 500;
    this.maxRetained = opts.maxRetainedPerChannel ?? 100_000;
    this.maxClients = opts.maxClients ?? 10_000;

    for (const r of this.safeAll('PushTopic')) this.definePushTopic(r);
    this.listen('insert', (r, c) => this.onChange('CREATE', r, c));
    this.listen('update', (r, c) => this.onChange('UPDATE', r, c));
    this.listen('delete', (r, c) => this.onChange('DELETE', r, c));
    this.listen('undelete', (r, c) => this.onChange('UNDELETE', r, c));

    this.sweeper = setInterval(() => this.forgetIdleClients(), Math.min(this.clientIdleMs, 5_000));
    this.sweeper.unref();
  }

  // ------------------------------------------------------------------------------ public API

  /** POST /cometd/{version}[/...]: a JSON array (or one object) of Bayeux messages. */
  handle(req: IncomingMessage, res: ServerResponse, body: string): void {
    try {
      this.handleRequest(req, res, body);
    } catch (err) {
      // A bug here must not take the emulator down; the client sees a Bayeux 500.
      const message = err instanceof Error ? err.message : String(err);
      if (!res.headersSent) this.send(res, 500, [{ successful: false, error: `500::${message}` }]);
    }
  }

  /** Drops retained events older than `olderThanMs` (default: everything currently retained). */
  ageOut(olderThanMs?: number): void {
    const cutoff = olderThanMs === undefined ? Number.POSITIVE_INFINITY : this.nowMs() - olderThanMs;
    for (const log of this.logs.values()) log.dropBefore(cutoff);
  }

  /** Answers held connects, forgets every client, stops timers and org listeners. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    for (const [event, listener] of this.listeners) {
      try {
        this.org.off(event, listener);
      } catch {
        // an org that cannot unregister is closing too
      }
    }
    for (const client of this.clients.values()) this.flush(client);
    this.clients.clear();
  }

  // ------------------------------------------------------------------------------ protocol

  private handleRequest(req: IncomingMessage, res: ServerResponse, body: string): void {
    if (this.closed) {
      this.send(res, 503, [
        { successful: false, error: '503::Server shutting down', advice: { reconnect: 'none' } },
      ]);
      return;
    }
    const path = (req.url ?? '').split('?')[0] ?? '';
    // /cometd/62.0, also /cometd/replay/36.0 as jsforce uses for API 36.0 generic channels
    if (!/^\/cometd\/(?:replay\/)?\d+\.\d+\/?(?:$|\/)/.test(path)) {
      this.send(res, 400, [{ successful: false, error: ERR.noVersion }]);
      return;
    }
    if (req.method !== 'POST') {
      // Salesforce serves long-polling only; faye probes websocket with a GET upgrade.
      this.send(res, 400, [
        { successful: false, error: ERR.connectionType(req.method === 'GET' ? 'websocket' : req.method) },
      ]);
      return;
    }
    const messages = this.parseBody(body);
    if (!messages) {
      this.send(res, 400, [{ successful: false, error: ERR.malformedJson }]);
      return;
    }

    const token = bearerToken(req);
    const authenticated = token !== null && this.validateToken(token);

    const replies: Message[] = [];
    let held: { client: Client; connect: Message; immediate: boolean } | null = null;
    let status = 200;
    for (const raw of messages) {
      if (!isObject(raw) || typeof raw['channel'] !== 'string') {
        status = 400;
        replies.push(this.reply(raw, { successful: false, error: ERR.badRequest }));
        continue;
      }
      if (!authenticated) {
        status = 401;
        replies.push(this.authFailure(raw));
        continue;
      }
      const channel = raw['channel'];
      if (channel === '/meta/handshake') {
        replies.push(this.handshake(raw, token));
        continue;
      }
      const client = typeof raw['clientId'] === 'string' ? this.clients.get(raw['clientId']) : undefined;
      if (!client) {
        replies.push(
          this.reply(raw, {
            successful: false,
            error: ERR.unknownClient,
            advice: { reconnect: 'handshake', interval: 0 },
          }),
        );
        continue;
      }
      client.token = token;
      client.lastSeen = this.nowMs();
      switch (channel) {
        case '/meta/connect': {
          if (raw['connectionType'] !== 'long-polling') {
            replies.push(
              this.reply(raw, {
                successful: false,
                clientId: client.id,
                error: ERR.connectionType(raw['connectionType']),
              }),
            );
            break;
          }
          if (held) {
            // two connects in one request: answer the earlier one now (Bayeux 1.0, 3.4)
            replies.push(this.connectReply(held.client, held.connect));
          }
          const advice = raw['advice'];
          held = { client, connect: raw, immediate: isObject(advice) && advice['timeout'] === 0 };
          break;
        }
        case '/meta/subscribe':
          replies.push(...this.subscribe(client, raw));
          break;
        case '/meta/unsubscribe':
          replies.push(...this.unsubscribe(client, raw));
          break;
        case '/meta/disconnect':
          this.forget(client, 'disconnected');
          replies.push(this.reply(raw, { successful: true, clientId: client.id }));
          break;
        default:
          if (channel.startsWith('/meta/')) {
            replies.push(
              this.reply(raw, { successful: false, clientId: client.id, error: ERR.unknownMeta(channel) }),
            );
          } else {
            replies.push(
              this.reply(raw, { successful: false, clientId: client.id, error: ERR.publishDenied(channel) }),
            );
          }
      }
    }

    if (!held || !this.clients.has(held.client.id)) {
      // a connect followed by a disconnect in the same request is answered, not dropped
      if (held) replies.push(this.connectReply(held.client, held.connect));
      this.send(res, status, replies);
      return;
    }
    this.hold(held.client, res, held.connect, replies, status);
    if (held.immediate || this.hasEvents(held.client)) this.flush(held.client);
  }

  private parseBody(body: string): unknown[] | null {
    let text = body.trim();
    // callback-polling and form posts send `message=<json>`; accept it, it costs nothing
    if (text.startsWith('message=')) {
      try {
        text = decodeURIComponent(text.slice('message='.length).replace(/\+/g, ' '));
      } catch {
        return null;
      }
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return null;
    }
    if (Array.isArray(parsed)) return parsed.length > 0 ? parsed : null;
    return isObject(parsed) ? [parsed] : null;
  }

  private reply(msg: unknown, fields: Message): Message {
    const out: Message = {};
    if (isObject(msg)) {
      if (typeof msg['channel'] === 'string') out['channel'] = msg['channel'];
      if (msg['id'] !== undefined) out['id'] = msg['id'];
    }
    return { ...out, ...fields };
  }

  private authFailure(msg: Message): Message {
    const ext = { sfdc: { failureReason: ERR.authInvalid } };
    if (msg['channel'] === '/meta/handshake') {
      // what Salesforce answers a handshake with a bad session (see jsforce's AuthFailure doc)
      return this.reply(msg, {
        successful: false,
        error: ERR.handshakeDenied,
        advice: { reconnect: 'none' },
        ext: { ...ext, replay: true, 'payload.format': true },
      });
    }
    const out: Message = { successful: false, error: ERR.authInvalid, advice: { reconnect: 'none' }, ext };
    if (typeof msg['clientId'] === 'string') out['clientId'] = msg['clientId'];
    if (msg['channel'] === '/meta/subscribe' || msg['channel'] === '/meta/unsubscribe')
      out['subscription'] = msg['subscription'];
    return this.reply(msg, out);
  }

  private handshake(msg: Message, token: string): Message {
    const types = msg['supportedConnectionTypes'];
    if (!Array.isArray(types) || !types.includes('long-polling')) {
      return this.reply(msg, {
        successful: false,
        error: ERR.connectionType(Array.isArray(types) ? types.join(',') : types),
        supportedConnectionTypes: CONNECTION_TYPES,
        version: BAYEUX_VERSION,
      });
    }
    if (this.clients.size >= this.maxClients) this.forgetLongestIdle();
    const client: Client = {
      id: randomBytes(16).toString('base64url'),
      token,
      subscriptions: new Map(),
      pending: null,
      lastSeen: this.nowMs(),
      flushScheduled: false,
      gone: null,
    };
    this.clients.set(client.id, client);
    return this.reply(msg, {
      clientId: client.id,
      version: BAYEUX_VERSION,
      minimumVersion: BAYEUX_VERSION,
      supportedConnectionTypes: CONNECTION_TYPES,
      successful: true,
      advice: this.advice(),
      ext: { replay: true, 'payload.format': true },
    });
  }

  private advice(): Message {
    return { timeout: this.connectTimeoutMs, interval: 0, reconnect: 'retry' };
  }

  private subscribe(client: Client, msg: Message): Message[] {
    const subs = msg['subscription'];
    const channels = Array.isArray(subs) ? subs : [subs];
    const ext = msg['ext'];
    const replayMap = isObject(ext) && isObject(ext['replay']) ? ext['replay'] : null;
    const out: Message[] = [];
    for (const channel of channels) {
      const fail = (error: string): void => {
        out.push(this.reply(msg, { successful: false, clientId: client.id, subscription: channel, error }));
      };
      if (typeof channel !== 'string' || channel === '') {
        fail(ERR.channelNotSpecified);
        continue;
      }
      if (!channel.startsWith('/')) {
        fail(ERR.leadingSlash);
        continue;
      }
      const log = this.logFor(channel);
      if (!log) {
        fail(ERR.channelMissing(channel));
        continue;
      }
      // Without a replay map Salesforce replays nothing (-1). With one, the channel must be in it.
      let replayId = -1;
      if (replayMap) {
        if (!(channel in replayMap)) {
          fail(ERR.replayNotInMap(channel, replayMap));
          continue;
        }
        const parsed = parseReplayId(replayMap[channel]);
        log.prune(this.nowMs());
        if (parsed === null || !log.isValidReplayId(parsed)) {
          fail(ERR.invalidReplay(replayMap[channel]));
          continue;
        }
        replayId = parsed;
      }
      client.subscriptions.set(channel, { log, cursor: log.cursorFor(replayId) });
      out.push(this.reply(msg, { successful: true, clientId: client.id, subscription: channel }));
    }
    if (this.hasEvents(client)) this.scheduleFlush(client);
    return out;
  }

  private unsubscribe(client: Client, msg: Message): Message[] {
    const subs = msg['subscription'];
    const channels = Array.isArray(subs) ? subs : [subs];
    return channels.map((channel) => {
      if (typeof channel !== 'string' || !client.subscriptions.delete(channel)) {
        return this.reply(msg, {
          successful: false,
          clientId: client.id,
          subscription: channel,
          error: typeof channel === 'string' ? `404:${channel}:Not subscribed` : ERR.channelNotSpecified,
        });
      }
      return this.reply(msg, { successful: true, clientId: client.id, subscription: channel });
    });
  }

  // ------------------------------------------------------------------------------ delivery

  private hold(
    client: Client,
    res: ServerResponse,
    connect: Message,
    replies: Message[],
    status: number,
  ): void {
    if (client.pending) this.flush(client); // a newer connect supersedes a held one
    const timer = setTimeout(() => this.flush(client), this.connectTimeoutMs);
    client.pending = { res, replies, connect, timer, status };
    res.on('close', () => {
      // the client went away (aborted request): nothing to answer any more
      if (client.pending?.res === res) {
        clearTimeout(client.pending.timer);
        client.pending = null;
        client.lastSeen = this.nowMs();
      }
    });
  }

  private hasEvents(client: Client): boolean {
    for (const sub of client.subscriptions.values()) if (sub.log.hasAfter(sub.cursor)) return true;
    return false;
  }

  /** Events in one tick (insertMany, a replay) go out in one connect reply. */
  private scheduleFlush(client: Client): void {
    if (!client.pending || client.flushScheduled) return;
    client.flushScheduled = true;
    setImmediate(() => {
      client.flushScheduled = false;
      if (client.pending) this.flush(client);
    });
  }

  /** Answers the held connect of `client` with its pending events (bounded by batchSize). */
  private flush(client: Client): void {
    const pending = client.pending;
    if (!pending) return;
    client.pending = null;
    clearTimeout(pending.timer);
    client.lastSeen = this.nowMs();

    // The session may have expired while the connect was held: say so now (AuthFailure listens).
    const expired = client.gone === null && !this.validateToken(client.token);
    const connectReply = expired
      ? this.authFailure(pending.connect)
      : this.connectReply(client, pending.connect);
    // A failed connect delivers nothing; a client that handshakes again resubscribes from its own
    // last replayId, so nothing is lost.
    const deliveries: Message[] = [];
    if (connectReply['successful'] !== false) {
      const now = this.nowMs();
      let room = this.batchSize;
      for (const [channel, sub] of client.subscriptions) {
        if (room <= 0) break;
        sub.log.prune(now);
        const events = sub.log.after(sub.cursor, room);
        for (const e of events) deliveries.push({ channel, data: e.data });
        const last = events[events.length - 1];
        if (last) sub.cursor = last.replayId;
        room -= events.length;
      }
    }
    this.send(pending.res, expired ? 401 : pending.status, [...pending.replies, ...deliveries, connectReply]);
  }

  private connectReply(client: Client, connect: Message): Message {
    if (client.gone === 'disconnected') {
      return this.reply(connect, {
        successful: true,
        clientId: client.id,
        advice: { reconnect: 'none', interval: 0 },
      });
    }
    if (client.gone === 'evicted' || !this.clients.has(client.id)) {
      return this.reply(connect, {
        successful: false,
        clientId: client.id,
        error: ERR.unknownClient,
        advice: { reconnect: 'handshake', interval: 0 },
      });
    }
    return this.reply(connect, { successful: true, clientId: client.id, advice: this.advice() });
  }

  private send(res: ServerResponse, status: number, messages: Message[]): void {
    if (res.writableEnded || res.destroyed) return;
    const body = JSON.stringify(messages);
    res.writeHead(status, {
      'content-type': 'application/json;charset=UTF-8',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-cache, no-store',
    });
    res.end(body);
  }

  private forget(client: Client, why: 'disconnected' | 'evicted'): void {
    client.gone = why;
    this.clients.delete(client.id);
    this.flush(client);
  }

  private forgetIdleClients(): void {
    const cutoff = this.nowMs() - this.clientIdleMs;
    for (const client of this.clients.values()) {
      if (!client.pending && client.lastSeen < cutoff) this.clients.delete(client.id);
    }
  }

  private forgetLongestIdle(): void {
    let oldest: Client | undefined;
    for (const c of this.clients.values()) if (!oldest || c.lastSeen < oldest.lastSeen) oldest = c;
    if (oldest) this.forget(oldest, 'evicted');
  }

  // ------------------------------------------------------------------------------ channels

  /** The retained log of a subscribable channel, or undefined if no such channel exists. */
  private logFor(channel: string): ChannelLog | undefined {
    const existing = this.logs.get(channel);
    if (existing) return existing;
    if (channel === ALL_CHANGE_EVENTS) return this.createLog(channel, this.cdcCounter, this.retention.cdcMs);
    if (channel.startsWith(CDC_PREFIX) && channel.endsWith('ChangeEvent')) {
      const object = channel.slice(CDC_PREFIX.length, -'ChangeEvent'.length);
      const def = object ? this.org.describe(object) : undefined;
      // channel names are case-sensitive: /data/leadChangeEvent does not exist
      if (!def || def.name !== object || NO_CDC.has(def.name)) return undefined;
      return this.createLog(channel, this.cdcCounter, this.retention.cdcMs);
    }
    if (channel.startsWith(TOPIC_PREFIX)) {
      const name = channel.slice(TOPIC_PREFIX.length);
      if (!this.liveTopic(name)) return undefined;
      return this.createLog(channel, this.topicCounter(name), this.retention.pushTopicMs);
    }
    return undefined;
  }

  private createLog(channel: string, counter: ReplayCounter, retentionMs: number): ChannelLog {
    const log = new ChannelLog(channel, counter, retentionMs, this.maxRetained);
    this.logs.set(channel, log);
    return log;
  }

  private topicCounter(name: string): ReplayCounter {
    let c = this.topicCounters.get(name);
    if (!c) {
      c = new ReplayCounter();
      this.topicCounters.set(name, c);
    }
    return c;
  }

  private publish(log: ChannelLog, replayId: number, data: Record<string, unknown>, nowMs: number): void {
    log.prune(nowMs);
    log.append({ replayId, at: nowMs, data });
    for (const client of this.clients.values()) {
      if (client.pending && client.subscriptions.get(log.channel)?.log === log) this.scheduleFlush(client);
    }
  }

  // ------------------------------------------------------------------------------ org events

  private listen(event: OrgEvent, listener: OrgListener): void {
    const safe: OrgListener = (r, c) => {
      try {
        listener(r, c);
      } catch {
        // an event we cannot build must never fail the org write that caused it
      }
    };
    this.org.on(event, safe);
    this.listeners.push([event, safe]);
  }

  private safeAll(object: string): OrgRecord[] {
    try {
      return this.org.all(object);
    } catch {
      return [];
    }
  }

  private onChange(changeType: ChangeType, r: OrgRecord, change: ChangeInfo): void {
    if (this.closed) return;
    if (r.object === 'PushTopic') {
      if (changeType === 'DELETE') this.dropPushTopic(r.Id);
      else this.definePushTopic(r);
      return;
    }
    const nowMs = this.nowMs();
    if (!NO_CDC.has(r.object)) this.publishChangeEvent(changeType, r, change, nowMs);
    this.publishPushTopicEvents(changeType, r, change, nowMs);
  }

  private publishChangeEvent(changeType: ChangeType, r: OrgRecord, change: ChangeInfo, nowMs: number): void {
    const entityLog = this.logFor(`${CDC_PREFIX}${r.object}ChangeEvent`);
    const allLog = this.logFor(ALL_CHANGE_EVENTS);
    const replayId = this.cdcCounter.next();
    const data = buildChangeEvent({ org: this.org, record: r, changeType, change, nowMs, replayId });
    if (entityLog) this.publish(entityLog, replayId, data, nowMs);
    if (allLog) this.publish(allLog, replayId, data, nowMs);
  }

  private publishPushTopicEvents(
    changeType: ChangeType,
    r: OrgRecord,
    change: ChangeInfo,
    nowMs: number,
  ): void {
    const type: PushTopicEventType =
      changeType === 'CREATE'
        ? 'created'
        : changeType === 'UPDATE'
          ? 'updated'
          : changeType === 'DELETE'
            ? 'deleted'
            : 'undeleted';
    for (const name of [...this.topics.keys()]) {
      const topic = this.liveTopic(name);
      if (!topic || !topic.isActive || !topic.notifyFor[type] || topic.compiled.object !== r.object) continue;
      if (!topic.compiled.matches(r)) continue;
      if (type === 'updated' && !updateNotifies(topic, change.changedFields)) continue;
      const log = this.logFor(`${TOPIC_PREFIX}${topic.name}`);
      if (!log) continue;
      const replayId = log.counter.next();
      this.publish(log, replayId, buildPushTopicEvent(topic, r, type, nowMs, replayId), nowMs);
    }
  }

  private definePushTopic(r: OrgRecord): void {
    const def = pushTopicFromRecord(this.org, r);
    const previous = [...this.topics.values()].find((t) => t.id === r.Id);
    // An edit that keeps the Name keeps the channel, its retained events and its subscribers.
    if (previous && !(def instanceof Error) && previous.name === def.name) {
      this.topics.set(def.name, def);
      return;
    }
    this.dropPushTopic(r.Id);
    // A topic whose query does not compile is not a channel (the REST insert should have refused it).
    if (def instanceof Error || !def.name) return;
    this.topics.set(def.name, def);
  }

  /** The topic named `name` if its PushTopic record still exists (org.reset() emits nothing). */
  private liveTopic(name: string): PushTopicDef | undefined {
    const topic = this.topics.get(name);
    if (!topic) return undefined;
    const record = this.org.getById(topic.id);
    if (record && record.values['IsDeleted'] !== true) return topic;
    this.dropPushTopic(topic.id);
    return undefined;
  }

  private dropPushTopic(id: string): void {
    for (const [name, t] of this.topics) {
      if (t.id === id) {
        this.topics.delete(name);
        this.logs.delete(`${TOPIC_PREFIX}${name}`);
        for (const client of this.clients.values()) client.subscriptions.delete(`${TOPIC_PREFIX}${name}`);
      }
    }
  }

  private nowMs(): number {
    return this.now().getTime();
  }
}
