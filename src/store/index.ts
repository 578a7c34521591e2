// openStore: the one way the rest of the program gets a Store.
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
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
 * The options a `sqlite:` URL carries after `?`: `synchronous=normal` (default: WAL commits reach
 * the OS at once, no fsync; they survive a killed process, but the last commits before a power cut
 * or OS crash may be lost) or `synchronous=full` (every commit is fsynced: survives a power cut, at
 * the cost of an fsync per transaction).
 */
export function sqliteOptions(url: string): { synchronous: 'full' | 'normal' } {
  const q = url.indexOf('?');
  const params = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
  let synchronous: 'full' | 'normal' = 'normal';
  for (const [k, v] of params) {
    if (k !== 'synchronous')
      throw new Error(`store URL: unknown sqlite option ${JSON.stringify(k)} (known: synchronous)`);
    const lower = v.toLowerCase();
    if (lower !== 'full' && lower !== 'normal')
      throw new Error(`store URL: synchronous must be full or normal, got ${JSON.stringify(v)}`);
    synchronous = lower;
  }
  return { synchronous };
}

/** The file a `sqlite:` URL points at, or ':memory:'. */
export function sqlitePath(url: string, baseDir?: string): string {
  const q = url.indexOf('?');
  const rest = url.slice('sqlite:'.length, q < 0 ? undefined : q);
  if (rest === ':memory:') return rest;
  if (rest === '') throw new Error('store URL: sqlite: needs a file path, e.g. sqlite:./data/notifier.db');
  // sqlite:///abs.db and sqlite://rel.db are common spellings of the same thing; accept them
  const path = rest.startsWith('//') ? rest.slice(2) : rest;
  return isAbsolute(path) ? path : resolve(baseDir ?? process.cwd(), path);
}

/**
 * 'sqlite:./data/notifier.db' | 'sqlite:/abs.db' | 'sqlite::memory:' | 'postgres://...' | 'postgresql://...'
 * A writable store is migrated before it is returned.
 */
export async function openStore(url: string, opts: OpenStoreOptions = {}): Promise<Store> {
  const readOnly = opts.readOnly ?? false;
  let store: Store;
  if (url.startsWith('sqlite:')) {
    const path = sqlitePath(url, opts.baseDir);
    const { synchronous } = sqliteOptions(url);
    const memory = path === ':memory:';
    if (!memory) {
      if (readOnly && !existsSync(path)) throw new StoreMissingError(path);
      if (!readOnly) mkdirSync(dirname(path), { recursive: true });
    }
    const lock = opts.exclusive && !readOnly && !memory ? FileLock.acquire(`${path}.lock`) : undefined;
    try {
      store = new SqliteStore(path, { readOnly, synchronous, ...(lock ? { lock } : {}) });
    } catch (err) {
      lock?.release();
      throw err;
    }
  } else if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    const { PostgresStore } = await import('./postgres.ts');
    store = new PostgresStore(url, { readOnly });
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
