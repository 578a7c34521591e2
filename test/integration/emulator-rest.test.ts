// The emulator's REST API through the real jsforce client: paging, sobjects, limits, errors.
import { beforeAll, describe, expect, it } from 'vitest';
import type { Connection } from 'jsforce';
import { API_VERSION, useEmulator } from '../helpers/emulator.ts';

let clock = Date.parse('2025-03-01T12:00:00Z');
const h = useEmulator({ org: { now: () => new Date(clock) } });
let conn: Connection;
const leadIds: string[] = [];

beforeAll(async () => {
  conn = await h.connect();
  // 2,345 Leads in three waves with distinct CreatedDates, so ORDER BY CreatedDate, Id is total
  const rows = (from: number, n: number) =>
    Array.from({ length: n }, (_, i) => ({
      LastName: `Lead ${from + i}`,
      Company: 'Acme',
      LeadSource: 'Web',
    }));
  leadIds.push(...h.emu.control.insert('Lead', rows(0, 1000), { createdDate: '2025-02-01T00:00:00Z' }));
  leadIds.push(...h.emu.control.insert('Lead', rows(1000, 1000), { createdDate: '2025-02-02T00:00:00Z' }));
  leadIds.push(...h.emu.control.insert('Lead', rows(2000, 345), { createdDate: '2025-02-03T00:00:00Z' }));
});

const ALL = 'SELECT Id, LastName, CreatedDate FROM Lead ORDER BY CreatedDate, Id';
const batch = (n: number) => ({ 'Sforce-Query-Options': `batchSize=${n}` });

