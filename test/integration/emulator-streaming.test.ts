// The emulator's Streaming API driven by the real jsforce 3 client (faye long-polling) and by raw
// Bayeux POSTs: CDC and PushTopic delivery, durable replay, retention, auth failure, bad input.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import jsforce from 'jsforce';
import type { Connection } from 'jsforce';
import { StreamingExtension } from 'jsforce/lib/api/streaming.js';
import { startEmulator, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET } from '../../src/emulator/index.ts';
import type { Emulator } from '../../src/emulator/index.ts';
import { Org } from '../../src/emulator/org.ts';
import { CometdServer } from '../../src/emulator/cometd.ts';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

const CONNECT_TIMEOUT_MS = 1500;
const LEAD_CDC = '/data/LeadChangeEvent';
const INVALID_REPLAY = (id: number | string): string =>
  `400::The replayId {${id}} you provided was invalid. Please provide a valid ID, -2 to replay all events, or -1 to replay only new events.`;

type Bayeux = Record<string, unknown>;
interface CdcEvent {
  schema: string;
  payload: { ChangeEventHeader: Record<string, unknown> } & Record<string, unknown>;
  event: { replayId: number };
}
interface TopicEvent {
  event: { createdDate: string; replayId: number; type: string };
  sobject: Record<string, unknown>;
}

interface FayeClient {
  subscribe(channel: string, cb: (data: unknown) => void): PromiseLike<unknown> & { cancel(): void };
  disconnect(): unknown;
}

interface Listener<T> {
  client: FayeClient;
  events: T[];
  /** every /meta/subscribe reply the client saw */
  subscribeReplies: Bayeux[];
  authFailures: Bayeux[];
  subscribed: Promise<unknown>;
}

let emu: Emulator;
let conn: Connection;
const open: FayeClient[] = [];

