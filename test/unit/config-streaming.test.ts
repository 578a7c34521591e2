// salesforce.streaming: the Pub/Sub API by default, TLS unless the endpoint is loopback.
import { describe, expect, it } from 'vitest';
import { streamingSchema } from '../../src/config/schema.ts';

describe('salesforce.streaming', () => {
  it('defaults to the Pub/Sub API over TLS', () => {
    expect(streamingSchema.parse({})).toEqual({
      api: 'pubsub',
      endpoint: 'api.pubsub.salesforce.com:7443',
      tls: true,
    });
  });

  it('allows tls: false only for a loopback endpoint', () => {
    expect(streamingSchema.safeParse({ endpoint: '127.0.0.1:50051', tls: false }).success).toBe(true);
    expect(streamingSchema.safeParse({ endpoint: 'localhost:50051', tls: false }).success).toBe(true);
    const bad = streamingSchema.safeParse({ endpoint: 'api.pubsub.salesforce.com:7443', tls: false });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.path).toEqual(['tls']);
    expect(bad.error?.issues[0]?.message).toMatch(/only for a loopback endpoint/);
  });

  it('wants host:port and a known api', () => {
    expect(streamingSchema.safeParse({ endpoint: 'api.pubsub.salesforce.com' }).success).toBe(false);
    expect(streamingSchema.safeParse({ api: 'soap' }).success).toBe(false);
    expect(streamingSchema.parse({ api: 'cometd' }).api).toBe('cometd');
  });
});
