// Picks the stream client for `salesforce.streaming.api`: the Pub/Sub API (gRPC, the default and
// Salesforce's forward path for Change Data Capture) or the CometD Streaming API. Both have the
// same outward shape, so the app does not care which one runs.
import type { Connection } from 'jsforce';
import type { Logger } from 'pino';
import type { SalesforceConfig } from '../../config/index.ts';
import type { RulePoller } from './poller.ts';
import type { UpdatePoller } from './update-poller.ts';
import { PubSubStreamer } from './pubsub/streamer.ts';
import type { ReconnectReason } from './pubsub/streamer.ts';
import { RuleStreamer } from './streamer.ts';

export type StreamingApi = 'pubsub' | 'cometd';

export interface RuleStream {
  readonly channel: string;
  readonly state: 'stopped' | 'subscribing' | 'subscribed' | 'reconciling' | 'error';
  readonly lastEventAt: string | null;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface RuleStreamOptions {
  poller: RulePoller | UpdatePoller;
  conn: Connection;
  logger: Logger;
  reconcile: () => Promise<void>;
  reauthenticate: () => Promise<void>;
  onReconnect?: (api: StreamingApi, reason: ReconnectReason) => void;
}

export const DEFAULT_STREAMING = {
  api: 'pubsub',
  endpoint: 'api.pubsub.salesforce.com:7443',
  tls: true,
} as const;

export function createRuleStream(streaming: SalesforceConfig['streaming'], o: RuleStreamOptions): RuleStream {
  const s = streaming ?? DEFAULT_STREAMING;
  if (s.api === 'cometd') return new RuleStreamer(o);
  return new PubSubStreamer({
    ...o,
    endpoint: s.endpoint,
    tls: s.tls,
    onReconnect: (reason) => o.onReconnect?.('pubsub', reason),
  });
}
