// The emulator's Pub/Sub API over real gRPC with a bare grpc-js client (no code of ours on the
// client side but the vendored .proto): topics, schemas, the three replay presets, flow control,
// keepalives, the idle close, and Salesforce's status codes with their error-code trailers.
import * as grpc from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startEmulator } from '../../src/emulator/index.ts';
import type { Emulator } from '../../src/emulator/index.ts';
import { compileSchema, decodeChange } from '../../src/sources/salesforce/pubsub/avro.ts';
import { pubSubService } from '../../src/sources/salesforce/pubsub/proto.ts';
import type {
  FetchRequest,
  FetchResponse,
  PubSubClient,
  PubSubClientConstructor,
} from '../../src/sources/salesforce/pubsub/proto.ts';

let emu: Emulator;
let client: PubSubClient;
let md: grpc.Metadata;

beforeEach(async () => {
  emu = await startEmulator({ port: 0, pubsub: { keepaliveMs: 200, idleTimeoutMs: 400 } });
  const Client = pubSubService() as unknown as PubSubClientConstructor;
  client = new Client(emu.pubsub.endpoint, grpc.credentials.createInsecure());
  const token = (await (
    await fetch(`${emu.url}/services/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials&client_id=emulator-client&client_secret=emulator-secret',
    })
  ).json()) as { access_token: string; id: string };
  md = new grpc.Metadata();
  md.set('accesstoken', token.access_token);
  md.set('instanceurl', emu.url);
  md.set('tenantid', token.id.split('/').at(-2)!);
});
afterEach(async () => {
  client.close();
  await emu.close();
});

function unary<T>(method: 'GetTopic' | 'GetSchema', req: object, meta = md): Promise<T> {
  return new Promise((resolve, reject) => {
    const cb = (err: grpc.ServiceError | null, res?: T) => (err ? reject(err) : resolve(res!));
    (client[method] as (r: object, m: grpc.Metadata, o: grpc.CallOptions, c: typeof cb) => void)(
      req,
      meta,
      {},
      cb,
    );
  });
}

interface Stream {
  call: grpc.ClientDuplexStream<FetchRequest, FetchResponse>;
  responses: FetchResponse[];
  status: Promise<grpc.StatusObject>;
}

function subscribe(first: FetchRequest, meta = md): Stream {
  const call = client.Subscribe(meta);
  const responses: FetchResponse[] = [];
  call.on('data', (r: FetchResponse) => responses.push(r));
  const status = new Promise<grpc.StatusObject>((resolve) => {
    call.on('status', resolve);
    call.on('error', () => {});
  });
  call.write(first);
  return { call, responses, status };
}

const events = (s: Stream) => s.responses.flatMap((r) => r.events);
const until = async (cond: () => boolean, ms = 3000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};
const lead = (i: number) => emu.org.insert('Lead', { LastName: `L${i}`, Company: `C${i}` }).Id;

describe('emulated Pub/Sub API', () => {
  it('GetTopic and GetSchema describe a CDC topic; the schema decodes its events', async () => {
    const topic = await unary<{ schema_id: string; can_subscribe: boolean; tenant_guid: string }>(
      'GetTopic',
      {
        topic_name: '/data/LeadChangeEvent',
      },
    );
    expect(topic.can_subscribe).toBe(true);
    const schema = await unary<{ schema_json: string; schema_id: string }>('GetSchema', {
      schema_id: topic.schema_id,
    });
    expect(schema.schema_id).toBe(topic.schema_id);
    const s = subscribe({ topic_name: '/data/LeadChangeEvent', replay_preset: 'LATEST', num_requested: 10 });
    await until(() => emu.pubsub.subscriptions().length === 1);
    const id = lead(1);
    await until(() => events(s).length === 1);
    const e = events(s)[0]!;
    expect(e.event.schema_id).toBe(topic.schema_id);
    const change = decodeChange(compileSchema(schema.schema_json), e.event.payload, e.replay_id);
    expect(change).toMatchObject({ entityName: 'Lead', changeType: 'CREATE', recordIds: [id] });
    expect(change.fields['Company']).toBe('C1');
    s.call.cancel();
  });

  it('replays EARLIEST, LATEST and CUSTOM; CUSTOM outside retention is INVALID_ARGUMENT replayid.corrupted', async () => {
    lead(1);
    lead(2);
    const earliest = subscribe({
      topic_name: '/data/LeadChangeEvent',
      replay_preset: 'EARLIEST',
      num_requested: 100,
    });
    await until(() => events(earliest).length === 2);
    const latest = subscribe({
      topic_name: '/data/LeadChangeEvent',
      replay_preset: 'LATEST',
      num_requested: 100,
    });
    await until(() => emu.pubsub.subscriptions().length === 2);
    lead(3);
    await until(() => events(latest).length === 1 && events(earliest).length === 3);
    const after = events(earliest)[0]!.replay_id;
    const custom = subscribe({
      topic_name: '/data/LeadChangeEvent',
      replay_preset: 'CUSTOM',
      replay_id: after,
      num_requested: 100,
    });
    await until(() => events(custom).length === 2); // the two after the first
    for (const s of [earliest, latest, custom]) s.call.cancel();

    emu.pubsub.ageOut();
    const old = subscribe({
      topic_name: '/data/LeadChangeEvent',
      replay_preset: 'CUSTOM',
      replay_id: after,
      num_requested: 1,
    });
    const st = await old.status;
    expect(st.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(st.metadata.get('error-code')).toEqual([
      'sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted',
    ]);
    expect(st.details).toMatch(/rpcId: /);
  });

  it('delivers no more than requested, caps credits at 100, sends keepalives, closes an idle stream', async () => {
    const s = subscribe({ topic_name: '/data/LeadChangeEvent', replay_preset: 'LATEST', num_requested: 3 });
    await until(() => emu.pubsub.subscriptions().length === 1);
    for (let i = 0; i < 5; i++) lead(i);
    await until(() => events(s).length === 3);
    await new Promise((r) => setTimeout(r, 100));
    expect(events(s).length).toBe(3);
    s.call.write({ num_requested: 500 });
    await until(() => events(s).length === 5);
    expect(emu.pubsub.subscriptions()[0]!.maxOutstanding).toBe(100);
    // keepalive: an empty batch with the latest replay id
    await until(
      () => s.responses.some((r) => r.events.length === 0 && r.latest_replay_id.length === 8),
      2000,
    );
    s.call.cancel();

    const idle = subscribe({
      topic_name: '/data/LeadChangeEvent',
      replay_preset: 'LATEST',
      num_requested: 1,
    });
    await until(() => emu.pubsub.subscriptions().length === 2);
    lead(9); // uses the only credit; then zero credits for longer than idleTimeoutMs
    const st = await idle.status;
    expect(st.code).toBe(grpc.status.OK);
    expect(emu.pubsub.subscriptions()[1]!.closedBy).toBe('idle without credits');
  });

  it("refuses bad sessions and unknown topics with Salesforce's codes", async () => {
    const bad = new grpc.Metadata();
    bad.set('accesstoken', 'nope');
    bad.set('instanceurl', emu.url);
    bad.set('tenantid', String(md.get('tenantid')[0]));
    const err = (await unary('GetTopic', { topic_name: '/data/LeadChangeEvent' }, bad).catch(
      (e: unknown) => e,
    )) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(err.metadata.get('error-code')).toEqual(['sfdc.platform.eventbus.grpc.service.auth.error']);
    const st = await subscribe({ topic_name: '/data/LeadChangeEvent', num_requested: 1 }, bad).status;
    expect(st.code).toBe(grpc.status.UNAUTHENTICATED);
    const nf = (await unary('GetTopic', { topic_name: '/data/leadChangeEvent' }).catch(
      (e: unknown) => e,
    )) as grpc.ServiceError;
    expect(nf.code).toBe(grpc.status.NOT_FOUND);
    // a session that expires while the stream is open ends it with UNAUTHENTICATED
    const s = subscribe({ topic_name: '/data/LeadChangeEvent', replay_preset: 'LATEST', num_requested: 5 });
    await until(() => emu.pubsub.subscriptions().length === 1);
    emu.control.expireSessions();
    expect((await s.status).code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('fault hooks: end the streams, fail them with UNAVAILABLE, fail the next subscribe', async () => {
    const a = subscribe({ topic_name: '/data/LeadChangeEvent', num_requested: 5 });
    await until(() => emu.pubsub.subscriptions().length === 1);
    expect(emu.pubsub.endStreams()).toBe(1);
    expect((await a.status).code).toBe(grpc.status.OK);
    const b = subscribe({ topic_name: '/data/LeadChangeEvent', num_requested: 5 });
    await until(() => emu.pubsub.subscriptions().length === 2);
    emu.pubsub.failStreams();
    expect((await b.status).code).toBe(grpc.status.UNAVAILABLE);
    emu.pubsub.failNextSubscribes(1);
    expect((await subscribe({ topic_name: '/data/LeadChangeEvent', num_requested: 5 }).status).code).toBe(
      grpc.status.UNAVAILABLE,
    );
  });
});
