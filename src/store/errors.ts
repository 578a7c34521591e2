/** Another live process holds the SQLite store's single-writer lock. */
export class StoreLockedError extends Error {
  override name = 'StoreLockedError';
  readonly code = 'ESTORELOCKED';
  readonly lockPath: string;
  readonly pid: number | undefined;
  constructor(message: string, lockPath: string, pid: number | undefined) {
    super(message);
    this.lockPath = lockPath;
    this.pid = pid;
  }
}

/** A read-only open of a SQLite file that does not exist (nothing has run yet, or a wrong path). */
export class StoreMissingError extends Error {
  override name = 'StoreMissingError';
  readonly code = 'ESTOREMISSING';
  readonly path: string;
  constructor(path: string) {
    super(`store file does not exist: ${path} (has the daemon run with this config yet?)`);
    this.path = path;
  }
}

/**
 * The store itself failed (disk full, read-only file, I/O error, database unreachable), as
 * opposed to the source or the channel: readiness names the store for it.
 */
export function isStoreFailure(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (code === 'ELEASELOST') return false;
    if (typeof code === 'string' && (code === 'ERR_SQLITE_ERROR' || code.startsWith('ESTORE'))) return true;
    // a PostgreSQL server error (pg's DatabaseError carries the severity and a SQLSTATE)
    if (typeof (e as { severity?: unknown }).severity === 'string' && typeof code === 'string') return true;
  }
  return false;
}

/** A method was called after close(). */
export class StoreClosedError extends Error {
  override name = 'StoreClosedError';
  readonly code = 'ESTORECLOSED';
  constructor(kind: string, method: string) {
    super(`${kind} store is closed: cannot call ${method}()`);
  }
}

/**
 * The database could not be reached, or the connection died mid-statement (failover, restart,
 * pg_terminate_backend, an idle reaper). Retryable: the step is tried again later.
 */
export class StoreUnavailableError extends Error {
  override name = 'StoreUnavailableError';
  readonly code = 'ESTOREUNAVAILABLE';
  readonly retryable = true;
  constructor(store: string, method: string, cause: unknown) {
    super(`${store} unavailable (${method}): ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }
}

/**
 * A checkpoint write fenced by a lease epoch that is no longer current: another replica took the
 * rule's lease (or this one's expired). Nothing was written.
 */
export class LeaseLostError extends Error {
  override name = 'LeaseLostError';
  readonly code = 'ELEASELOST';
  readonly rule: string;
  readonly epoch: number;
  constructor(rule: string, holder: string, epoch: number) {
    super(`rule ${rule}: lease epoch ${epoch} of ${holder} is no longer current; checkpoint write refused`);
    this.rule = rule;
    this.epoch = epoch;
  }
}

/** A SQLite file that is not a database (or cannot be read). The file is left untouched. */
export class StoreCorruptError extends Error {
  override name = 'StoreCorruptError';
  readonly code = 'ESTORECORRUPT';
  readonly path: string;
  constructor(path: string, cause: unknown) {
    super(
      `store file ${path} cannot be opened as a SQLite database (${(cause as Error)?.message ?? String(cause)}); it was left untouched: restore it from a backup, or move it aside to start with an empty store`,
      { cause },
    );
    this.path = path;
  }
}
