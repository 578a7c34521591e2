// PostgreSQL for tests: TEST_DATABASE_URL when set, else a throwaway container (testcontainers).
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export interface TestPostgres {
  /** connection URL without a schema parameter */
  url: string;
  stop(): Promise<void>;
}

export async function startTestPostgres(): Promise<TestPostgres> {
  const fromEnv = process.env.TEST_DATABASE_URL;
  if (fromEnv) return { url: fromEnv, stop: async () => {} };
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
  const container = await new PostgreSqlContainer('postgres:15').start();
  return {
    url: container.getConnectionUri(),
    stop: async () => {
      await container.stop();
    },
  };
}

/** a schema name unique to this run, e.g. `t_store_3f9a1c2b` */
export function randomSchema(prefix: string): string {
  return `${prefix}_${randomBytes(4).toString('hex')}`.toLowerCase();
}

/** the URL with `?schema=` set (the store creates the schema and puts it on the search_path) */
export function withSchema(url: string, schema: string): string {
  const u = new URL(url);
  u.searchParams.set('schema', schema);
  return u.toString();
}

/** run one function with a plain client on `url` */
export async function withPgClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** drop every schema whose name starts with `prefix` */
export async function dropSchemas(url: string, prefix: string): Promise<void> {
  await withPgClient(url, async (c) => {
    const { rows } = await c.query<{ nspname: string }>(
      `SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)`,
      [prefix],
    );
    for (const { nspname } of rows) await c.query(`DROP SCHEMA IF EXISTS "${nspname}" CASCADE`);
  });
}
