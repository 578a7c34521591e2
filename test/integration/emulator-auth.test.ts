// The emulator's OAuth 2 and SOAP login, driven by the real jsforce client.
import { createHmac, createSign, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import jsforce from 'jsforce';
import { API_VERSION, CREDENTIALS, useEmulator } from '../helpers/emulator.ts';

const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const JWT_CLIENT = 'jwt-client';

const h = useEmulator({
  clients: [
    { clientId: CREDENTIALS.clientId, clientSecret: CREDENTIALS.clientSecret },
    { clientId: JWT_CLIENT, jwtPublicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() },
  ],
  users: [
    { username: CREDENTIALS.username, password: CREDENTIALS.password },
    {
      username: 'tokened@example.com',
      password: 'pw',
      securityToken: 'TOKEN123',
      firstName: 'Tok',
      lastName: 'Ened',
    },
  ],
});

function signJwt(claims: Record<string, unknown>, key = privateKey): string {
  const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${enc({ alg: 'RS256', typ: 'JWT' })}.${enc(claims)}`;
  const sig = createSign('RSA-SHA256').update(input).sign(key).toString('base64url');
  return `${input}.${sig}`;
}

async function postToken(
  form: Record<string, string>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${h.url}/services/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('emulator OAuth 2', () => {
  it('client_credentials: jsforce authorizes, ids are well formed, the token works', async () => {
    const conn = h.connection();
    const info = await conn.authorize({ grant_type: 'client_credentials' });
    expect(info.organizationId).toMatch(/^00D[0-9A-Za-z]{15}$/);
    expect(info.id).toMatch(/^005[0-9A-Za-z]{15}$/);
    expect(conn.instanceUrl).toBe(h.url);
    expect(conn.refreshToken).toBeFalsy();
    const res = await conn.query<{ Username: string }>('SELECT Username FROM User');
    expect(res.records.map((r) => r.Username)).toContain(CREDENTIALS.username);
  });

  it('token response carries the documented fields and an HMAC signature', async () => {
    const { status, body } = await postToken({
      grant_type: 'client_credentials',
      client_id: CREDENTIALS.clientId,
      client_secret: CREDENTIALS.clientSecret,
    });
    expect(status).toBe(200);
    expect(body).toMatchObject({ token_type: 'Bearer', instance_url: h.url, scope: expect.any(String) });
    expect(body.refresh_token).toBeUndefined();
    expect(String(body.issued_at)).toMatch(/^\d{13}$/);
    const expected = createHmac('sha256', CREDENTIALS.clientSecret)
      .update(String(body.id) + String(body.issued_at))
      .digest('base64');
    expect(body.signature).toBe(expected);
  });

  it('client_credentials failures: unknown client, wrong secret, unsupported grant', async () => {
    const bad = new jsforce.Connection({
      loginUrl: h.url,
      version: API_VERSION,
      oauth2: { loginUrl: h.url, clientId: CREDENTIALS.clientId, clientSecret: 'wrong' },
    });
    await expect(bad.authorize({ grant_type: 'client_credentials' })).rejects.toMatchObject({
      name: 'invalid_client',
    });
    expect(
      (await postToken({ grant_type: 'client_credentials', client_id: 'nope', client_secret: 'x' })).body,
    ).toEqual({
      error: 'invalid_client_id',
      error_description: 'client identifier invalid',
    });
    const r = await postToken({ grant_type: 'magic' });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('unsupported_grant_type');
  });

  it('jwt-bearer: a signed assertion authorizes; bad signature, audience, expiry and subject fail', async () => {
    const now = Math.floor(Date.now() / 1000);
    const good = { iss: JWT_CLIENT, sub: CREDENTIALS.username, aud: h.url, exp: now + 120 };
    const conn = new jsforce.Connection({
      loginUrl: h.url,
      version: API_VERSION,
      oauth2: { loginUrl: h.url },
    });
    const info = await conn.authorize({
      grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
      assertion: signJwt(good),
    });
    expect(info.id).toMatch(/^005/);
    expect((await conn.identity()).username).toBe(CREDENTIALS.username);

    const assertion = (claims: Record<string, unknown>, key = privateKey) => ({
      grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
      assertion: signJwt(claims, key),
    });
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    expect((await postToken(assertion(good, other))).body.error).toBe('invalid_grant');
    expect((await postToken(assertion({ ...good, aud: 'https://evil.example.com' }))).body.error).toBe(
      'invalid_grant',
    );
    expect((await postToken(assertion({ ...good, exp: now - 10 }))).body.error).toBe('invalid_grant');
    expect((await postToken(assertion({ ...good, exp: now + 3600 }))).body.error).toBe('invalid_grant');
    expect((await postToken(assertion({ ...good, sub: 'nobody@example.com' }))).body.error).toBe(
      'invalid_grant',
    );
    expect((await postToken(assertion({ ...good, iss: 'unknown' }))).body.error).toBe('invalid_client_id');
    expect(
      (await postToken({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: 'x.y' }))
        .status,
    ).toBe(400);
    // Salesforce's own login host is an accepted audience too
    expect((await postToken(assertion({ ...good, aud: 'https://login.salesforce.com' }))).status).toBe(200);
  });

  it('password grant: password + security token; refresh_token grant; bad password fails', async () => {
    const oauth2 = new jsforce.OAuth2({
      loginUrl: h.url,
      clientId: CREDENTIALS.clientId,
      clientSecret: CREDENTIALS.clientSecret,
    });
    const res = await oauth2.authenticate('tokened@example.com', 'pwTOKEN123');
    expect(res.refresh_token).toBeTruthy();
    await expect(oauth2.authenticate('tokened@example.com', 'pw')).rejects.toMatchObject({
      name: 'invalid_grant',
      message: 'authentication failure',
    });
    const refreshed = await oauth2.refreshToken(res.refresh_token as string);
    expect(refreshed.access_token).not.toBe(res.access_token);
    expect(refreshed.id).toBe(res.id);
    await expect(oauth2.refreshToken('not-a-token')).rejects.toMatchObject({ name: 'invalid_grant' });
  });

  it('revoke ends a token', async () => {
    const conn = await h.connect();
    await conn.oauth2.revokeToken(conn.accessToken as string);
    const plain = new jsforce.Connection({
      instanceUrl: h.url,
      accessToken: conn.accessToken as string,
      version: API_VERSION,
    });
    await expect(plain.query('SELECT Id FROM Lead')).rejects.toMatchObject({
      errorCode: 'INVALID_SESSION_ID',
    });
  });
});

describe('emulator SOAP login', () => {
  it('conn.login() without an OAuth client goes over SOAP and yields a working session', async () => {
    const conn = new jsforce.Connection({ loginUrl: h.url, version: API_VERSION });
    const info = await conn.login('tokened@example.com', 'pwTOKEN123');
    expect(info.organizationId).toMatch(/^00D/);
    expect(conn.instanceUrl).toBe(h.url);
    const me = await conn.query<{ Username: string }>(`SELECT Username FROM User WHERE Id = '${info.id}'`);
    expect(me.records[0]?.Username).toBe('tokened@example.com');
    expect(h.emu.counters()['POST soap']).toBeGreaterThanOrEqual(1);
  });

  it('bad credentials: jsforce surfaces the INVALID_LOGIN fault; the server answered HTTP 500', async () => {
    const conn = new jsforce.Connection({ loginUrl: h.url, version: API_VERSION });
    await expect(conn.login(CREDENTIALS.username, 'wrong')).rejects.toThrow(
      'INVALID_LOGIN: Invalid username, password, security token; or user locked out.',
    );
    const res = await fetch(`${h.url}/services/Soap/u/${API_VERSION}`, {
      method: 'POST',
      headers: { 'content-type': 'text/xml', SOAPAction: '""' },
      body: '<se:Envelope xmlns:se="http://schemas.xmlsoap.org/soap/envelope/"><se:Body><login><username>a&amp;b</username><password>x</password></login></se:Body></se:Envelope>',
    });
    expect(res.status).toBe(500);
    expect(await res.text()).toContain(
      '<faultcode xmlns:sf="urn:fault.partner.soap.sforce.com">sf:INVALID_LOGIN</faultcode>',
    );
  });

  it('XML entities in credentials are decoded; garbage envelopes get a fault, not a crash', async () => {
    const conn = new jsforce.Connection({ loginUrl: h.url, version: API_VERSION });
    // jsforce escapes & < > in the password it sends
    await expect(conn.login(CREDENTIALS.username, `${CREDENTIALS.password}&<>`)).rejects.toThrow(
      /INVALID_LOGIN/,
    );
    for (const body of ['', 'not xml', '<a><b>', '\u0000\u0001'.repeat(100), '<Body><login><username>']) {
      const res = await fetch(`${h.url}/services/Soap/u/${API_VERSION}`, { method: 'POST', body });
      expect(res.status).toBe(500);
      expect(await res.text()).toContain('faultstring');
    }
    const ok = await conn.login(CREDENTIALS.username, CREDENTIALS.password);
    expect(ok.id).toMatch(/^005/);
  });
});

describe('session expiry and jsforce refresh', () => {
  it('an OAuth2 refresh token recovers a session expired mid-run', async () => {
    const oauth2 = new jsforce.OAuth2({
      loginUrl: h.url,
      clientId: CREDENTIALS.clientId,
      clientSecret: CREDENTIALS.clientSecret,
    });
    const tok = await oauth2.authenticate(CREDENTIALS.username, CREDENTIALS.password);
    const conn = new jsforce.Connection({
      oauth2,
      instanceUrl: tok.instance_url,
      accessToken: tok.access_token,
      refreshToken: tok.refresh_token as string,
      version: API_VERSION,
    });
    const refreshed: string[] = [];
    conn.on('refresh', (t: string) => refreshed.push(t));
    await conn.query('SELECT Id FROM User');
    expect(h.emu.control.expireSessions()).toBeGreaterThan(0);
    const res = await conn.query<{ Username: string }>('SELECT Username FROM User');
    expect(res.totalSize).toBeGreaterThan(0);
    expect(refreshed).toHaveLength(1);
    expect(conn.accessToken).toBe(refreshed[0]);
    expect(conn.accessToken).not.toBe(tok.access_token);
  });

  it('a refreshFn re-runs client_credentials after the control API expired the session', async () => {
    let calls = 0;
    const conn = h.connection({
      refreshFn: (c: jsforce.Connection, cb: (err: Error | null, token?: string) => void) => {
        calls += 1;
        c.oauth2
          .requestToken({ grant_type: 'client_credentials' })
          .then((r) => cb(null, r.access_token))
          .catch((err: Error) => cb(err));
      },
    });
    await conn.authorize({ grant_type: 'client_credentials' });
    const res = await fetch(`${h.url}/__emulator/sessions/expire`, { method: 'POST' });
    expect(((await res.json()) as { expired: number }).expired).toBeGreaterThan(0);
    const q = await conn.query('SELECT Id FROM User');
    expect(q.totalSize).toBeGreaterThan(0);
    expect(calls).toBe(1);
  });

  it('without a refresh path an expired session is INVALID_SESSION_ID (401)', async () => {
    const conn = await h.connect();
    const plain = new jsforce.Connection({
      instanceUrl: h.url,
      accessToken: conn.accessToken as string,
      version: API_VERSION,
    });
    h.emu.control.expireSessions();
    await expect(plain.query('SELECT Id FROM User')).rejects.toMatchObject({
      errorCode: 'INVALID_SESSION_ID',
      message: 'Session expired or invalid',
    });
  });
});
