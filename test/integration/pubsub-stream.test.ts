// The Pub/Sub API client (PubSubStreamer) against the emulator's Pub/Sub server over real gRPC on
// loopback, with real jsforce for the session and enrichment query and a real SQLite store:
// created and updated records, bitmaps, replay, flow control, and every way a stream can break.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Enqueuer } from '../../src/app/enqueue.ts';
import { ruleSchema } from '../../src/config/schema.ts';
import type { RuleConfig } from '../../src/config/schema.ts';
import { startEmulator } from '../../src/emulator/index.ts';
import type { Emulator } from '../../src/emulator/index.ts';
import { replayIdBytes } from '../../src/emulator/pubsub/server.ts';
import { connectSalesforce } from '../../src/sources/salesforce/connection.ts';
import { emulatorSalesforceConfig, sourceConnection } from '../helpers/emulator.ts';
import { RulePoller } from '../../src/sources/salesforce/poller.ts';
import type { DecodedChange } from '../../src/sources/salesforce/pubsub/avro.ts';
import { PubSubStreamer } from '../../src/sources/salesforce/pubsub/streamer.ts';
import type { PubSubStreamerOptions, ReconnectReason } from '../../src/sources/salesforce/pubsub/streamer.ts';
import { openStore } from '../../src/store/index.ts';
import type { Store } from '../../src/store/index.ts';
import { compileRule } from '../../src/templates/index.ts';
import { waitFor } from '../helpers/process.ts';

const silent = pino({ level: process.env.DEBUG_PUBSUB ? 'debug' : 'silent' });
let emu: Emulator;
let dir: string;
let store: Store;
let streamers: PubSubStreamer[] = [];

beforeEach(async () => {
  emu = await startEmulator({ port: 0, pubsub: { keepaliveMs: 300, idleTimeoutMs: 60_000 } });
  dir = mkdtempSync(join(tmpdir(), 'ln-pubsub-'));
  store = await openStore(`sqlite:${join(dir, 'n.db')}`, { exclusive: true });
  await store.migrate();
});
afterEach(async () => {
  for (const s of streamers) await s.stop();
  streamers = [];
  await store.close();
  await emu.close();
  rmSync(dir, { recursive: true, force: true });
});

function rule(): RuleConfig {
  return ruleSchema.parse({
    name: 'leads',
    object: 'Lead',
    mode: 'stream',
    startFrom: '2020-01-01T00:00:00Z',
    select: ['FirstName', 'LastName', 'Company'],
    email: {
      from: 'desk@example.com',
      to: 'sales@example.com',
      subject: '{{LastName}}',
      text: '{{Company}}',
    },
  });
}

interface Harness {
  streamer: PubSubStreamer;
  poller: RulePoller;
  reasons: ReconnectReason[];
  reconciles: number;
}

async function harness(over: Partial<PubSubStreamerOptions> = {}): Promise<Harness> {
  const sf = emulatorSalesforceConfig(emu.url);
  const conn = await sourceConnection(emu.url, dir);
  const r = rule();
  const enqueuer = new Enqueuer({ rule: r, compiled: compileRule(r, dir), store, logger: silent });
  const poller = new RulePoller({
    rule: r,
    conn,
    store,
    commit: enqueuer.commit,
    apiVersion: '62.0',
    logger: silent,
  });
  const h: Harness = { poller, reasons: [], reconciles: 0, streamer: undefined as unknown as PubSubStreamer };
  h.streamer = new PubSubStreamer({
    poller,
    conn,
    logger: silent,
    endpoint: emu.pubsub.endpoint,
    tls: false,
    reconcile: async () => {
      h.reconciles += 1;
      await poller.pollOnce();
    },
    reauthenticate: () => connectSalesforce(conn, sf, dir),
    onReconnect: (reason) => h.reasons.push(reason),
    backoff: { minMs: 20, maxMs: 200 },
    ...over,
  });
  streamers.push(h.streamer);
  return h;
}

/** Waits until the emulator holds an open Subscribe stream (the LATEST cursor is set). */
async function subscribed(count = 1): Promise<void> {
  await waitFor(
    () => emu.pubsub.subscriptions().filter((s) => s.open).length >= count,
    5000,
    'a subscription',
  );
}

async function recordIds(): Promise<string[]> {
  return (await store.list({ limit: 1000 })).map((r) => r.recordId).sort();
}

const lead = (i: number, extra: Record<string, unknown> = {}) =>
  emu.org.insert('Lead', {
    FirstName: `F${i}`,
    LastName: `L${i}`,
    Company: `C${i}`,
    Phone: '555-0100',
    ...extra,
  }).Id;

