// A jsforce Connection for each auth flow of the config, able to recover from an expired session.
// jsforce 3 recovers from 401 only through a refresh delegate: the OAuth refresh_token flow has one
// built in; client_credentials and JWT get a `refreshFn` that simply asks for a new token.
import { createSign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
// jsforce's Connection alone: the package's index also loads and registers the Bulk, Metadata,
// SOAP, Analytics, Apex, Chatter, Tooling and Streaming APIs (several MB resident), none of which
// polling uses; streamer.ts registers the Streaming API itself when a rule streams.
import { createRequire } from 'node:module';
import type { Connection } from 'jsforce';
import type { SalesforceConfig } from '../../config/index.ts';
import { coerceError } from '../../util/errors.ts';

export type SfConnection = Connection;

// a CommonJS module whose class is `exports.default`; required directly, so every loader agrees
const JsforceConnection = (
  createRequire(import.meta.url)('jsforce/lib/connection.js') as {
    default: typeof import('jsforce').Connection;
  }
).default;

const JWT_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

function base64url(input: string | Buffer): string {
  return Buffer.from(input).toString('base64url');
}

/**
 * The OAuth 2.0 JWT Bearer Flow assertion (Salesforce Help, "OAuth 2.0 JWT Bearer Flow for
 * Server-to-Server Integration"): RS256 over {iss: consumer key, sub: username, aud: login URL, exp}.
 */
export function signJwtAssertion(opts: {
  clientId: string;
  username: string;
  audience: string;
  privateKeyPem: string;
  now?: Date;
}): string {
  const nowSec = Math.floor((opts.now ?? new Date()).getTime() / 1000);
  const header = base64url(JSON.stringify({ alg: 'RS256', typ: 'JWT' }));
  const claims = base64url(
    JSON.stringify({ iss: opts.clientId, sub: opts.username, aud: opts.audience, exp: nowSec + 180 }),
  );
  const signer = createSign('RSA-SHA256');
  signer.update(`${header}.${claims}`);
  return `${header}.${claims}.${signer.sign(opts.privateKeyPem).toString('base64url')}`;
}

interface TokenResponse {
  access_token: string;
  instance_url: string;
  id: string;
}

type RefreshCallback = (err?: Error | null, accessToken?: string, res?: never) => void;

/** Build an unauthenticated connection for the config's flow; call `connectSalesforce` to log in. */
export function createConnection(cfg: SalesforceConfig, baseDir: string): Connection {
  const auth = cfg.auth;
  const common = { loginUrl: cfg.loginUrl, version: cfg.apiVersion, maxRequest: 10 };
  switch (auth.flow) {
    case 'access_token':
      return new JsforceConnection({
        ...common,
        instanceUrl: auth.instanceUrl,
        accessToken: auth.accessToken,
      });
    case 'refresh_token':
      // jsforce refreshes with oauth2.refreshToken() on 401 by itself when a client id is set.
      return new JsforceConnection({
        ...common,
        oauth2: { loginUrl: cfg.loginUrl, clientId: auth.clientId, clientSecret: auth.clientSecret },
        refreshToken: auth.refreshToken,
        instanceUrl: cfg.loginUrl,
      });
    case 'password':
      // login() installs its own username/password refresh delegate; OAuth when a client is given, SOAP otherwise.
      return new JsforceConnection({
        ...common,
        ...(auth.clientId && auth.clientSecret
          ? { oauth2: { loginUrl: cfg.loginUrl, clientId: auth.clientId, clientSecret: auth.clientSecret } }
          : {}),
      });
    case 'client_credentials':
    case 'jwt': {
      const requestToken = tokenRequester(cfg, baseDir);
      const conn: Connection = new JsforceConnection({
        ...common,
        oauth2: {
          loginUrl: cfg.loginUrl,
          clientId: auth.clientId,
          ...(auth.flow === 'client_credentials' ? { clientSecret: auth.clientSecret } : {}),
        },
        refreshFn: (c: Connection, callback: RefreshCallback) => {
          requestToken(c).then(
            (res) => callback(undefined, res.access_token),
            (err: unknown) => callback(coerceError(err)),
          );
        },
      });
      return conn;
    }
  }
}

/** A function that obtains a fresh token for client_credentials / JWT and installs it on the connection. */
function tokenRequester(
  cfg: SalesforceConfig,
  baseDir: string,
): (conn: Connection) => Promise<TokenResponse> {
  const auth = cfg.auth;
  let privateKeyPem: string | undefined;
  return async (conn) => {
    let params: { grant_type: string; [name: string]: string };
    if (auth.flow === 'jwt') {
      privateKeyPem ??= readFileSync(resolve(baseDir, auth.privateKeyFile), 'utf8');
      params = {
        grant_type: JWT_GRANT,
        assertion: signJwtAssertion({
          clientId: auth.clientId,
          username: auth.username,
          audience: auth.audience ?? cfg.loginUrl,
          privateKeyPem,
        }),
      };
    } else {
      params = { grant_type: 'client_credentials' };
    }
    const res = (await conn.oauth2.requestToken(params)) as unknown as TokenResponse;
    if (!res?.access_token || !res.instance_url) {
      throw new Error('token endpoint answered without access_token/instance_url');
    }
    // Private in jsforce's typings but the documented way its own refresh functions install a session.
    (conn as unknown as { _establish(o: object): void })._establish({
      instanceUrl: res.instance_url,
      accessToken: res.access_token,
    });
    return res;
  };
}

/** Authenticate the connection (no-op for access_token). Errors carry no secret. */
export async function connectSalesforce(
  conn: Connection,
  cfg: SalesforceConfig,
  baseDir: string,
): Promise<void> {
  const auth = cfg.auth;
  switch (auth.flow) {
    case 'access_token':
      return;
    case 'refresh_token': {
      const res = await conn.oauth2.refreshToken(auth.refreshToken);
      (conn as unknown as { _establish(o: object): void })._establish({
        instanceUrl: res.instance_url,
        accessToken: res.access_token,
      });
      return;
    }
    case 'password':
      await conn.login(auth.username, auth.password + (auth.securityToken ?? ''));
      return;
    case 'client_credentials':
    case 'jwt':
      await tokenRequester(cfg, baseDir)(conn);
      return;
  }
}
