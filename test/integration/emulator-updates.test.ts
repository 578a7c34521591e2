// The emulator's record updates, relationship paths and queue owners, through the real jsforce
// client and the control API over HTTP.
/* eslint-disable @typescript-eslint/no-explicit-any -- query rows are nested JSON read by path */
import { describe, expect, it } from 'vitest';
import { useEmulator } from '../helpers/emulator.ts';

const h = useEmulator();

async function control(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`${h.url}/__emulator/${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, json: await res.json() };
}

describe('record updates', () => {
  it('PATCH moves SystemModstamp and LastModifiedDate, CreatedDate stays', async () => {
    const conn = await h.connect();
    const [id] = h.emu.control.insert('Lead', [{ LastName: 'Patch', Company: 'P' }], {
      createdDate: '2026-01-01T00:00:00Z',
    });
    await conn.sobject('Lead').update({ Id: id!, Status: 'Working - Contacted' });
    const r = (
      await conn.query<Record<string, string>>(
        `SELECT CreatedDate, LastModifiedDate, SystemModstamp, Status FROM Lead WHERE Id = '${id}'`,
      )
    ).records[0]!;
    expect(r.Status).toBe('Working - Contacted');
    expect(Date.parse(r.CreatedDate!)).toBe(Date.parse('2026-01-01T00:00:00Z'));
    expect(Date.parse(r.SystemModstamp!)).toBeGreaterThan(Date.parse(r.CreatedDate!));
    expect(r.LastModifiedDate).toBe(r.SystemModstamp);
  });

  it('the control API updates with a chosen SystemModstamp (a late commit), and touches (system changes)', async () => {
    const [id] = h.emu.control.insert('Lead', [{ LastName: 'Late', Company: 'L' }]);
    const upd = await control('PATCH', 'records/Lead', {
      records: [{ Id: id, Rating: 'Hot' }],
      systemModstamp: '2026-02-03T04:05:06.789Z',
    });
    expect(upd).toMatchObject({ status: 200, json: { ids: [id] } });
    let rec = h.emu.org.get('Lead', id!)!;
    expect(rec.values.Rating).toBe('Hot');
    // second resolution, as Salesforce
    expect(rec.values.SystemModstamp).toBe(Date.parse('2026-02-03T04:05:06Z'));
    expect(rec.values.LastModifiedDate).toBe(Date.parse('2026-02-03T04:05:06Z'));

    const own = await control('PATCH', 'records/Lead', [
      { Id: id, Rating: 'Cold', SystemModstamp: '2026-02-04T00:00:00Z' },
    ]);
    expect(own.status).toBe(200);
    expect(h.emu.org.get('Lead', id!)!.values.SystemModstamp).toBe(Date.parse('2026-02-04T00:00:00Z'));

    const touched = await control('POST', 'records/Lead/touch', {
      ids: [id],
      systemModstamp: '2026-02-05T00:00:00Z',
    });
    expect(touched.status).toBe(200);
    rec = h.emu.org.get('Lead', id!)!;
    expect(rec.values.SystemModstamp).toBe(Date.parse('2026-02-05T00:00:00Z'));
    expect(rec.values.LastModifiedDate).toBe(Date.parse('2026-02-04T00:00:00Z'));
    expect(rec.values.Rating).toBe('Cold');

    expect((await control('PATCH', 'records/Lead', [{ Rating: 'Hot' }])).status).toBe(400);
    const bad = await control('PATCH', 'records/Lead', [{ Id: id, Rating: 'Hot', Nope: 1 }]);
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.json)).toContain('INVALID_FIELD');
  });
});

describe('relationship paths and queue owners', () => {
  it('follows relationship paths of up to five levels in SELECT and WHERE, and refuses a sixth', async () => {
    const conn = await h.connect();
    const ids = h.emu.control.insert('User', [
      { Username: 'm5@example.com', Email: 'm5@example.com', LastName: 'Five' },
    ]);
    // a chain of managers: u0 -> u1 -> ... -> u5
    for (let i = 4; i >= 0; i--) {
      const [u] = h.emu.control.insert('User', [
        { Username: `m${i}@example.com`, Email: `m${i}@example.com`, LastName: `M${i}`, ManagerId: ids[0] },
      ]);
      ids.unshift(u!);
    }
    const [lead] = h.emu.control.insert('Lead', [{ LastName: 'Deep', Company: 'D', OwnerId: ids[0] }]);
    const r = (
      await conn.query<any>(
        `SELECT Owner.Email, Owner.Manager.Email, Owner.Manager.Manager.Manager.Email FROM Lead ` +
          `WHERE Owner.Manager.Email = 'm1@example.com' AND Id = '${lead}'`,
      )
    ).records;
    expect(r).toHaveLength(1);
    expect(r[0].Owner.Email).toBe('m0@example.com');
    expect(r[0].Owner.Manager.Email).toBe('m1@example.com');
    expect(r[0].Owner.Manager.Manager.Manager.Email).toBe('m3@example.com');
    expect(r[0].Owner.Manager.attributes.type).toBe('User');
    // Salesforce counts the queried object as the first level: Lead + four relationships is five
    await expect(
      conn.query(`SELECT Owner.Manager.Manager.Manager.Manager.Email FROM Lead`),
    ).rejects.toMatchObject({ errorCode: 'MALFORMED_QUERY' });
  });

  it('a Lead owned by a queue (00G...) has Owner.Email the queue address, or null', async () => {
    const conn = await h.connect();
    const [withMail, noMail] = h.emu.control.insert('Group', [
      { Name: 'Web queue', Type: 'Queue', Email: 'webqueue@example.com' },
      { Name: 'Silent queue', Type: 'Queue' },
    ]);
    expect(withMail!.startsWith('00G')).toBe(true);
    const [a, b] = h.emu.control.insert('Lead', [
      { LastName: 'Q1', Company: 'Q', OwnerId: withMail },
      { LastName: 'Q2', Company: 'Q' },
    ]);
    await conn.sobject('Lead').update({ Id: b!, OwnerId: noMail! });
    const rows = (
      await conn.query<any>(
        `SELECT Id, OwnerId, Owner.Email, Owner.Manager.Email FROM Lead WHERE Id IN ('${a}', '${b}') ORDER BY Id`,
      )
    ).records;
    expect(rows[0]).toMatchObject({ OwnerId: withMail, Owner: { Email: 'webqueue@example.com' } });
    expect(rows[0].Owner.attributes.type).toBe('Group');
    // a queue has no manager: the path reads as null
    expect(rows[0].Owner.Manager).toBeNull();
    expect(rows[1].OwnerId).toBe(noMail);
    expect(rows[1].Owner.Email).toBeNull();
    const byQueue = await conn.query(`SELECT Id FROM Lead WHERE Owner.Email = 'webqueue@example.com'`);
    expect(byQueue.records.map((x) => x.Id)).toEqual([a]);
  });
});