describe('PubSubStreamer over the emulated Pub/Sub API', () => {
  it('hands on CREATE and UPDATE events with decoded fields and bitmaps decoded to names', async () => {
    const seen: DecodedChange[] = [];
    const h = await harness({
      deliver: async (changes, replayId) => {
        seen.push(...changes);
        await h.poller.enqueueByIds(
          changes.filter((c) => c.changeType === 'CREATE').flatMap((c) => c.recordIds),
          replayId,
        );
      },
    });
    await h.streamer.start();
    await subscribed();
    const id = lead(1, { Status: 'Open - Not Contacted' });
    emu.org.update('Lead', id, { Status: 'Working - Contacted', FirstName: 'Ann', Phone: null });
    await waitFor(() => seen.length >= 2, 5000, 'two change events');

    const [created, updated] = seen;
    expect(created!.changeType).toBe('CREATE');
    expect(created!.recordIds).toEqual([id]);
    expect(created!.fields['Company']).toBe('C1');
    expect(created!.fields['Name']).toEqual({ FirstName: 'F1', LastName: 'L1' });
    expect(typeof created!.fields['CreatedDate']).toBe('number'); // epoch ms, as the Pub/Sub API sends
    expect(created!.changedFields).toEqual([]);

    expect(updated!.changeType).toBe('UPDATE');
    // Lead schema positions: 4 LastModifiedDate, 8 Phone, 10 Status, 5 Name (0 FirstName, 1 LastName)
    const raw = emu.pubsub.schemaFor('Lead')!;
    expect(raw.fields.map((f) => f.name).slice(0, 11)).toEqual([
      'ChangeEventHeader',
      'CreatedById',
      'CreatedDate',
      'LastModifiedById',
      'LastModifiedDate',
      'Name',
      'Company',
      'Email',
      'Phone',
      'Title',
      'Status',
    ]);
    expect(new Set(updated!.changedFields)).toEqual(
      new Set([
        'LastModifiedDate',
        'Phone',
        'Status',
        'Name.FirstName',
        ...(updated!.changedFields.includes('LastModifiedById') ? ['LastModifiedById'] : []),
      ]),
    );
    expect(updated!.nulledFields).toEqual(['Phone']);
    expect(updated!.fields['Status']).toBe('Working - Contacted');
    expect(updated!.fields['Name']).toEqual({ FirstName: 'Ann', LastName: null });
    expect(await recordIds()).toEqual([id]);
    // the stored replay id is the event's bytes, base64
    const cp = await store.getCheckpoint('leads');
    expect(cp?.replayId).toBe(updated!.replayId);
  }, 20_000);

  it('sends the hand-computed bitmaps on the wire', async () => {
    const seen: DecodedChange[] = [];
    const h = await harness({
      deliver: async (changes) => {
        seen.push(...changes);
      },
    });
    await h.streamer.start();
    await subscribed();
    const id = lead(2);
    emu.org.update('Lead', id, { Status: 'Closed - Converted', FirstName: 'Bo', Phone: null });
    await waitFor(() => seen.length >= 2, 5000, 'the update');
    // Status (bit 10), Phone (8), LastModifiedDate (4) = 0x510, plus LastModifiedById (3) = 0x518
    // when the org stamps it; Name (position 5) subfield FirstName (0) = 5-0x1; Phone nulled = 0x100
    const header = emu.pubsub.lastHeader('Lead')!;
    expect(['0x510', '0x518']).toContain((header.changedFields as string[])[0]);
    expect((header.changedFields as string[])[1]).toBe('5-0x1');
    expect(header.nulledFields).toEqual(['0x100']);
  }, 20_000);

  it('resumes from the stored replay id: events while stopped arrive once, none twice', async () => {
    const a = await harness();
    await a.streamer.start();
    await subscribed();
    const first = lead(1);
    await waitFor(async () => (await recordIds()).length === 1, 5000, 'first lead');
    await a.streamer.stop();
    const whileDown = [lead(2), lead(3)];
    const b = await harness();
    await b.streamer.start();
    await waitFor(async () => (await recordIds()).length === 3, 5000, 'leads created while stopped');
    expect(await recordIds()).toEqual([first, ...whileDown].sort());
    const subs = emu.pubsub.subscriptions();
    expect(subs.at(-1)!.delivered).toBe(2); // CUSTOM after the stored id: only the two new ones
    expect(b.reconciles).toBe(0);
  }, 20_000);

  it('a rejected replay id reconciles by poll, then subscribes for new events', async () => {
    const a = await harness();
    await a.streamer.start();
    await subscribed();
    lead(1);
    await waitFor(async () => (await recordIds()).length === 1, 5000, 'first lead');
    await a.streamer.stop();
    lead(2);
    emu.pubsub.ageOut(); // the stored replay id is now outside the retained window
    const b = await harness();
    await b.streamer.start();
    await waitFor(() => b.reasons.includes('replay_rejected'), 5000, 'the rejection');
    await waitFor(async () => (await recordIds()).length === 2, 5000, 'the lead found by the reconcile poll');
    expect(b.reconciles).toBeGreaterThanOrEqual(1);
    await subscribed();
    lead(3);
    await waitFor(async () => (await recordIds()).length === 3, 5000, 'a new lead over the new subscription');
  }, 20_000);

  it('a dropped stream and UNAVAILABLE reconnect (reconciling first), missing nothing', async () => {
    const h = await harness();
    await h.streamer.start();
    await subscribed();
    lead(1);
    await waitFor(async () => (await recordIds()).length === 1, 5000, 'first lead');

    emu.pubsub.endStreams();
    lead(2);
    await waitFor(() => h.reasons.includes('ended'), 5000, 'the ended stream noticed');
    await waitFor(async () => (await recordIds()).length === 2, 5000, 'the lead after the drop');

    await waitFor(() => emu.pubsub.subscriptions().filter((x) => x.open).length === 1, 5000, 'resubscribed');
    emu.pubsub.failNextSubscribes(2); // the next two attempts are refused too
    emu.pubsub.failStreams(grpc.status.UNAVAILABLE);
    lead(3);
    await waitFor(() => h.reasons.filter((r) => r === 'unavailable').length >= 3, 5000, 'three UNAVAILABLE');
    await waitFor(async () => (await recordIds()).length === 3, 5000, 'the lead after UNAVAILABLE');
    await subscribed();
    lead(4);
    await waitFor(async () => (await recordIds()).length === 4, 5000, 'streaming again');
    expect(h.reconciles).toBeGreaterThanOrEqual(4);
    expect((await store.list({ limit: 100 })).length).toBe(4);
  }, 30_000);

  it('grants credits only for committed events, never more than 100 outstanding', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    let committed = 0;
    const violations: string[] = [];
    const h = await harness({
      deliver: async (changes, replayId) => {
        await gate;
        const sub = emu.pubsub.subscriptions().at(-1)!;
        // what the server was asked for so far never exceeds 100 + what we had committed
        if (sub.requested > 100 + committed) violations.push(`${sub.requested} > 100 + ${committed}`);
        await h.poller.enqueueByIds(
          changes.filter((c) => c.changeType === 'CREATE').flatMap((c) => c.recordIds),
          replayId,
        );
        committed += changes.length;
      },
    });
    await h.streamer.start();
    await subscribed();
    emu.org.insertMany(
      'Lead',
      Array.from({ length: 150 }, (_, i) => ({ LastName: `B${i}`, Company: `C${i}` })),
    );
    await waitFor(() => emu.pubsub.subscriptions().at(-1)!.delivered === 100, 5000, '100 delivered');
    await new Promise((r) => setTimeout(r, 300));
    const held = emu.pubsub.subscriptions().at(-1)!;
    expect(held.delivered).toBe(100); // nothing beyond the credits while nothing is committed
    expect(held.requested).toBe(100);
    open();
    await waitFor(async () => (await recordIds()).length === 150, 10_000, 'all 150');
    const end = emu.pubsub.subscriptions().at(-1)!;
    expect(end.maxOutstanding).toBeLessThanOrEqual(100);
    expect(end.requested).toBeLessThanOrEqual(100 + committed);
    expect(violations).toEqual([]);
  }, 20_000);

  it("a keepalive moves the stored replay id over other topics' events", async () => {
    const h = await harness();
    await h.streamer.start();
    await subscribed();
    emu.org.insert('Account', { Name: 'Acme' }); // another topic moves the bus
    const tip = replayIdBytes(1).toString('base64');
    await waitFor(
      async () => (await store.getCheckpoint('leads'))?.replayId === tip,
      5000,
      'keepalive stored',
    );
    expect(await recordIds()).toEqual([]);
  }, 20_000);

  it('a session expiring mid-stream authenticates again and resumes from the stored replay id', async () => {
    const h = await harness();
    await h.streamer.start();
    await subscribed();
    lead(1);
    await waitFor(async () => (await recordIds()).length === 1, 5000, 'first lead');
    emu.control.expireSessions();
    await waitFor(() => h.reasons.includes('auth'), 5000, 'UNAUTHENTICATED');
    lead(2);
    await waitFor(async () => (await recordIds()).length === 2, 5000, 'the lead after re-authentication');
    expect(h.reconciles).toBe(0); // resumed from the stored replay id, nothing to reconcile
    const last = emu.pubsub.subscriptions().at(-1)!;
    expect(last.open).toBe(true);
  }, 20_000);

  it('silence past the keepalive counts as a dead stream: reconcile, resubscribe', async () => {
    await emu.close();
    emu = await startEmulator({ port: 0, pubsub: { keepaliveMs: 60_000 } });
    const h = await harness({ silenceMs: 300 });
    await h.streamer.start();
    await waitFor(() => h.reasons.includes('silence'), 5000, 'silence noticed');
    expect(h.reconciles).toBeGreaterThanOrEqual(1);
    await subscribed();
    lead(1);
    await waitFor(async () => (await recordIds()).length === 1, 5000, 'streaming again');
  }, 20_000);
});
