// openStore: the one way the rest of the program gets a Store.
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { storeLocation, type StoreLocation } from '../config/index.ts';
import { coerceError } from '../util/errors.ts';
import type { Store } from './types.ts';
import { FileLock } from './lock.ts';
import { SqliteStore } from './sqlite.ts';
import { StoreMissingError } from './errors.ts';

export { StoreClosedError, StoreLockedError, StoreMissingError } from './errors.ts';
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
    const path = location.path;
    const memory = path === ':memory:';
    if (!memory) {
      if (readOnly && !existsSync(path)) throw new StoreMissingError(path);
      if (!readOnly) mkdirSync(dirname(path), { recursive: true });
    }
    const lock = opts.exclusive && !readOnly && !memory ? FileLock.acquire(`${path}.lock`) : undefined;
    try {
      store = new SqliteStore(path, { readOnly, ...(lock ? { lock } : {}) });
    } catch (err) {
      lock?.release();
      throw err;
    }
  } else {
    const { PostgresStore } = await import('./postgres.ts');
    store = new PostgresStore(location.url, { readOnly });
  }
  try {
    await store.migrate();
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}
