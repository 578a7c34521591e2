import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../../src/store/index.ts';
import { loadMigrations } from '../../src/store/migrations.ts';
import type { Store } from '../../src/store/index.ts';
import {
  dropSchemas,
  randomSchema,
  startTestPostgres,
  withPgClient,
  withSchema,
  type TestPostgres,
} from '../helpers/postgres.ts';
import { storeContract } from './store-contract.ts';

let pgServer: TestPostgres | undefined;
const prefix = randomSchema('t_store');

async function server(): Promise<TestPostgres> {
  pgServer ??= await startTestPostgres();
  return pgServer;
}

beforeAll(async () => {
  await server();
}, 120_000);

afterAll(async () => {
  if (!pgServer) return;
  await dropSchemas(pgServer.url, prefix);
  await pgServer.stop();
});

// one schema per contract database, all under this file's random prefix
storeContract('postgres', async (db) => openStore(withSchema((await server()).url, `${prefix}_${db}`)));

describe('postgres store specifics', () => {
  it('migrations from several pools at once do not fight', async () => {
    const { url } = await server();
    const schemaUrl = withSchema(url, `${prefix}_race`);
    const stores: Store[] = await Promise.all(Array.from({ length: 4 }, () => openStore(schemaUrl)));
    try {
      const rows = await withPgClient(url, async (c) => {
        const res = await c.query(
          `SELECT version, name FROM "${prefix}_race".lead_notifier_migrations ORDER BY version`,
        );
        return res.rows as { version: number; name: string }[];
      });
      // each migration recorded exactly once
      expect(rows).toEqual(loadMigrations('postgres').map((m) => ({ version: m.version, name: m.name })));
      await stores[0]!.commitBatch('r', [], {
        floor: '2024-01-01T00:00:00Z',
        watermark: '2024-01-01T00:00:00Z',
      });
      expect(await stores[3]!.listCheckpoints()).toHaveLength(1);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it('keeps its tables in the schema named by the URL, not in public', async () => {
    const { url } = await server();
    const store = await openStore(withSchema(url, `${prefix}_where`));
    await store.close();
    const tables = await withPgClient(url, async (c) => {
      const res = await c.query(
        `SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`,
        [`${prefix}_where`],
      );
      return res.rows.map((r: { table_name: string }) => r.table_name);
    });
    expect(tables).toEqual([
      'checkpoints',
      'cluster_replicas',
      'digest_items',
      'digests',
      'lead_notifier_migrations',
      'match_state',
      'outbox',
      'rule_leases',
      'send_api_messages',
      'send_pace',
    ]);
  });

  it('readOnly refuses writes', async () => {
    const { url } = await server();
    const schemaUrl = withSchema(url, `${prefix}_ro`);
    const writer = await openStore(schemaUrl);
    const reader = await openStore(schemaUrl, { readOnly: true });
    try {
      await writer.commitBatch('r', [], { floor: '2024-01-01T00:00:00Z', watermark: '2024-01-01T00:00:00Z' });
      expect(await reader.listCheckpoints()).toHaveLength(1);
      await expect(
        reader.commitBatch('r', [], { floor: '2024-01-01T00:00:00Z', watermark: '2024-01-02T00:00:00Z' }),
      ).rejects.toThrow(/read-only/);
    } finally {
      await writer.close();
      await reader.close();
    }
  });

  it('rejects a schema name that is not a plain identifier', async () => {
    const { url } = await server();
    await expect(openStore(withSchema(url, 'x"; drop table y; --'))).rejects.toThrow(/plain identifier/);
  });
});
