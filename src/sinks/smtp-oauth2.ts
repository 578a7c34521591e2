// One OAuth2 access token for the whole SMTP pool. nodemailer's pool gives every connection its own
// XOAuth2 generator, which would run the refresh-token flow once per connection; instead the pool's
// `oauth2_provision_cb` asks this cache, which runs nodemailer's own refresh-token flow (XOAuth2,
// against Microsoft's v2.0 or Google's token endpoint) once for all connections, refreshes ahead of
// expiry, and on a refusal (the 535 after a rejected XOAUTH2) fetches a fresh token once.
import XOAuth2 from 'nodemailer/lib/xoauth2';
import type { SmtpAuthConfig } from '../config/schema.ts';

type OAuth2Config = Extract<SmtpAuthConfig, { type: 'oauth2' }>;

/** refresh this long before expiry at most (tokens live 60-90 min at Microsoft, 60 at Google) */
const MAX_REFRESH_AHEAD_MS = 5 * 60_000;

interface Cached {
  token: string;
  /** ms epoch; 0 = the endpoint gave no lifetime */
  expires: number;
  /** when nodemailer's connections should ask again: ahead of `expires` */
  refreshAt: number;
}

export class AccessTokenCache {
  private readonly source: XOAuth2;
  private current: Cached | undefined;
  private inflight: Promise<Cached> | undefined;

  constructor(auth: OAuth2Config) {
    this.source = new XOAuth2({
      user: auth.user,
      clientId: auth.clientId,
      ...(auth.clientSecret !== undefined ? { clientSecret: auth.clientSecret } : {}),
      refreshToken: auth.refreshToken,
      accessUrl: auth.accessUrl,
      // Microsoft's v2.0 endpoint wants the scope on a refresh; Google ignores one it already granted
      customParams: auth.scope ? { scope: auth.scope } : {},
      requestTimeout: auth.requestTimeoutMs,
    });
    // nodemailer logs nothing here (no logger given); the 'error' event must still have a listener
    this.source.on('error', () => {});
  }

  /**
   * A token for a connection. `refused`: the token the connection used was refused by the server
   * (null: which one is not known); a fresh one is fetched unless another connection already
   * replaced it.
   */
  async get(refused?: string | null): Promise<Cached> {
    const now = Date.now();
    const cur = this.current;
    if (refused !== undefined) {
      // null: a refusal of a token we cannot tell, so fetch a fresh one
      if (refused !== null && cur && cur.token !== refused && cur.refreshAt > now) return cur;
      return this.refresh();
    }
    if (cur && cur.refreshAt > now) return cur;
    return this.refresh();
  }

  /** the provision callback nodemailer's pool and verify() call (`this` is the connection's XOAuth2) */
  readonly provision = (failedToken: string | undefined, renew: boolean, done: ProvisionDone): void => {
    this.get(renew ? (failedToken ?? null) : undefined).then(
      (c) => done(null, c.token, c.refreshAt),
      (err: unknown) => done(err instanceof Error ? err : new Error(String(err))),
    );
  };

  private refresh(): Promise<Cached> {
    this.inflight ??= new Promise<Cached>((resolve, reject) => {
      this.source.getToken(true, (err, token) => {
        if (err || !token) return reject(err ?? new Error('the token endpoint returned no access token'));
        const now = Date.now();
        const expires = this.source.expires || 0;
        // ahead by a tenth of the lifetime, at most 5 minutes: a token handed to a connection is
        // still good when its AUTH command reaches the server
        const ahead = expires ? Math.min(MAX_REFRESH_AHEAD_MS, (expires - now) / 10) : 0;
        const cached: Cached = { token, expires, refreshAt: expires ? expires - ahead : Infinity };
        this.current = cached;
        resolve(cached);
      });
    }).finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }
}

type ProvisionDone = (err: Error | null, accessToken?: string, expires?: number) => void;
