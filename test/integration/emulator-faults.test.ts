// Injected faults, the HTTP control API, and robustness against hostile requests.
import { connect } from 'node:net';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Connection } from 'jsforce';
import { API_VERSION, useEmulator } from '../helpers/emulator.ts';

const h = useEmulator({ maxBodyBytes: 256 * 1024 });
let conn: Connection;

beforeAll(async () => {
  conn = await h.connect();
});
beforeEach(() => {
  h.emu.control.clearFaults();
  h.emu.control.resetCounters();
});

async function control(
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${h.url}/__emulator/${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: await res.json() };
}

/** Raw bytes over TCP; resolves with whatever the server answered before closing. */
function raw(bytes: string | Buffer): Promise<string> {
  return new Promise((resolve) => {
    const url = new URL(h.url);
    const sock = connect(Number(url.port), url.hostname);
    let out = '';
    sock.on('data', (d) => (out += d.toString('latin1')));
    sock.on('error', () => resolve(out));
    sock.on('close', () => resolve(out));
    sock.setTimeout(2000, () => sock.destroy());
    sock.write(bytes);
    sock.end();
  });
}

describe('faults', () => {
  it('a 503 burst on GET query: jsforce retries through it, counters show every attempt', async () => {
    const { status } = await control('POST', 'faults', {
      method: 'GET',
      path: '/query$',
      status: 503,
      count: 2,
    });
    expect(status).toBe(201);
    const res = await conn.query('SELECT Id FROM User');
    expect(res.totalSize).toBeGreaterThan(0);
    expect(h.emu.counters()['GET query']).toBe(3);
  });

  it('a 503 on POST is not retried by jsforce and surfaces as SERVER_UNAVAILABLE', async () => {
    h.emu.control.addFault({ method: 'POST', path: '/sobjects/Lead$', status: 503 });
    await expect(conn.sobject('Lead').create({ LastName: 'x', Company: 'y' })).rejects.toMatchObject({
      errorCode: 'SERVER_UNAVAILABLE',
    });
    // the burst is spent: the next create works
    await expect(conn.sobject('Lead').create({ LastName: 'x', Company: 'y' })).resolves.toMatchObject({
      success: true,
    });
  });

  it('a non-JSON body (HTML maintenance page) with a chosen status', async () => {
    h.emu.control.addFault({
      path: '/limits$',
      status: 400,
      body: '<html><body>Down for maintenance</body></html>',
      contentType: 'text/html',
    });
    const err = (await conn.limits().catch((e: unknown) => e)) as Error & {
      errorCode: string;
      data: unknown;
    };
    expect(err.errorCode).toBe('ERROR_HTTP_400');
    expect(String(err.data)).toContain('Down for maintenance');
  });

  it('an error code fault and a delay fault', async () => {
    h.emu.control.addFault({ path: '/limits$', status: 401, errorCode: 'INVALID_SESSION_ID', count: 1 });
    // a 401 sends jsforce down its refresh path; this client_credentials connection has no refresh token
    await expect(conn.limits()).rejects.toThrow('No refresh token found in the connection');
    h.emu.control.addFault({ path: '/limits$', delayMs: 300 });
    const t0 = Date.now();
    await conn.limits();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(280);
  });

  it('bad fault specs are rejected by the control API', async () => {
    expect((await control('POST', 'faults', { path: '(' })).status).toBe(400);
    expect((await control('POST', 'faults', { path: 'x', count: 0 })).status).toBe(400);
    expect((await control('POST', 'faults', { path: 'x', status: 42 })).status).toBe(400);
    expect((await control('GET', 'faults')).body).toEqual({ faults: [] });
  });
});

