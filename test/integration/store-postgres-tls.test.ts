// TLS to a managed PostgreSQL, as the store URL says it (pg-connection-string): `sslmode` and a CA
// file in `sslrootcert`. Against a private server of the test's own that serves a certificate for
// 127.0.0.1 signed by a CA of its own (test/helpers/private-postgres.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { PostgresStore } from '../../src/store/postgres.ts';
import { startPrivatePostgres, findPostgresBin } from '../helpers/private-postgres.ts';
import type { PrivatePostgres } from '../helpers/private-postgres.ts';

let db: PrivatePostgres | undefined;
const haveBinaries = findPostgresBin() !== null;

beforeAll(async () => {
  if (haveBinaries) db = await startPrivatePostgres({ tls: true });
}, 120_000);

afterAll(async () => {
  await db?.stop();
}, 60_000);

function url(query: Record<string, string>): string {
  const u = new URL(db!.url);
  for (const [k, v] of Object.entries(query)) u.searchParams.set(k, v);
  return u.toString();
}

/** TLS of the store's own sessions, as the server sees them (found by application_name) */
async function sessionTls(app: string): Promise<Array<{ ssl: boolean; version: string | null }>> {
  const admin = new pg.Client({ connectionString: db!.url });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ ssl: boolean; version: string | null }>(
      `SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1`,
      [app],
    );
    return rows;
  } finally {
    await admin.end();
  }
}

describe.skipIf(!haveBinaries)('postgres store over TLS', () => {
  it('sslmode=verify-full with sslrootcert: the session is encrypted and the server verified', async () => {
    const store = new PostgresStore(
      url({ sslmode: 'verify-full', sslrootcert: db!.caFile!, schema: 'tls_ok' }),
      {
        applicationName: 'ln-tls-verified',
      },
    );
    try {
      await store.migrate();
      const sessions = await sessionTls('ln-tls-verified');
      expect(sessions.length).toBeGreaterThan(0);
      for (const x of sessions) {
        expect(x.ssl).toBe(true);
        expect(x.version).toMatch(/^TLSv1\.[23]$/);
      }
      // and the store works over it
      await store.commitBatch('r', [], {
        floor: '2024-01-01T00:00:00.000Z',
        watermark: '2024-01-01T00:00:00.000Z',
      });
      expect((await store.getCheckpoint('r'))?.watermark).toBe('2024-01-01T00:00:00.000Z');
    } finally {
      await store.close();
    }
  });

  it('verify-full without the CA file refuses the server (a CA it does not know), and says so', async () => {
    const store = new PostgresStore(url({ sslmode: 'verify-full' }), { connectTimeoutMs: 5000 });
    try {
      await expect(store.counts()).rejects.toThrow(
        /unable to verify the first certificate|self[- ]signed certificate/i,
      );
    } finally {
      await store.close();
    }
  });

  it('without sslmode the same server is used in plaintext (TLS is the URL’s choice)', async () => {
    const store = new PostgresStore(url({ schema: 'tls_plain' }), { applicationName: 'ln-tls-plain' });
    try {
      await store.migrate();
      await store.counts();
      const sessions = await sessionTls('ln-tls-plain');
      expect(sessions.length).toBeGreaterThan(0);
      expect(sessions.every((x) => !x.ssl)).toBe(true);
    } finally {
      await store.close();
    }
  });
});