async function newToken(): Promise<string> {
  const res = await fetch(`${emu.url}/services/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: DEFAULT_CLIENT_ID,
      client_secret: DEFAULT_CLIENT_SECRET,
    }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { access_token: string }).access_token;
}

function connect(accessToken: string): Connection {
  return new jsforce.Connection({ instanceUrl: emu.url, accessToken, version: '62.0' });
}

/** A jsforce streaming client with Replay + AuthFailure, subscribed to `channel`. */
function listen<T>(channel: string, replayId: number, c: Connection = conn): Listener<T> {
  const events: T[] = [];
  const subscribeReplies: Bayeux[] = [];
  const authFailures: Bayeux[] = [];
  // first in the chain, so it sees replies AuthFailure would swallow
  const capture = {
    incoming(message: Bayeux, callback: (m: Bayeux) => void) {
      if (message['channel'] === '/meta/subscribe') subscribeReplies.push(message);
      callback(message);
    },
  };
  const client = c.streaming.createClient([
    capture,
    new StreamingExtension.Replay(channel, replayId),
    new StreamingExtension.AuthFailure((m: Bayeux) => authFailures.push(m)),
  ]) as unknown as FayeClient;
  open.push(client);
  const sub = client.subscribe(channel, (data) => events.push(data as T));
  const subscribed = Promise.resolve(sub);
  subscribed.catch(() => {}); // tests that expect a rejection await it themselves
  return { client, events, subscribeReplies, authFailures, subscribed };
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Lets a few connect cycles pass, to show that nothing more arrives. */
const settle = (ms = 300): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function createLead(fields: Record<string, unknown>): Promise<string> {
  const res = await conn.sobject('Lead').create({ LastName: 'Lovelace', Company: 'Acme', ...fields });
  if (!res.success) throw new Error(JSON.stringify(res));
  return res.id;
}

async function bayeux(
  body: string,
  token: string | null,
  method = 'POST',
): Promise<{ status: number; messages: Bayeux[] }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token) headers['authorization'] = `Bearer ${token}`;
  const res = await fetch(`${emu.url}/cometd/62.0`, {
    method,
    headers,
    ...(method === 'GET' ? {} : { body }),
  });
  const text = await res.text();
  return { status: res.status, messages: JSON.parse(text) as Bayeux[] };
}

async function rawHandshake(token: string): Promise<string> {
  const r = await bayeux(
    JSON.stringify([
      { channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['long-polling'], id: '1' },
    ]),
    token,
  );
  expect(r.messages[0]).toMatchObject({ successful: true, channel: '/meta/handshake', id: '1' });
  return r.messages[0]!['clientId'] as string;
}

beforeAll(async () => {
  emu = await startEmulator({ cometdConnectTimeoutMs: CONNECT_TIMEOUT_MS });
  conn = connect(await newToken());
});

afterEach(async () => {
  for (const c of open.splice(0)) c.disconnect();
  await settle(50);
});

afterAll(async () => {
  await emu.close();
});

describe('Change Data Capture through jsforce', () => {
  it('delivers CREATE and UPDATE events for Leads changed after subscribing, shaped like Salesforce', async () => {
    const before = await createLead({ LastName: 'Before' });
    const l = listen<CdcEvent>(LEAD_CDC, -1);
    await l.subscribed;
    expect(l.subscribeReplies[0]).toMatchObject({ successful: true, subscription: LEAD_CDC });

    const id = await createLead({
      FirstName: 'Ada',
      LastName: 'Lovelace',
      Company: 'Analytical',
      Email: 'ada@example.com',
    });
    await waitFor('the CREATE event', () => l.events.length >= 1);
    const created = l.events[0]!;
    expect(created.schema).toEqual(expect.any(String));
    expect(created.event.replayId).toEqual(expect.any(Number));
    expect(created.payload.ChangeEventHeader).toMatchObject({
      entityName: 'Lead',
      recordIds: [id],
      changeType: 'CREATE',
      sequenceNumber: 1,
      commitTimestamp: expect.any(Number),
      commitNumber: expect.any(Number),
      commitUser: expect.stringMatching(/^005/),
      nulledFields: [],
      diffFields: [],
      changedFields: [],
    });
    expect(created.payload).toMatchObject({
      Company: 'Analytical',
      Email: 'ada@example.com',
      Name: { FirstName: 'Ada', LastName: 'Lovelace' },
    });
    expect(created.payload['CreatedDate']).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(created.payload['Id']).toBeUndefined();

    await conn.sobject('Lead').update({ Id: id, Company: 'Difference Engine', Email: null });
    await waitFor('the UPDATE event', () => l.events.length >= 2);
    const updated = l.events[1]!;
    expect(updated.event.replayId).toBeGreaterThan(created.event.replayId);
    expect(updated.payload.ChangeEventHeader).toMatchObject({ changeType: 'UPDATE', recordIds: [id] });
    expect(updated.payload.ChangeEventHeader['changedFields']).toEqual(
      expect.arrayContaining(['Company', 'Email']),
    );
    expect(updated.payload.ChangeEventHeader['nulledFields']).toEqual(['Email']);
    expect(updated.payload['Company']).toBe('Difference Engine');
    expect(updated.payload['LastName']).toBeUndefined();

    await settle();
    const ids = l.events.map((e) => (e.payload.ChangeEventHeader['recordIds'] as string[])[0]);
    expect(ids).not.toContain(before);
    expect(l.events).toHaveLength(2);
  });

  it('resumes from a stored replay id after a restart: exactly the missed events, none twice', async () => {
    const first = listen<CdcEvent>(LEAD_CDC, -1);
    await first.subscribed;
    const a = await createLead({ LastName: 'A' });
    const b = await createLead({ LastName: 'B' });
    await waitFor('A and B', () => first.events.length === 2);
    const stored = first.events[1]!.event.replayId;
    first.client.disconnect();

    // while "down": two more Leads and an Account (another channel on the same bus)
    const c = await createLead({ LastName: 'C' });
    await conn.sobject('Account').create({ Name: 'Elsewhere' });
    const d = await createLead({ LastName: 'D' });

    const second = listen<CdcEvent>(LEAD_CDC, stored);
    await second.subscribed;
    await waitFor('C and D', () => second.events.length >= 2);
    const e = await createLead({ LastName: 'E' });
    await waitFor('E', () => second.events.length >= 3);
    await settle();

    const recordIds = second.events.map((ev) => (ev.payload.ChangeEventHeader['recordIds'] as string[])[0]);
    expect(recordIds).toEqual([c, d, e]);
    expect(recordIds).not.toContain(a);
    expect(recordIds).not.toContain(b);
    const replayIds = second.events.map((ev) => ev.event.replayId);
    expect([...replayIds].sort((x, y) => x - y)).toEqual(replayIds);
    expect(replayIds[0]).toBeGreaterThan(stored);
  });

  it('replays every retained event with -2, and /data/ChangeEvents carries all objects', async () => {
    const leadId = await createLead({ LastName: 'Retained' });
    const acct = await conn.sobject('Account').create({ Name: 'Retained Inc' });
    const all = listen<CdcEvent>('/data/ChangeEvents', -2);
    await all.subscribed;
    await waitFor('the retained events', () => {
      const ids = all.events.map((ev) => (ev.payload.ChangeEventHeader['recordIds'] as string[])[0]);
      return ids.includes(leadId) && ids.includes(acct.id);
    });
    const entities = new Set(all.events.map((ev) => ev.payload.ChangeEventHeader['entityName']));
    expect(entities).toEqual(new Set(['Lead', 'Account']));
    const replayIds = all.events.map((ev) => ev.event.replayId);
    expect(new Set(replayIds).size).toBe(replayIds.length);
  });

  it('rejects a replay id that aged out of retention, or that was never issued, with the Salesforce 400', async () => {
    const l = listen<CdcEvent>(LEAD_CDC, -1);
    await l.subscribed;
    await createLead({ LastName: 'Soon forgotten' });
    await waitFor('the event', () => l.events.length === 1);
    const stored = l.events[0]!.event.replayId;
    l.client.disconnect();

    emu.control.ageOutEvents(); // the retention window passes
    const stale = listen<CdcEvent>(LEAD_CDC, stored);
    await expect(stale.subscribed).rejects.toMatchObject({
      message: expect.stringContaining('you provided was invalid'),
    });
    expect(stale.subscribeReplies).toHaveLength(1);
    expect(stale.subscribeReplies[0]).toMatchObject({ successful: false, error: INVALID_REPLAY(stored) });

    const future = listen<CdcEvent>(LEAD_CDC, stored + 1000);
    await expect(future.subscribed).rejects.toBeTruthy();
    expect(future.subscribeReplies[0]).toMatchObject({
      successful: false,
      error: INVALID_REPLAY(stored + 1000),
    });

    // -1 is always valid, and the channel keeps working after the retention loss
    const fresh = listen<CdcEvent>(LEAD_CDC, -1);
    await fresh.subscribed;
    const id = await createLead({ LastName: 'After' });
    await waitFor('a new event', () => fresh.events.length === 1);
    expect(fresh.events[0]!.payload.ChangeEventHeader['recordIds']).toEqual([id]);
  });

  it('fires AuthFailure when the session expires while subscribed, and for a bad token at handshake', async () => {
    const c = connect(await newToken());
    const l = listen<CdcEvent>(LEAD_CDC, -1, c);
    await l.subscribed;
    expect(l.authFailures).toHaveLength(0);
    emu.control.expireSessions();
    await waitFor('AuthFailure', () => l.authFailures.length > 0, CONNECT_TIMEOUT_MS * 3);
    expect(l.authFailures[0]).toMatchObject({
      channel: '/meta/connect',
      successful: false,
      error: '401::Authentication invalid',
      advice: { reconnect: 'none' },
    });

    const bad = listen<CdcEvent>(LEAD_CDC, -1, connect('not-a-session'));
    await waitFor('AuthFailure at handshake', () => bad.authFailures.length > 0);
    expect(bad.authFailures[0]).toMatchObject({
      channel: '/meta/handshake',
      successful: false,
      advice: { reconnect: 'none' },
      ext: { sfdc: { failureReason: '401::Authentication invalid' } },
    });
    conn = connect(await newToken()); // expireSessions() ended the shared session too
  });
});

describe('PushTopic through jsforce', () => {
  it('delivers only records matching the topic query, with the fields it selects', async () => {
    const topic = await conn.sobject('PushTopic').create({
      Name: 'WebLeads',
      Query: "SELECT Id, FirstName, LastName, Company, LeadSource FROM Lead WHERE LeadSource = 'Web'",
      ApiVersion: 62.0,
    });
    expect(topic.success).toBe(true);

    const l = listen<TopicEvent>('/topic/WebLeads', -1);
    await l.subscribed;
    const web = await createLead({ LastName: 'Webber', LeadSource: 'Web', Email: 'w@example.com' });
    const phone = await createLead({ LastName: 'Caller', LeadSource: 'Phone Inquiry' });
    await waitFor('the Web lead', () => l.events.length >= 1);
    await settle();
    expect(l.events).toHaveLength(1);
    expect(l.events[0]!.event).toMatchObject({ type: 'created', replayId: expect.any(Number) });
    expect(l.events[0]!.event.createdDate).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(l.events[0]!.sobject).toMatchObject({
      Id: web,
      LastName: 'Webber',
      Company: 'Acme',
      LeadSource: 'Web',
    });
    expect(l.events[0]!.sobject).not.toHaveProperty('Email');
    expect(l.events[0]!.sobject).not.toHaveProperty('attributes');

    // an update that makes the phone lead match notifies as 'updated'
    await conn.sobject('Lead').update({ Id: phone, LeadSource: 'Web' });
    await waitFor('the updated lead', () => l.events.length >= 2);
    expect(l.events[1]!.event.type).toBe('updated');
    expect(l.events[1]!.sobject['Id']).toBe(phone);
    expect(l.events[1]!.event.replayId).toBeGreaterThan(l.events[0]!.event.replayId);

    // NotifyForFields defaults to Referenced: a change to a field outside SELECT and WHERE is silent
    await conn.sobject('Lead').update({ Id: web, Email: 'other@example.com' });
    await settle();
    expect(l.events).toHaveLength(2);
    await conn.sobject('Lead').update({ Id: web, Company: 'Acme Two' });
    await waitFor('the referenced-field update', () => l.events.length === 3);
    expect(l.events[2]!.sobject).toMatchObject({ Id: web, Company: 'Acme Two' });
  });

  it('refuses subscriptions to topics and objects that do not exist', async () => {
    const topic = listen<TopicEvent>('/topic/NoSuchTopic', -1);
    await expect(topic.subscribed).rejects.toBeTruthy();
    expect(topic.subscribeReplies[0]).toMatchObject({
      successful: false,
      error: '400::The channel you requested to subscribe to does not exist {/topic/NoSuchTopic}',
    });
    const cdc = listen<CdcEvent>('/data/WidgetChangeEvent', -1);
    await expect(cdc.subscribed).rejects.toBeTruthy();
    expect(cdc.subscribeReplies[0]).toMatchObject({
      error: '400::The channel you requested to subscribe to does not exist {/data/WidgetChangeEvent}',
    });
  });
});

describe('Bayeux protocol edges (raw HTTP)', () => {
  it('answers garbage with 400 Bayeux errors and keeps serving', async () => {
    const token = await newToken();
    for (const body of ['not json', '', '[]', '42', '{"channel":']) {
      const r = await bayeux(body, token);
      expect(r.status).toBe(400);
      expect(r.messages[0]).toMatchObject({ successful: false, error: expect.stringMatching(/^400:/) });
    }
    const mixed = await bayeux(JSON.stringify([1, { nochannel: true }]), token);
    expect(mixed.status).toBe(400);
    expect(mixed.messages).toHaveLength(2);
    const get = await bayeux('', token, 'GET');
    expect(get.status).toBe(400);
    const noVersion = await fetch(`${emu.url}/cometd/`, { method: 'POST', body: '[]' });
    expect(noVersion.status).toBe(400);

    // still serving: a jsforce client gets events
    const l = listen<CdcEvent>(LEAD_CDC, -1);
    await l.subscribed;
    const id = await createLead({ LastName: 'Still here' });
    await waitFor('an event after the garbage', () => l.events.length === 1);
    expect(l.events[0]!.payload.ChangeEventHeader['recordIds']).toEqual([id]);
  });

  it('checks the session on every request and forgets unknown clients with handshake advice', async () => {
    const token = await newToken();
    const noAuth = await bayeux(
      JSON.stringify([
        { channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['long-polling'] },
      ]),
      null,
    );
    expect(noAuth.status).toBe(401);
    expect(noAuth.messages[0]).toMatchObject({ successful: false, advice: { reconnect: 'none' } });

    const hs = await bayeux(
      JSON.stringify([
        {
          channel: '/meta/handshake',
          version: '1.0',
          supportedConnectionTypes: ['long-polling', 'websocket'],
        },
      ]),
      token,
    );
    expect(hs.messages[0]).toMatchObject({
      successful: true,
      version: '1.0',
      supportedConnectionTypes: ['long-polling'],
      advice: { timeout: CONNECT_TIMEOUT_MS, interval: 0, reconnect: 'retry' },
      ext: { replay: true, 'payload.format': true },
    });

    const unknown = await bayeux(
      JSON.stringify([
        { channel: '/meta/connect', clientId: 'nobody', connectionType: 'long-polling', id: '7' },
      ]),
      token,
    );
    expect(unknown.messages[0]).toMatchObject({
      id: '7',
      successful: false,
      error: '403::Unknown client',
      advice: { reconnect: 'handshake' },
    });

    const clientId = hs.messages[0]!['clientId'] as string;
    const wrongToken = await bayeux(
      JSON.stringify([{ channel: '/meta/connect', clientId, connectionType: 'long-polling' }]),
      'expired',
    );
    expect(wrongToken.messages[0]).toMatchObject({
      error: '401::Authentication invalid',
      advice: { reconnect: 'none' },
    });
  });

  it('batches a burst of events into one connect reply and replays -2 / N per channel', async () => {
    const token = await newToken();
    const clientId = await rawHandshake(token);
    const sub = await bayeux(
      JSON.stringify([
        { channel: '/meta/subscribe', clientId, subscription: LEAD_CDC, ext: { replay: { [LEAD_CDC]: -1 } } },
      ]),
      token,
    );
    expect(sub.messages[0]).toMatchObject({ successful: true, subscription: LEAD_CDC });

    const connectBody = JSON.stringify([
      { channel: '/meta/connect', clientId, connectionType: 'long-polling', id: 'c1' },
    ]);
    const held = bayeux(connectBody, token);
    await settle(50);
    const ids = emu.org
      .insertMany(
        'Lead',
        [1, 2, 3].map((n) => ({ LastName: `Burst ${n}`, Company: 'Burst' })),
      )
      .map((r) => r.Id);
    const reply = await held;
    const deliveries = reply.messages.filter((m) => m['channel'] === LEAD_CDC);
    expect(
      deliveries.map((m) => ((m['data'] as CdcEvent).payload.ChangeEventHeader['recordIds'] as string[])[0]),
    ).toEqual(ids);
    expect(reply.messages.at(-1)).toMatchObject({ channel: '/meta/connect', successful: true, id: 'c1' });

    // a replay map without the channel is refused, as Salesforce does
    const missing = await bayeux(
      JSON.stringify([
        { channel: '/meta/subscribe', clientId, subscription: LEAD_CDC, ext: { replay: { '/topic/X': -1 } } },
      ]),
      token,
    );
    expect(missing.messages[0]).toMatchObject({
      successful: false,
      error: expect.stringContaining("wasn't found"),
    });

    // N replays what follows N on this channel only
    const first = (deliveries[0]!['data'] as CdcEvent).event.replayId;
    const other = await rawHandshake(token);
    await bayeux(
      JSON.stringify([
        {
          channel: '/meta/subscribe',
          clientId: other,
          subscription: LEAD_CDC,
          ext: { replay: { [LEAD_CDC]: first } },
        },
      ]),
      token,
    );
    const replayed = await bayeux(
      JSON.stringify([{ channel: '/meta/connect', clientId: other, connectionType: 'long-polling' }]),
      token,
    );
    const replayedIds = replayed.messages
      .filter((m) => m['channel'] === LEAD_CDC)
      .map((m) => ((m['data'] as CdcEvent).payload.ChangeEventHeader['recordIds'] as string[])[0]);
    expect(replayedIds).toEqual(ids.slice(1));

    // a held connect with nothing to deliver is answered at the advised timeout
    const started = Date.now();
    const idle = await bayeux(connectBody, token);
    expect(Date.now() - started).toBeGreaterThanOrEqual(CONNECT_TIMEOUT_MS - 100);
    expect(idle.messages).toEqual([expect.objectContaining({ channel: '/meta/connect', successful: true })]);

    const bye = await bayeux(JSON.stringify([{ channel: '/meta/disconnect', clientId }]), token);
    expect(bye.messages[0]).toMatchObject({ successful: true });
    const after = await bayeux(connectBody, token);
    expect(after.messages[0]).toMatchObject({ error: '403::Unknown client' });
  });
});

describe('CometdServer on its own (fake clock, small limits)', () => {
  const TOKEN = 'fixed-token';
  let clock = Date.parse('2026-01-05T10:00:00.000Z');
  let sessionValid = true;
  let org: Org;
  let cometd: CometdServer;
  let server: Server;
  let url: string;

  beforeAll(async () => {
    org = new Org();
    cometd = new CometdServer({
      org,
      validateToken: (t) => t === TOKEN && sessionValid,
      retention: { cdcMs: 60_000, pushTopicMs: 30_000 },
      connectTimeoutMs: 600,
      now: () => new Date(clock),
      clientIdleMs: 1000,
      maxClients: 1,
    });
    server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => cometd.handle(req, res, body));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    cometd.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  async function post(messages: Bayeux[], token = TOKEN): Promise<Bayeux[]> {
    const res = await fetch(`${url}/cometd/62.0`, {
      method: 'POST',
      headers: { authorization: `OAuth ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(messages),
    });
    return (await res.json()) as Bayeux[];
  }

  async function handshake(): Promise<string> {
    const [hs] = await post([
      { channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['long-polling'] },
    ]);
    return hs!['clientId'] as string;
  }

  const insertLead = (name: string): string => org.insert('Lead', { LastName: name, Company: 'Clock' }).Id;
  const replayIdOf = (m: Bayeux): number => (m['data'] as CdcEvent).event.replayId;
  const recordOf = (m: Bayeux): string =>
    ((m['data'] as CdcEvent).payload.ChangeEventHeader['recordIds'] as string[])[0]!;

  it('drops events past the retention window, and ageOut(ms) drops only the older ones', async () => {
    const early = insertLead('Early');
    clock += 30_000;
    const later = insertLead('Later');

    let clientId = await handshake();
    // subscribe and connect in one request: the replayed events come back in the same reply
    const first = await post([
      { channel: '/meta/subscribe', clientId, subscription: LEAD_CDC, ext: { replay: { [LEAD_CDC]: -2 } } },
      { channel: '/meta/connect', clientId, connectionType: 'long-polling' },
    ]);
    expect(first[0]).toMatchObject({ channel: '/meta/subscribe', successful: true });
    expect(first.at(-1)).toMatchObject({ channel: '/meta/connect', successful: true });
    const events = first.filter((m) => m['channel'] === LEAD_CDC);
    expect(events.map(recordOf)).toEqual([early, later]);
    const earlyReplay = replayIdOf(events[0]!);

    cometd.ageOut(20_000); // only "Early" is older than 20 s
    clientId = await handshake();
    const [rejected] = await post([
      {
        channel: '/meta/subscribe',
        clientId,
        subscription: LEAD_CDC,
        ext: { replay: { [LEAD_CDC]: earlyReplay } },
      },
    ]);
    expect(rejected).toMatchObject({ successful: false, error: INVALID_REPLAY(earlyReplay) });

    clock += 45_000; // "Later" is now 45 s old: inside the 60 s CDC window
    const [accepted] = await post([
      {
        channel: '/meta/subscribe',
        clientId,
        subscription: LEAD_CDC,
        ext: { replay: { [LEAD_CDC]: replayIdOf(events[1]!) } },
      },
    ]);
    expect(accepted).toMatchObject({ successful: true });
    clock += 20_000; // and now 65 s: gone
    const [gone] = await post([
      {
        channel: '/meta/subscribe',
        clientId,
        subscription: LEAD_CDC,
        ext: { replay: { [LEAD_CDC]: replayIdOf(events[1]!) } },
      },
    ]);
    expect(gone).toMatchObject({ successful: false, error: INVALID_REPLAY(replayIdOf(events[1]!)) });
  });

  it('answers a held connect with 401 when the session expired meanwhile', async () => {
    const clientId = await handshake();
    const held = post([{ channel: '/meta/connect', clientId, connectionType: 'long-polling' }]);
    await settle(100);
    sessionValid = false;
    try {
      const reply = await held;
      expect(reply.at(-1)).toMatchObject({
        successful: false,
        error: '401::Authentication invalid',
        advice: { reconnect: 'none' },
      });
    } finally {
      sessionValid = true;
    }
  });

  it('forgets a client that stops connecting', async () => {
    const clientId = await handshake();
    clock += 5_000;
    await settle(1_200); // one sweep of the idle timer
    const [reply] = await post([{ channel: '/meta/connect', clientId, connectionType: 'long-polling' }]);
    expect(reply).toMatchObject({
      successful: false,
      error: '403::Unknown client',
      advice: { reconnect: 'handshake' },
    });
  });

  it('a jsforce client that is forgotten handshakes again and resumes from its replay id, losing nothing', async () => {
    const c = new jsforce.Connection({ instanceUrl: url, accessToken: TOKEN, version: '62.0' });
    const l = listen<CdcEvent>(LEAD_CDC, -1, c);
    await l.subscribed;
    const one = insertLead('One');
    await waitFor('One', () => l.events.length === 1);

    await handshake(); // maxClients is 1: the jsforce client is evicted (403::Unknown client)
    const two = insertLead('Two');
    await waitFor('Two, after the re-handshake', () => l.events.length >= 2);
    const three = insertLead('Three');
    await waitFor('Three', () => l.events.length >= 3);
    await settle();
    expect(l.events.map((e) => (e.payload.ChangeEventHeader['recordIds'] as string[])[0])).toEqual([
      one,
      two,
      three,
    ]);
    expect(l.subscribeReplies.filter((r) => r['successful'] === true).length).toBeGreaterThanOrEqual(2);
  });

  it('close() answers held connects at once', async () => {
    const clientId = await handshake();
    const started = Date.now();
    const held = post([{ channel: '/meta/connect', clientId, connectionType: 'long-polling' }]);
    await settle(50);
    cometd.close();
    const reply = await held;
    expect(Date.now() - started).toBeLessThan(500);
    expect(reply.at(-1)).toMatchObject({ channel: '/meta/connect' });
  });
});
