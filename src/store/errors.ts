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

/** A method was called after close(). */
export class StoreClosedError extends Error {
  override name = 'StoreClosedError';
  readonly code = 'ESTORECLOSED';
  constructor(kind: string, method: string) {
    super(`${kind} store is closed: cannot call ${method}()`);
  }
}