describe('control API over HTTP', () => {
  it('inserts records with chosen dates (bulk and per record) and lists them', async () => {
    const bulk = await control('POST', 'records/Contact', {
      records: [{ LastName: 'A' }, { LastName: 'B' }],
      createdDate: '2024-01-01T00:00:00.000Z',
    });
    expect(bulk.status).toBe(201);
    const ids = (bulk.body as { ids: string[] }).ids;
    expect(ids).toHaveLength(2);
    const one = await control('POST', 'records/Contact', {
      LastName: 'C',
      CreatedDate: '2023-06-01T10:00:00.000Z',
      SystemModstamp: '2023-06-02T10:00:00.000Z',
    });
    const cId = (one.body as { ids: string[] }).ids[0];
    const listed = (await control('GET', 'records/Contact')).body as {
      records: Array<{ Id: string; CreatedDate: string; SystemModstamp: string }>;
    };
    const byId = new Map(listed.records.map((r) => [r.Id, r]));
    expect(byId.get(ids[0] as string)?.CreatedDate).toMatch(/^2024-01-01T00:00:00\.000\+0000$/);
    expect(byId.get(cId as string)).toMatchObject({
      CreatedDate: '2023-06-01T10:00:00.000+0000',
      SystemModstamp: '2023-06-02T10:00:00.000+0000',
    });
    const q = await conn.query<{ Id: string }>(
      'SELECT Id FROM Contact WHERE CreatedDate < 2024-01-01T00:00:00Z',
    );
    expect(q.records.map((r) => r.Id)).toEqual([cId]);
    expect(
      (await control('POST', 'records/Contact', { records: [{ FirstName: 'no last name' }] })).status,
    ).toBe(400);
  });

  it('limits, counters, sessions/expire, events/age-out, reset', async () => {
    expect((await control('PUT', 'limits', { max: 50, used: 49 })).body).toEqual({ max: 50, used: 49 });
    await conn.query('SELECT Id FROM User');
    await expect(conn.query('SELECT Id FROM User')).rejects.toMatchObject({
      errorCode: 'REQUEST_LIMIT_EXCEEDED',
    });
    expect((await control('GET', 'counters')).body).toMatchObject({ 'GET query': 2 });
    expect((await control('POST', 'events/age-out', { olderThanMs: 0 })).status).toBe(200);
    expect((await control('POST', 'reset')).status).toBe(200);
    expect((await control('GET', 'limits')).body).toEqual({ max: 50, used: 0 });
    expect(((await control('GET', 'records/Contact')).body as { records: unknown[] }).records).toEqual([]);
    // users survive a reset and sessions stay valid
    expect((await conn.query('SELECT Id FROM User')).totalSize).toBeGreaterThan(0);
    expect(((await control('POST', 'sessions/expire')).body as { expired: number }).expired).toBeGreaterThan(
      0,
    );
    await expect(conn.query('SELECT Id FROM User')).rejects.toThrow(
      'No refresh token found in the connection',
    );
    h.emu.control.setLimits({ max: 15000 });
    conn = await h.connect();
  });

  it('unknown control routes are 404, bad JSON 400', async () => {
    expect((await control('GET', 'nope')).status).toBe(404);
    const res = await fetch(`${h.url}/__emulator/faults`, { method: 'POST', body: '{' });
    expect(res.status).toBe(400);
  });
});

describe('robustness', () => {
  it('garbage requests get answers and the server keeps serving', async () => {
    const answers = await Promise.all([
      raw('GARBAGE\r\n\r\n'),
      raw('GET /services/data HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n'),
      raw(Buffer.from([0, 1, 2, 3, 255, 254, 13, 10, 13, 10])),
      raw('GET /%%%/../..%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
      raw('BREW /services/data/v62.0/query HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
      raw(`GET /services/data HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(100_000)}\r\n\r\n`),
    ]);
    expect(answers[0]).toMatch(/^HTTP\/1\.1 400/);
    expect(answers[3]).toMatch(/^HTTP\/1\.1 (400|404)/);
    expect(answers[4]).toMatch(/^HTTP\/1\.1 (400|401|405)/);
    expect(answers[5]).toMatch(/^HTTP\/1\.1 4\d\d/);
    const auth = { authorization: `Bearer ${conn.accessToken}` };
    const base = `${h.url}/services/data/v${API_VERSION}`;
    const odd = await Promise.all([
      fetch(`${base}/query?q=%E0%A4%A`, { headers: auth }),
      fetch(`${base}/sobjects/%ZZ/describe`, { headers: auth }),
      fetch(`${base}/query/${'9'.repeat(5000)}`, { headers: auth }),
      fetch(`${base}/sobjects/Lead/updated?start=yesterday&end=now`, { headers: auth }),
      fetch(`${h.url}/services/oauth2/token`, { method: 'POST', body: '%%%&&&==' }),
      fetch(`${h.url}/services/oauth2/token`, {
        method: 'POST',
        headers: { authorization: 'Basic !!!', 'content-type': 'application/x-www-form-urlencoded' },
        body: 'grant_type=client_credentials',
      }),
      fetch(`${h.url}/id/x/y`),
      fetch(`${base}/limits`, { headers: { authorization: 'Bearer' } }),
    ]);
    for (const r of odd) expect(r.status).toBeGreaterThanOrEqual(400);
    expect((await conn.query('SELECT Id FROM User')).totalSize).toBeGreaterThan(0);
  });

  it('a body over the cap is 413; the server still serves', async () => {
    const res = await fetch(`${h.url}/services/data/v${API_VERSION}/sobjects/Lead`, {
      method: 'POST',
      headers: { authorization: `Bearer ${conn.accessToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ LastName: 'x'.repeat(300 * 1024) }),
    }).catch(() => undefined);
    if (res) expect(res.status).toBe(413);
    const chunked = await raw(
      `POST /services/oauth2/token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${'40000\r\n' + 'a'.repeat(0x40000) + '\r\n'}${'40000\r\n' + 'a'.repeat(0x40000) + '\r\n'}0\r\n\r\n`,
    );
    expect(chunked).toMatch(/^HTTP\/1\.1 413/);
    expect((await conn.query('SELECT Id FROM User')).totalSize).toBeGreaterThan(0);
  });
});
