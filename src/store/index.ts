// openStore: the one way the rest of the program gets a Store.
import { existsSync, mkdirSync, realpathSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { storeLocation, type StoreLocation } from '../config/index.ts';
import { coerceError } from '../util/errors.ts';
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
  let location: StoreLocation;
  try {
    location = storeLocation(url, opts.baseDir);
  } catch (err) {
    throw new Error(`store URL ${coerceError(err).message}`, { cause: err });
  }
  if (location.kind === 'sqlite') {
    const given = location.path;
    const synchronous = location.synchronous ?? 'normal';
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
      store = new SqliteStore(path, { readOnly, synchronous, ...(lock ? { lock } : {}) });
    } catch (err) {
      lock?.release();
      throw err;
    }
  } else {
    const { PostgresStore } = await import('./postgres.ts');
    store = new PostgresStore(location.url, { ...opts.postgres, readOnly });
  }
  try {
    await store.migrate();
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}
