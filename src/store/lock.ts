// Single-writer lock for the SQLite store: `<db>.lock`, created with O_EXCL, holding who owns it.
// It must survive kill -9 correctly, so it is judged by its content rather than by its existence.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import {
  linkSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  utimesSync,
  writeSync,
  closeSync,
} from 'node:fs';
import { statSync } from 'node:fs';
import { StoreLockedError } from './errors.ts';

interface LockContent {
  pid: number;
  hostname: string;
  startedAt: string;
  token: string;
}

export interface LockOptions {
  /** a holder on another host (shared volume, recreated container) is stale after this long without a heartbeat */
  foreignStaleMs?: number;
  heartbeatMs?: number;
}

/** locks this process holds: a second exclusive open in the same process must fail, not take over */
const heldHere = new Set<string>();

export class FileLock {
  readonly path: string;
  private readonly token: string;
  private heartbeat: NodeJS.Timeout | undefined;
  private released = false;

  private constructor(path: string, token: string, heartbeatMs: number) {
    this.path = path;
    this.token = token;
    // Refresh mtime so a process on another host can tell a live holder from a dead one.
    this.heartbeat = setInterval(() => {
      try {
        const now = new Date();
        utimesSync(path, now, now);
      } catch {
        // the file vanished (operator removed it); nothing useful to do from a timer
      }
    }, heartbeatMs);
    this.heartbeat.unref();
  }

  static acquire(path: string, opts: LockOptions = {}): FileLock {
    const foreignStaleMs = opts.foreignStaleMs ?? 60_000;
    if (heldHere.has(path)) {
      throw new StoreLockedError(
        `store is already open exclusively in this process (pid ${process.pid}): ${path}`,
        path,
        process.pid,
      );
    }
    const token = randomUUID();
    const content: LockContent = {
      pid: process.pid,
      hostname: hostname(),
      startedAt: new Date().toISOString(),
      token,
    };
    for (let attempt = 0; attempt < 5; attempt++) {
      if (tryCreate(path, content)) {
        heldHere.add(path);
        return new FileLock(path, token, opts.heartbeatMs ?? 10_000);
      }
      const holder = readLock(path);
      if (holder === 'missing') continue; // released between our create and read: try again
      const verdict = judge(holder, foreignStaleMs, path);
      if (verdict !== 'stale') {
        const who =
          holder === 'garbled' ? 'an unreadable lock' : `pid ${holder.pid} on host ${holder.hostname}`;
        throw new StoreLockedError(
          `store is locked by ${who} (${path}); another lead-notifier daemon is using it. ` +
            `If no such process exists, delete the lock file.`,
          path,
          holder === 'garbled' ? undefined : holder.pid,
        );
      }
      takeOverStale(path, holder);
    }
    throw new StoreLockedError(
      `could not take the store lock ${path}: it keeps changing hands`,
      path,
      undefined,
    );
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    heldHere.delete(this.path);
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    const holder = readLock(this.path);
    // Only remove our own lock: a stale-lock takeover by someone else must not be undone.
    if (typeof holder === 'object' && holder.token === this.token) {
      try {
        unlinkSync(this.path);
      } catch {
        // already gone
      }
    }
  }
}

function tryCreate(path: string, content: LockContent): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    writeSync(fd, JSON.stringify(content) + '\n');
  } finally {
    closeSync(fd);
  }
  return true;
}

function readLock(path: string): LockContent | 'missing' | 'garbled' {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw err;
  }
  try {
    const parsed = JSON.parse(text) as Partial<LockContent>;
    if (typeof parsed.pid === 'number' && typeof parsed.hostname === 'string') return parsed as LockContent;
  } catch {
    // fall through
  }
  return 'garbled';
}

function judge(holder: LockContent | 'garbled', foreignStaleMs: number, path: string): 'stale' | 'live' {
  const ageMs = lockAgeMs(path);
  if (holder === 'garbled') {
    // A crash between create and write leaves an empty file; give a writer a moment to finish.
    return ageMs > 5_000 ? 'stale' : 'live';
  }
  if (holder.hostname !== hostname()) {
    // Cannot probe a pid on another host: trust the heartbeat instead.
    return ageMs > foreignStaleMs ? 'stale' : 'live';
  }
  // Container restarts reuse pids (pid 1): a lock naming our own pid was left by a previous life.
  if (holder.pid === process.pid) return 'stale';
  return pidAlive(holder.pid) ? 'live' : 'stale';
}

function lockAgeMs(path: string): number {
  try {
    return Date.now() - statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Move the stale lock aside atomically, then check that what we moved is the lock we judged stale;
 * if another process replaced it in between, put theirs back and let the loop re-judge.
 */
function takeOverStale(path: string, judged: LockContent | 'garbled'): void {
  const aside = `${path}.stale.${process.pid}.${randomUUID()}`;
  try {
    renameSync(path, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const moved = readLock(aside);
  const same =
    judged === 'garbled'
      ? moved === 'garbled'
      : typeof moved === 'object' && moved.token === judged.token && moved.pid === judged.pid;
  if (!same) {
    try {
      linkSync(aside, path); // fails if someone created a lock meanwhile, which is fine
    } catch {
      // keep theirs
    }
  }
  try {
    unlinkSync(aside);
  } catch {
    // ignore
  }
}
