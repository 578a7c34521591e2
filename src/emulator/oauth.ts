// OAuth 2.0 endpoints of the emulated org, shaped as in Salesforce Help "OAuth Authorization
// Flows" (client credentials, JWT bearer, refresh token, username-password) and
// "Identity URLs" / "Revoke OAuth Tokens". Token failures answer 400 with
// {"error": ..., "error_description": ...} as Salesforce does.

import { createHmac, createPublicKey, verify as verifySignature } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type { Context, ReqInfo, Reply, UserEntry } from './http.ts';
import { json } from './http.ts';

/** JWT audiences Salesforce accepts, plus the emulator itself (login URL = instance URL here). */
const JWT_AUDIENCES = ['https://login.salesforce.com', 'https://test.salesforce.com'];
/** Salesforce wants `exp` within 3 minutes; allow a little clock skew on top. */
const JWT_MAX_FUTURE_S = 5 * 60;

function oauthError(error: string, description: string, status = 400): Reply {
  return json(status, { error, error_description: description });
}

const authFailure = (): Reply => oauthError('invalid_grant', 'authentication failure');

function parseForm(body: string): URLSearchParams {
  try {
    return new URLSearchParams(body);
  } catch {
    return new URLSearchParams();
  }
}

/** client_id/client_secret from the form, or from HTTP Basic auth (RFC 6749 section 2.3.1). */
function clientCredentials(req: ReqInfo, form: URLSearchParams): { id?: string; secret?: string } {
  const auth = req.headers.authorization;
  if (typeof auth === 'string' && /^basic /i.test(auth)) {
    const decoded = Buffer.from(auth.slice(6).trim(), 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    if (i > 0) {
      return {
        id: safeDecode(decoded.slice(0, i)),
        secret: safeDecode(decoded.slice(i + 1)),
      };
    }
  }
  return { id: form.get('client_id') ?? undefined, secret: form.get('client_secret') ?? undefined };
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

function tokenResponse(
  ctx: Context,
  user: UserEntry,
  clientId: string,
  secret: string,
  withRefresh: boolean,
): Reply {
  const session = ctx.sessions.create({ userId: user.userId, username: user.username }, clientId);
  const id = `${ctx.url}/id/${ctx.orgId}/${user.userId}`;
  const issuedAt = String(ctx.now());
  // "signature: Base64-encoded HMAC-SHA256 signature signed with the client_secret containing the
  // concatenated ID and issued_at value" (Salesforce Help, OAuth token response parameters).
  const signature = createHmac('sha256', secret)
    .update(id + issuedAt)
    .digest('base64');
  const body: Record<string, string> = {
    access_token: session.token,
    instance_url: ctx.url,
    id,
    token_type: 'Bearer',
    issued_at: issuedAt,
    signature,
    scope: withRefresh ? 'api refresh_token' : 'api',
  };
  if (withRefresh) body.refresh_token = ctx.sessions.createRefreshToken(user, clientId);
  return json(200, body);
}

export function handleToken(ctx: Context, req: ReqInfo): Reply {
  if (req.method !== 'POST') return oauthError('invalid_request', 'must use HTTP POST', 400);
  const form = parseForm(req.body);
  const grant = form.get('grant_type');
  switch (grant) {
    case 'client_credentials': {
      const { id, secret } = clientCredentials(req, form);
      const client = ctx.clients.find((c) => c.clientId === id);
      if (!client) return oauthError('invalid_client_id', 'client identifier invalid');
      if (!client.clientSecret || client.clientSecret !== secret) {
        return oauthError('invalid_client', 'invalid client credentials');
      }
      // The flow runs as the connected app's execution user: the first configured user here.
      const user = ctx.users()[0];
      if (!user) return authFailure();
      return tokenResponse(ctx, user, client.clientId, client.clientSecret, false);
    }
    case 'password': {
      const { id, secret } = clientCredentials(req, form);
      const client = ctx.clients.find((c) => c.clientId === id);
      if (!client) return oauthError('invalid_client_id', 'client identifier invalid');
      if (client.clientSecret !== undefined && client.clientSecret !== secret) {
        return oauthError('invalid_client', 'invalid client credentials');
      }
      const user = ctx.checkPassword(form.get('username') ?? '', form.get('password') ?? '');
      if (!user) return authFailure();
      return tokenResponse(ctx, user, client.clientId, client.clientSecret ?? '', true);
    }
    case 'refresh_token': {
      const { id, secret } = clientCredentials(req, form);
      const client = ctx.clients.find((c) => c.clientId === id);
      if (!client) return oauthError('invalid_client_id', 'client identifier invalid');
      if (secret !== undefined && client.clientSecret !== undefined && client.clientSecret !== secret) {
        return oauthError('invalid_client', 'invalid client credentials');
      }
      const grantRec = ctx.sessions.refreshGrant(form.get('refresh_token') ?? '');
      if (!grantRec || grantRec.clientId !== client.clientId) {
        return oauthError('invalid_grant', 'expired access/refresh token');
      }
      const user = ctx.users().find((u) => u.userId === grantRec.userId);
      if (!user) return oauthError('invalid_grant', 'expired access/refresh token');
      // Salesforce does not rotate the refresh token by default: none in this response.
      return tokenResponse(ctx, user, client.clientId, client.clientSecret ?? '', false);
    }
    case 'urn:ietf:params:oauth:grant-type:jwt-bearer':
      return jwtBearer(ctx, form.get('assertion') ?? '');
    case null:
    case '':
      return oauthError('unsupported_grant_type', 'grant type not supported');
    default:
      return oauthError('unsupported_grant_type', 'grant type not supported');
  }
}

function b64urlJson(part: string): unknown {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

const keyCache = new WeakMap<object, KeyObject>();

/** JWT Bearer flow (Salesforce Help "OAuth 2.0 JWT Bearer Flow for Server-to-Server Integration"). */
function jwtBearer(ctx: Context, assertion: string): Reply {
  const parts = assertion.split('.');
  if (parts.length !== 3) return oauthError('invalid_grant', 'invalid assertion');
  const [h, p, s] = parts as [string, string, string];
  let header: unknown;
  let payload: unknown;
  try {
    header = b64urlJson(h);
    payload = b64urlJson(p);
  } catch {
    return oauthError('invalid_grant', 'invalid assertion');
  }
  if (!isObj(header) || header.alg !== 'RS256' || !isObj(payload)) {
    return oauthError('invalid_grant', 'invalid assertion');
  }
  const client = ctx.clients.find((c) => c.clientId === payload.iss);
  if (!client || !client.jwtPublicKeyPem) return oauthError('invalid_client_id', 'client identifier invalid');
  let key = keyCache.get(client);
  try {
    if (!key) {
      key = createPublicKey(client.jwtPublicKeyPem);
      keyCache.set(client, key);
    }
    const ok = verifySignature('RSA-SHA256', Buffer.from(`${h}.${p}`), key, Buffer.from(s, 'base64url'));
    if (!ok) return oauthError('invalid_grant', 'invalid assertion');
  } catch {
    return oauthError('invalid_grant', 'invalid assertion');
  }
  const audiences = [ctx.url, ...JWT_AUDIENCES];
  const aud = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
  if (!aud.some((a) => typeof a === 'string' && audiences.includes(a.replace(/\/$/, '')))) {
    return oauthError('invalid_grant', 'audience is invalid');
  }
  const nowS = ctx.now() / 1000;
  if (typeof payload.exp !== 'number' || payload.exp <= nowS || payload.exp > nowS + JWT_MAX_FUTURE_S) {
    return oauthError('invalid_grant', 'expired authorization code');
  }
  const sub = typeof payload.sub === 'string' ? payload.sub.toLowerCase() : '';
  const user = ctx.users().find((u) => u.username.toLowerCase() === sub);
  if (!user) return oauthError('invalid_grant', "user hasn't approved this consumer");
  return tokenResponse(ctx, user, client.clientId, client.clientSecret ?? '', false);
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** POST /services/oauth2/revoke (token in the form body or the query string). */
export function handleRevoke(ctx: Context, req: ReqInfo): Reply {
  const token = parseForm(req.body).get('token') ?? req.query.get('token') ?? '';
  if (!token || !ctx.sessions.revoke(token))
    return oauthError('unsupported_token_type', 'this token type is not supported');
  return { status: 200, headers: {}, body: '' };
}

/** GET /id/{orgId}/{userId}: the Identity URL response (Salesforce Help "Identity URLs"). */
export function handleIdentity(ctx: Context, req: ReqInfo, orgId: string, userId: string): Reply {
  const token = ctx.bearerToken(req) ?? req.query.get('oauth_token') ?? '';
  const session = ctx.sessions.validate(token);
  if (!session) return { status: 403, headers: { 'content-type': 'text/plain' }, body: 'Bad_OAuth_Token' };
  const user = ctx.users().find((u) => u.userId === userId);
  if (orgId !== ctx.orgId || !user)
    return { status: 404, headers: { 'content-type': 'text/plain' }, body: 'Bad_Id' };
  const v = ctx.latestVersion;
  const base = `${ctx.url}/services/data/v{version}`;
  return json(200, {
    id: `${ctx.url}/id/${ctx.orgId}/${user.userId}`,
    asserted_user: session.userId === user.userId,
    user_id: user.userId,
    organization_id: ctx.orgId,
    username: user.username,
    nick_name: user.username.split('@')[0],
    display_name: [user.firstName, user.lastName].filter(Boolean).join(' '),
    email: user.email,
    email_verified: true,
    first_name: user.firstName ?? null,
    last_name: user.lastName,
    timezone: 'GMT',
    active: true,
    user_type: 'STANDARD',
    language: 'en_US',
    locale: 'en_US',
    utcOffset: 0,
    last_modified_date: new Date(ctx.now()).toISOString().replace('Z', '+0000'),
    is_app_installed: true,
    urls: {
      enterprise: `${ctx.url}/services/Soap/c/${v}/${ctx.orgId}`,
      partner: `${ctx.url}/services/Soap/u/${v}/${ctx.orgId}`,
      rest: `${base}/`,
      sobjects: `${base}/sobjects/`,
      query: `${base}/query/`,
      limits: `${base}/limits/`,
      profile: `${ctx.url}/${user.userId}`,
    },
  });
}
