// The emulator's shared HTTP vocabulary: the request and reply shapes every handler (rest, oauth,
// soap, control) works with, the context the server hands them, and the Salesforce-shaped JSON
// replies. The handlers and the server import from here, never from each other.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Org } from './org.ts';
import { SalesforceError } from './org.ts';
import type { CursorStore, SessionStore } from './sessions.ts';

export interface UserEntry {
  username: string;
  password: string;
  securityToken: string;
  email: string;
  firstName: string | undefined;
  lastName: string;
  userId: string;
}

export interface ClientEntry {
  clientId: string;
  clientSecret?: string;
  jwtPublicKeyPem?: string;
}

export interface ReqInfo {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface Reply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** What the server needs of the CometD server (cometd.ts). */
export interface CometdLike {
  handle(req: IncomingMessage, res: ServerResponse, body: string): void;
  ageOut(olderThanMs?: number): void;
  close(): void;
}

export interface Context {
  url: string;
  orgId: string;
  org: Org;
  sessions: SessionStore;
  cursors: CursorStore;
  clients: ClientEntry[];
  users(): UserEntry[];
  provisionUsers(): void;
  checkPassword(username: string, password: string): UserEntry | undefined;
  bearerToken(req: ReqInfo): string | undefined;
  apiVersions: string[];
  latestVersion: string;
  sessionTtlMs: number;
  limits: LimitsState;
  counters: Map<string, number>;
  faults: ActiveFault[];
  cometd: CometdLike | undefined;
  now(): number;
  log(line: string): void;
}

export interface FaultSpec {
  /** HTTP method to match (any when absent) */
  method?: string;
  /** regular expression (source) tested against the request path, e.g. "/query" */
  path: string;
  /** how many matching requests fail; default 1 */
  count?: number;
  /** reply status; default 503 when `body` or `errorCode` is given */
  status?: number;
  /** REST error code in the JSON error body; default by status (503 SERVER_UNAVAILABLE, ...) */
  errorCode?: string;
  message?: string;
  /** raw body instead of the JSON error, e.g. an HTML maintenance page */
  body?: string;
  contentType?: string;
  /** hold the request this long first; without status/body/errorCode it then proceeds normally */
  delayMs?: number;
}

export interface ActiveFault extends Required<Pick<FaultSpec, 'path'>> {
  id: number;
  spec: FaultSpec;
  regex: RegExp;
  remaining: number;
}

export interface LimitsState {
  max: number;
  used: number;
}

const JSON_TYPE = 'application/json;charset=UTF-8';

export function json(status: number, value: unknown, headers: Record<string, string> = {}): Reply {
  return { status, headers: { 'content-type': JSON_TYPE, ...headers }, body: JSON.stringify(value) };
}

export function sfError(status: number, errorCode: string, message: string, fields?: string[]): Reply {
  return json(status, [fields ? { message, errorCode, fields } : { message, errorCode }]);
}

export const notFound = (): Reply => sfError(404, 'NOT_FOUND', 'The requested resource does not exist');

export function methodNotAllowed(method: string, allowed: string[]): Reply {
  const r = sfError(
    405,
    'METHOD_NOT_ALLOWED',
    `HTTP Method '${method}' not allowed. Allowed are ${allowed.join(',')}`,
  );
  r.headers.allow = allowed.join(', ');
  return r;
}

/** Maps anything thrown by the org into the REST error reply. */
export function errorReply(err: unknown): Reply {
  if (err instanceof SalesforceError) return json(err.status, [err.toJSON()]);
  return sfError(
    500,
    'UNKNOWN_EXCEPTION',
    'An unexpected error occurred. Please include this ErrorId if you contact support: emulator',
  );
}
