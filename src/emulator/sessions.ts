// Sessions (access tokens), refresh tokens and query cursors of the emulated org.
// Salesforce sessions time out after a period of INACTIVITY (Setup > Session Settings), so a
// token's expiry slides with every use. Query cursors follow the SOAP/REST API Developer Guides:
// "query locators expire after 15 minutes of inactivity" and "a user can have up to 10 query
// cursors open at a time; when a new one is opened, the oldest is released".

import { randomBytes } from 'node:crypto';
import type { ApiRecord } from './org.ts';

export interface Session {
  token: string;
  userId: string;
  username: string;
  clientId: string | undefined;
  issuedAt: number;
  lastUsed: number;
}

export interface RefreshGrant {
  token: string;
  userId: string;
  username: string;
  clientId: string;
}

export interface QueryCursor {
  id: string;
  userId: string;
  records: ApiRecord[];
  totalSize: number;
  batchSize: number;
  lastUsed: number;
}

export const QUERY_LOCATOR_IDLE_MS = 15 * 60 * 1000;
export const MAX_OPEN_CURSORS_PER_USER = 10;

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function randomBase62(n: number): string {
  const bytes = randomBytes(n);
  let out = '';
  for (const b of bytes) out += BASE62[b % 62];
  return out;
}

export class SessionStore {
  private readonly sessions = new Map<string, Session>();
  private readonly refreshGrants = new Map<string, RefreshGrant>();
  private readonly ttlMs: number;
  private readonly now: () => number;
  private readonly orgId: string;

  constructor(opts: { orgId: string; ttlMs: number; now: () => number }) {
    this.orgId = opts.orgId;
    this.ttlMs = opts.ttlMs;
    this.now = opts.now;
  }

  /** Real session ids look like `00D...!AQ...`: the org id, a bang, an opaque part. */
  create(user: { userId: string; username: string }, clientId?: string): Session {
    const token = `${this.orgId.slice(0, 15)}!AQ${randomBase62(94)}`;
    const t = this.now();
    const s: Session = { token, ...user, clientId, issuedAt: t, lastUsed: t };
    this.sessions.set(token, s);
    return s;
  }

  /** The live session for a token (touching it), or undefined when unknown or idle too long. */
  validate(token: string): Session | undefined {
    const s = this.sessions.get(token);
    if (!s) return undefined;
    const t = this.now();
    if (t - s.lastUsed > this.ttlMs) {
      this.sessions.delete(token);
      return undefined;
    }
    s.lastUsed = t;
    return s;
  }

  revoke(token: string): boolean {
    const a = this.sessions.delete(token);
    const r = this.refreshGrants.delete(token);
    return a || r;
  }

  /** Ends every access token (refresh tokens stay valid, as when a session times out). */
  expireAll(): number {
    const n = this.sessions.size;
    this.sessions.clear();
    return n;
  }

  createRefreshToken(user: { userId: string; username: string }, clientId: string): string {
    const token = `5Aep${randomBase62(83)}`;
    this.refreshGrants.set(token, { token, ...user, clientId });
    return token;
  }

  refreshGrant(token: string): RefreshGrant | undefined {
    return this.refreshGrants.get(token);
  }

  get size(): number {
    return this.sessions.size;
  }
}

export class CursorStore {
  private readonly cursors = new Map<string, QueryCursor>();
  private readonly now: () => number;
  private counter = 0;
  private readonly makeId: (n: number) => string;

  constructor(opts: { now: () => number; makeId: (n: number) => string }) {
    this.now = opts.now;
    this.makeId = opts.makeId;
  }

  open(userId: string, records: ApiRecord[], batchSize: number): QueryCursor {
    this.sweep();
    const mine = [...this.cursors.values()].filter((c) => c.userId === userId);
    // oldest first (Map keeps insertion order; lastUsed breaks ties for touched cursors)
    mine.sort((a, b) => a.lastUsed - b.lastUsed);
    while (mine.length >= MAX_OPEN_CURSORS_PER_USER) {
      const oldest = mine.shift();
      if (oldest) this.cursors.delete(oldest.id);
    }
    const c: QueryCursor = {
      id: this.makeId(++this.counter),
      userId,
      records,
      totalSize: records.length,
      batchSize,
      lastUsed: this.now(),
    };
    this.cursors.set(c.id, c);
    return c;
  }

  /** The cursor for an id, touched; undefined when unknown, released, or idle for 15 minutes. */
  get(id: string, userId: string): QueryCursor | undefined {
    const c = this.cursors.get(id);
    if (!c || c.userId !== userId) return undefined;
    const t = this.now();
    if (t - c.lastUsed > QUERY_LOCATOR_IDLE_MS) {
      this.cursors.delete(id);
      return undefined;
    }
    c.lastUsed = t;
    return c;
  }

  close(id: string): void {
    this.cursors.delete(id);
  }

  clear(): number {
    const n = this.cursors.size;
    this.cursors.clear();
    return n;
  }

  private sweep(): void {
    const t = this.now();
    for (const [id, c] of this.cursors) if (t - c.lastUsed > QUERY_LOCATOR_IDLE_MS) this.cursors.delete(id);
  }
}
