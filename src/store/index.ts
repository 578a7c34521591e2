// openStore: the one way the rest of the program gets a Store.
import { existsSync, mkdirSync, realpathSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import type { Store } from './types.ts';
import { FileLock } from './lock.ts';
import { SqliteStore } from './sqlite.ts';
import { StoreMissingError } from './errors.ts';

export {
  LeaseLostError,
  StoreClosedError,
  StoreCorruptError,
  StoreLockedError,
  StoreMissingError,
  StoreUnavailableError,
  isStoreFailure,
} from './errors.ts';
export { OUTBOX_STATES } from './types.ts';
export type * from './types.ts';
// PostgreSQL support (and `pg`) is loaded only when a postgres:// store is opened.
export type { PostgresStore } from './postgres.ts';
export { SqliteStore } from './sqlite.ts';

export interface OpenStoreOptions {
  /** directory relative sqlite paths resolve against (the config file's dir); default: cwd */
  baseDir?: string;
  /** take the single-writer lock (the daemon does; `status` and `outbox list` do not) */
  exclusive?: boolean;
  readOnly?: boolean;
  /** PostgreSQL only: pool size, application_name, timeouts */
  postgres?: import('./postgres.ts').PostgresStoreOptions;
}

/** The file a `sqlite:` URL points at, or ':memory:'. */
export function sqlitePath(url: string, baseDir?: string): string {
  const rest = url.slice('sqlite:'.length);
  if (rest === ':memory:') return rest;
  if (rest === '') throw new Error('store URL: sqlite: needs a file path, e.g. sqlite:./data/notifier.db');
  // sqlite:///abs.db and sqlite://rel.db are common spellings of the same thing; accept them
  const path = rest.startsWith('//') ? rest.slice(2) : rest;
  return isAbsolute(path) ? path : resolve(baseDir ?? process.cwd(), path);
}

/** the path with every symlink resolved; for a file not created yet, its directory's real path */
function realPath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return join(realpathSync(dirname(path)), basename(path));
  }
}

/**
 * 'sqlite:./data/notifier.db' | 'sqlite:/abs.db' | 'sqlite::memory:' | 'postgres://...' | 'postgresql://...'
 * A writable store is migrated before it is returned.
 */
export async function openStore(url: string, opts: OpenStoreOptions = {}): Promise<Store> {
  const readOnly = opts.readOnly ?? false;
  let store: Store;
  if (url.startsWith('sqlite:')) {
    const given = sqlitePath(url, opts.baseDir);
    const memory = given === ':memory:';
    if (!memory) {
      if (readOnly && !existsSync(given)) throw new StoreMissingError(given);
      if (!readOnly) mkdirSync(dirname(given), { recursive: true });
    }
    // The lock (and the database) on the file's real path: a second daemon reaching the same file
    // through a symlink, or a symlinked directory, meets the same lock instead of running beside us.
    const path = memory ? given : realPath(given);
    const lock = opts.exclusive && !readOnly && !memory ? FileLock.acquire(`${path}.lock`) : undefined;
    try {
      store = new SqliteStore(path, { readOnly, ...(lock ? { lock } : {}) });
    } catch (err) {
      lock?.release();
      throw err;
    }
  } else if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    const { PostgresStore } = await import('./postgres.ts');
    store = new PostgresStore(url, { ...opts.postgres, readOnly });
  } else {
    throw new Error(
      `store URL must start with sqlite: or postgres://, got ${JSON.stringify(url.split(':')[0] + ':')}`,
    );
  }
  try {
    await store.migrate();
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}