describe('query paging', () => {
  it('autoFetch with batchSize=200 returns all 2,345 Leads once, in order, in 12 pages', async () => {
    const before = h.emu.counters()['GET queryMore'] ?? 0;
    const res = await conn
      .query<{ Id: string }>(ALL)
      .run({ autoFetch: true, maxFetch: 10000, headers: batch(200) });
    expect(res.totalSize).toBe(2345);
    expect(res.records.map((r) => r.Id)).toEqual([...leadIds].sort((a, b) => cmpIds(a, b, leadIds)));
    expect(new Set(res.records.map((r) => r.Id)).size).toBe(2345);
    expect((h.emu.counters()['GET queryMore'] ?? 0) - before).toBe(11);
  });

  it('pages follow nextRecordsUrl with conn.queryMore; the last page is done', async () => {
    const first = await conn
      .query<{ Id: string }>(ALL, { headers: batch(1000) })
      .run({ autoFetch: false, headers: batch(1000) });
    expect(first.done).toBe(false);
    expect(first.records).toHaveLength(1000);
    // jsforce makes it absolute; the wire carries the relative form (checked below with fetch)
    expect(first.nextRecordsUrl).toMatch(
      new RegExp(`/services/data/v${API_VERSION}/query/01g[0-9A-Za-z]{15}-1000$`),
    );
    // the cursor keeps the batch size it was opened with
    const second = await conn.queryMore<{ Id: string }>(first.nextRecordsUrl as string);
    expect(second.records).toHaveLength(1000);
    expect(second.done).toBe(false);
    const third = await conn.queryMore<{ Id: string }>(second.nextRecordsUrl as string);
    expect(third.records).toHaveLength(345);
    expect(third.done).toBe(true);
    expect(third.nextRecordsUrl).toBeUndefined();
    // the cursor is released once read to the end
    await expect(conn.queryMore(second.nextRecordsUrl as string)).rejects.toMatchObject({
      errorCode: 'INVALID_QUERY_LOCATOR',
    });
  });

  it('on the wire: nextRecordsUrl is relative, totalSize and done are present', async () => {
    const res = await fetch(`${h.url}/services/data/v${API_VERSION}/query?q=${encodeURIComponent(ALL)}`, {
      headers: { authorization: `Bearer ${conn.accessToken}`, ...batch(2000) },
    });
    const body = (await res.json()) as {
      totalSize: number;
      done: boolean;
      nextRecordsUrl: string;
      records: unknown[];
    };
    expect(body).toMatchObject({ totalSize: 2345, done: false });
    expect(body.nextRecordsUrl).toMatch(
      new RegExp(`^/services/data/v${API_VERSION}/query/01g[0-9A-Za-z]{15}-2000$`),
    );
    expect(body.records).toHaveLength(2000);
    expect(res.headers.get('sforce-limit-info')).toMatch(/^api-usage=\d+\/15000$/);
  });

  it('batchSize outside 200..2000 is clamped; the default is 2000', async () => {
    const tiny = await conn.query(ALL).run({ autoFetch: false, headers: batch(5) });
    expect(tiny.records).toHaveLength(200);
    const huge = await conn.query(ALL).run({ autoFetch: false, headers: batch(50000) });
    expect(huge.records).toHaveLength(2000);
    const dflt = await conn.query(ALL).run({ autoFetch: false });
    expect(dflt.records).toHaveLength(2000);
    expect(dflt.done).toBe(false);
  });

  it('a locator idle for 15 minutes is INVALID_QUERY_LOCATOR (400)', async () => {
    const first = await conn.query(ALL).run({ autoFetch: false, headers: batch(200) });
    clock += 16 * 60 * 1000;
    await expect(conn.queryMore(first.nextRecordsUrl as string)).rejects.toMatchObject({
      errorCode: 'INVALID_QUERY_LOCATOR',
      name: 'INVALID_QUERY_LOCATOR',
    });
    const res = await fetch(first.nextRecordsUrl as string, {
      headers: { authorization: `Bearer ${conn.accessToken}` },
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual([
      { message: 'invalid query locator', errorCode: 'INVALID_QUERY_LOCATOR' },
    ]);
  });

  it('only 10 cursors stay open per user: the oldest is released', async () => {
    const urls: string[] = [];
    for (let i = 0; i < 11; i++) {
      const r = await conn.query(ALL).run({ autoFetch: false, headers: batch(200) });
      urls.push(r.nextRecordsUrl as string);
    }
    await expect(conn.queryMore(urls[0] as string)).rejects.toMatchObject({
      errorCode: 'INVALID_QUERY_LOCATOR',
    });
    const latest = await conn.queryMore(urls[10] as string);
    expect(latest.records).toHaveLength(200);
  });

  it('queryAll includes deleted records, query does not', async () => {
    const { id } = (await conn.sobject('Lead').create({ LastName: 'Gone', Company: 'Tmp' })) as {
      id: string;
    };
    await conn.sobject('Lead').destroy(id);
    const q = `SELECT Id, IsDeleted FROM Lead WHERE Id = '${id}'`;
    expect((await conn.query(q)).totalSize).toBe(0);
    const all = await conn.query<{ IsDeleted: boolean }>(q, { scanAll: true });
    expect(all.totalSize).toBe(1);
    expect(all.records[0]?.IsDeleted).toBe(true);
    expect(h.emu.counters()['GET queryAll']).toBeGreaterThan(0);
  });

  it('SOQL errors come back as the engine reports them', async () => {
    await expect(conn.query('SELECT Nope FROM Lead')).rejects.toMatchObject({ errorCode: 'INVALID_FIELD' });
    await expect(conn.query('SELECT Id FROM Nothing')).rejects.toMatchObject({ errorCode: 'INVALID_TYPE' });
    await expect(conn.query('SELEKT')).rejects.toMatchObject({ errorCode: 'MALFORMED_QUERY' });
  });
});

function cmpIds(a: string, b: string, inserted: string[]): number {
  return inserted.indexOf(a) - inserted.indexOf(b);
}

describe('sobjects', () => {
  it('create returns an 18-char 00Q id; retrieve (with fields=) and update round-trip', async () => {
    const res = (await conn
      .sobject('Lead')
      .create({ FirstName: 'Ada', LastName: 'Lovelace', Company: 'Engines' })) as {
      id: string;
      success: boolean;
      errors: unknown[];
    };
    expect(res).toEqual({ id: expect.stringMatching(/^00Q[0-9A-Za-z]{15}$/), success: true, errors: [] });
    const rec = await conn.sobject('Lead').retrieve(res.id);
    expect(rec).toMatchObject({
      Id: res.id,
      LastName: 'Lovelace',
      Company: 'Engines',
      attributes: { type: 'Lead' },
    });
    await conn.sobject('Lead').update({ Id: res.id, Company: 'Analytical Engines' });
    const some = await conn.sobject('Lead').retrieve(res.id, { fields: ['Company'] });
    expect(some.Company).toBe('Analytical Engines');
    expect(some.LastName).toBeUndefined();
    // the 15-char form is accepted too
    expect((await conn.sobject('Lead').retrieve(res.id.slice(0, 15))).Id).toBe(res.id);
  });

  it('unknown records and objects are NOT_FOUND; validation errors are the org’s', async () => {
    await expect(conn.sobject('Lead').retrieve('00Q5g00000zzzzzAAA')).rejects.toMatchObject({
      errorCode: 'NOT_FOUND',
    });
    await expect(conn.sobject('Lead').retrieve('garbage')).rejects.toMatchObject({ errorCode: 'NOT_FOUND' });
    await expect(conn.sobject('Nope__c').create({ Name: 'x' })).rejects.toMatchObject({
      errorCode: 'NOT_FOUND',
    });
    await expect(conn.sobject('Lead').create({ FirstName: 'No last name' })).rejects.toMatchObject({
      errorCode: 'REQUIRED_FIELD_MISSING',
    });
  });

  it('updated(start, end) lists ids changed in the window with latestDateCovered', async () => {
    const start = new Date(clock - 60_000);
    const { id } = (await conn.sobject('Lead').create({ LastName: 'Fresh', Company: 'New' })) as {
      id: string;
    };
    clock += 60_000;
    const res = await conn.sobject('Lead').updated(start, new Date(clock));
    expect(res.ids).toContain(id);
    expect(res.ids).not.toContain(leadIds[0]);
    expect(typeof res.latestDateCovered).toBe('string');
  });

  it('describe and describeGlobal', async () => {
    const d = await conn.sobject('Lead').describe();
    expect(d).toMatchObject({ name: 'Lead', label: 'Lead', keyPrefix: '00Q' });
    const owner = d.fields.find((f) => f.name === 'OwnerId');
    expect(owner).toMatchObject({
      type: 'reference',
      referenceTo: ['User', 'Group'],
      relationshipName: 'Owner',
      createable: true,
    });
    const id = d.fields.find((f) => f.name === 'Id');
    expect(id).toMatchObject({ type: 'id', nillable: false, createable: false, updateable: false });
    const g = await conn.describeGlobal();
    expect(g.sobjects.map((s) => s.name)).toEqual(
      expect.arrayContaining(['Lead', 'Contact', 'Account', 'User']),
    );
  });
});

describe('versions, limits and errors', () => {
  it('GET /services/data lists versions; an unsupported version is NOT_FOUND', async () => {
    const versions = (await (await fetch(`${h.url}/services/data`)).json()) as Array<{
      version: string;
      url: string;
    }>;
    expect(versions.at(-1)).toEqual({ label: "Winter '25", url: '/services/data/v62.0', version: '62.0' });
    expect(versions[0]?.version).toBe('50.0');
    const res = await fetch(`${h.url}/services/data/v12.0/limits`, {
      headers: { authorization: `Bearer ${conn.accessToken}` },
    });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual([
      { errorCode: 'NOT_FOUND', message: 'The requested resource does not exist' },
    ]);
    const resources = await conn.request<Record<string, string>>(`/services/data/v${API_VERSION}`);
    expect(resources.query).toBe(`/services/data/v${API_VERSION}/query`);
  });

  it('limits and Sforce-Limit-Info; REQUEST_LIMIT_EXCEEDED once the allocation is used', async () => {
    h.emu.control.setLimits({ max: 1000, used: 10 });
    const limits = await conn.limits();
    expect(limits.DailyApiRequests).toEqual({ Max: 1000, Remaining: 989 });
    expect(conn.limitInfo.apiUsage).toEqual({ used: 11, limit: 1000 });
    h.emu.control.setLimits({ used: 1000 });
    const err = await conn.query('SELECT Id FROM User').then(
      () => undefined,
      (e: unknown) => e as Error & { errorCode?: string },
    );
    expect(err?.errorCode).toBe('REQUEST_LIMIT_EXCEEDED');
    expect(err?.message).toBe('TotalRequests Limit exceeded.');
    expect(err?.constructor.name).toBe('HttpApiError');
    const res = await fetch(`${h.url}/services/data/v${API_VERSION}/limits`, {
      headers: { authorization: `OAuth ${conn.accessToken}` },
    });
    expect(res.status).toBe(403);
    expect(res.headers.get('sforce-limit-info')).toBe('api-usage=1000/1000');
    h.emu.control.setLimits({ max: 15000, used: 0 });
  });

  it('wrong methods are 405; unknown resources 404; missing auth 401', async () => {
    const auth = { authorization: `Bearer ${conn.accessToken}` };
    const base = `${h.url}/services/data/v${API_VERSION}`;
    expect(
      (await fetch(`${base}/query?q=SELECT+Id+FROM+Lead`, { method: 'DELETE', headers: auth })).status,
    ).toBe(405);
    expect((await fetch(`${base}/sobjects/Lead/describe`, { method: 'POST', headers: auth })).status).toBe(
      405,
    );
    expect((await fetch(`${base}/nothing/here`, { headers: auth })).status).toBe(404);
    const noAuth = await fetch(`${base}/limits`);
    expect(noAuth.status).toBe(401);
    expect(await noAuth.json()).toEqual([
      { message: 'Session expired or invalid', errorCode: 'INVALID_SESSION_ID' },
    ]);
  });

  it('a malformed JSON body is JSON_PARSER_ERROR', async () => {
    const res = await fetch(`${h.url}/services/data/v${API_VERSION}/sobjects/Lead`, {
      method: 'POST',
      headers: { authorization: `Bearer ${conn.accessToken}`, 'content-type': 'application/json' },
      body: '{"LastName": "x", ',
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as Array<{ errorCode: string }>)[0]?.errorCode).toBe('JSON_PARSER_ERROR');
    await expect(conn.requestPost(`/sobjects/Lead`, [1, 2])).rejects.toMatchObject({
      errorCode: 'JSON_PARSER_ERROR',
    });
  });
});
