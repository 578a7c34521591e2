// What the PostgreSQL store knows about its connection: the URL (our `schema` parameter, and a
// credential-free form for messages), which errors mean the connection died, and which failures
// are safe to run again.
/** Parsed `postgres://...?schema=name`; the schema parameter is ours and is not passed to pg. */
export function parsePostgresUrl(url: string): { connectionString: string; schema: string | null } {
  const u = new URL(url);
  const schema = u.searchParams.get('schema');
  u.searchParams.delete('schema');
  if (schema !== null && !/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(schema)) {
    throw new Error(
      `store URL: schema must be a plain identifier (letters, digits, _), got ${JSON.stringify(schema)}`,
    );
  }
  return { connectionString: u.toString(), schema };
}

/** Deadlocks and serialization failures are safe to retry: the whole transaction rolled back. */
export const RETRYABLE = new Set(['40P01', '40001']);

// SQLSTATEs of a connection that is gone or cannot be had: class 08 (connection exception),
// 57P01-57P03 (terminated by an administrator, crash shutdown, cannot connect now: a restart or
// failover), 53300 (too many connections). Node's socket errors likewise.
const CONNECTION_SQLSTATE = /^(08...|57P0[123]|53300)$/;
const CONNECTION_ERRNO = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);

/** The connection died or could not be made: the statement did not run, or its outcome is unknown. */
export function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return CONNECTION_SQLSTATE.test(code) || CONNECTION_ERRNO.has(code);
  // pg raises these without a code: a socket that closed under a query, or a connect timeout.
  const message = (err as Error | null)?.message ?? '';
  return /Connection terminated|connection error|timeout exceeded when trying to connect/i.test(message);
}

/** Backoff between attempts of a safe operation after a dead connection: ~0.2, 0.8, 3.2 s. */
export const CONNECTION_RETRY_DELAYS_MS = [200, 800, 3200];

/** The URL without credentials or query, for messages: `postgres://db.example.com:5432/app`. */
export function describePostgresUrl(url: string): string {
  try {
    const u = new URL(url);
    return `postgres://${u.hostname}${u.port ? `:${u.port}` : ''}${u.pathname}`;
  } catch {
    return 'postgres';
  }
}
