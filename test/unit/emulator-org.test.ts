import { describe, expect, it } from 'vitest';
import { isValidId, makeId, to18 } from '../../src/sources/salesforce/ids.ts';
import { Org, SalesforceError, STANDARD_OBJECTS, type OrgRecord } from '../../src/emulator/org.ts';
import { errorOf } from '../helpers/errors.ts';

/** a clock the test moves by hand */
function clock(start: string): { now: () => Date; set(iso: string): void } {
  let t = new Date(start);
  return { now: () => t, set: (iso) => (t = new Date(iso)) };
}

describe('ids', () => {
  it('computes the case-safe suffix like Salesforce', () => {
    // the widely published example, and pairs other projects' test suites list as valid
    expect(to18('001A0000006Vm9r')).toBe('001A0000006Vm9rIAC');
    expect(to18('003A0000005QB3A')).toBe('003A0000005QB3AIAW');
    expect(to18('003A0000008qb1s')).toBe('003A0000008qb1sIAA');
    expect(to18('00D50000000IZ3Z')).toBe('00D50000000IZ3ZEAW');
    // worked by hand: '00Q00' has Q at index 2 -> 4 -> E; the other chunks have no capitals -> A A
    expect(to18('00Q0000000000aa')).toBe('00Q0000000000aaEAA');
    expect(to18('001A0000006Vm9rIAC')).toBe('001A0000006Vm9rIAC');
    expect(() => to18('short')).toThrow();
  });

  it('validates Ids', () => {
    expect(isValidId('001A0000006Vm9rIAC')).toBe(true);
    expect(isValidId('001A0000006Vm9r')).toBe(true);
    expect(isValidId('001A0000006Vm9rIAD')).toBe(false);
    expect(isValidId('001A0000006Vm9')).toBe(false);
    expect(isValidId('001A0000006Vm9r-AC')).toBe(false);
  });

  it('makes distinct, valid 18-char Ids with the key prefix', () => {
    const ids = new Set<string>();
    for (const n of [0, 1, 61, 62, 3843, 123456789]) {
      const id = makeId('00Q', n);
      expect(id).toHaveLength(18);
      expect(id.startsWith('00Q')).toBe(true);
      expect(isValidId(id)).toBe(true);
      expect(to18(id.slice(0, 15))).toBe(id);
      ids.add(id);
    }
    expect(ids.size).toBe(6);
  });
});

describe('objects', () => {
  it('describes the standard objects case-insensitively', () => {
    const org = new Org();
    expect(org.objectNames()).toEqual(
      expect.arrayContaining(['Lead', 'Contact', 'Account', 'Case', 'Opportunity', 'User', 'PushTopic']),
    );
    const lead = org.describe('lead')!;
    expect(lead.name).toBe('Lead');
    expect(lead.keyPrefix).toBe('00Q');
    expect(lead.required).toEqual(['LastName', 'Company']);
    const owner = lead.fields.find((f) => f.name === 'OwnerId')!;
    expect(owner).toMatchObject({
      type: 'reference',
      referenceTo: ['User', 'Group'],
      relationshipName: 'Owner',
    });
    expect(org.describe('Nope')).toBeUndefined();
    for (const o of STANDARD_OBJECTS) expect(new Set(o.fields.map((f) => f.name)).size).toBe(o.fields.length);
  });
});

describe('insert', () => {
  it('assigns Id, owner and second-resolution audit fields', () => {
    const c = clock('2026-05-01T10:20:30.789Z');
    const org = new Org({ now: c.now });
    const r = org.insert('lead', {
      firstName: 'Ada',
      LASTNAME: 'Lovelace',
      Company: 'X',
      attributes: { type: 'Lead' },
    });
    expect(r.object).toBe('Lead');
    expect(r.Id).toMatch(/^00Q\w{15}$/);
    expect(isValidId(r.Id)).toBe(true);
    const sec = Date.parse('2026-05-01T10:20:30Z');
    expect(r.values).toMatchObject({
      FirstName: 'Ada',
      LastName: 'Lovelace',
      Name: 'Ada Lovelace',
      CreatedDate: sec,
      LastModifiedDate: sec,
      SystemModstamp: sec,
      OwnerId: org.defaultUserId,
      CreatedById: org.defaultUserId,
      IsDeleted: false,
      IsConverted: false,
      Status: 'Open - Not Contacted',
      Email: null,
    });
    expect(org.get('Lead', r.Id)).toBe(r);
    expect(org.get('Lead', r.Id.slice(0, 15))).toBe(r);
    expect(org.get('Contact', r.Id)).toBeUndefined();
    expect(org.getById(r.Id)).toBe(r);
    expect(org.count('Lead')).toBe(1);
  });

  it('accepts backdated timestamps in any offset and an explicit owner', () => {
    const org = new Org();
    const other = org.insert('User', {
      Username: 'o@example.com',
      Email: 'o@example.com',
      LastName: 'Other',
    });
    const r = org.insert(
      'Lead',
      { LastName: 'L', Company: 'C' },
      { createdDate: '2026-01-01T12:00:00.999+02:00', ownerId: other.Id },
    );
    expect(r.values.CreatedDate).toBe(Date.parse('2026-01-01T10:00:00Z'));
    expect(r.values.SystemModstamp).toBe(r.values.CreatedDate);
    expect(r.values.OwnerId).toBe(other.Id);
    const s = org.insert(
      'Lead',
      { LastName: 'L', Company: 'C' },
      { createdDate: new Date('2026-01-01T00:00:00Z'), systemModstamp: '2026-01-02T00:00:00Z' },
    );
    expect(s.values.SystemModstamp).toBe(Date.parse('2026-01-02T00:00:00Z'));
    expect(org.query(`SELECT Owner.Email FROM Lead WHERE Id = '${r.Id}'`).records[0]?.Owner).toMatchObject({
      Email: 'o@example.com',
    });
  });

  it('validates fields like the REST API', () => {
    const org = new Org();
    const unknown = errorOf(() => org.insert('Lead', { LastName: 'L', Company: 'C', Shoe: 1 }));
    expect([unknown.errorCode, unknown.status, unknown.fields]).toEqual(['INVALID_FIELD', 400, ['Shoe']]);
    const ro = errorOf(() =>
      org.insert('Lead', { LastName: 'L', Company: 'C', CreatedDate: '2026-01-01T00:00:00Z', Name: 'x' }),
    );
    expect(ro.errorCode).toBe('INVALID_FIELD_FOR_INSERT_UPDATE');
    expect(ro.fields).toEqual(['CreatedDate', 'Name']);
    expect(
      errorOf(() => org.insert('Lead', { Id: '00Q000000000000AAA', LastName: 'L', Company: 'C' })).errorCode,
    ).toBe('INVALID_FIELD_FOR_INSERT_UPDATE');
    const missing = errorOf(() => org.insert('Lead', { FirstName: 'x', Company: '' }));
    expect(missing.errorCode).toBe('REQUIRED_FIELD_MISSING');
    expect(missing.fields).toEqual(['LastName', 'Company']);
    expect(missing.message).toBe('Required fields are missing: [LastName, Company]');
    expect(
      errorOf(() => org.insert('Lead', { LastName: 'L', Company: 'C', NumberOfEmployees: 'many' })).errorCode,
    ).toBe('JSON_PARSER_ERROR');
    expect(
      errorOf(() => org.insert('Lead', { LastName: 'L', Company: 'C', IsConverted: 'yes' })).errorCode,
    ).toBe('JSON_PARSER_ERROR');
    expect(
      errorOf(() => org.insert('Lead', { LastName: 'L', Company: 'C', Email: 'not-an-address' })).errorCode,
    ).toBe('INVALID_EMAIL_ADDRESS');
    expect(errorOf(() => org.insert('Lead', { LastName: 'L', Company: 'x'.repeat(256) })).errorCode).toBe(
      'STRING_TOO_LONG',
    );
    expect(errorOf(() => org.insert('Lead', { LastName: 'L', Company: 'C', OwnerId: 'bad' })).errorCode).toBe(
      'MALFORMED_ID',
    );
    expect(
      errorOf(() => org.insert('Lead', { LastName: 'L', Company: 'C', OwnerId: makeId('005', 999) }))
        .errorCode,
    ).toBe('INVALID_CROSS_REFERENCE_KEY');
    expect(errorOf(() => org.insert('Nope', {})).errorCode).toBe('INVALID_TYPE');
    expect(org.count('Lead')).toBe(0);
  });

  it('converts typed values', () => {
    const org = new Org();
    const r = org.insert('Lead', {
      LastName: 'L',
      Company: 'C',
      NumberOfEmployees: '12',
      AnnualRevenue: 1.5,
      IsConverted: 'true',
      Phone: 5551234,
    });
    expect(r.values).toMatchObject({
      NumberOfEmployees: 12,
      AnnualRevenue: 1.5,
      IsConverted: true,
      Phone: '5551234',
    });
    const o = org.insert('Opportunity', {
      Name: 'o',
      StageName: 'Prospecting',
      CloseDate: '2026-02-03T23:00:00-05:00',
    });
    expect(o.values.CloseDate).toBe('2026-02-04');
  });

  it('insertMany is all-or-nothing and fast', () => {
    const org = new Org();
    expect(() => org.insertMany('Lead', [{ LastName: 'a', Company: 'c' }, { LastName: 'b' }])).toThrow(
      SalesforceError,
    );
    expect(org.count('Lead')).toBe(0);
    const rows = org.insertMany(
      'Lead',
      Array.from({ length: 1000 }, (_, i) => ({ LastName: `L${i}`, Company: 'c' })),
    );
    expect(new Set(rows.map((r) => r.Id)).size).toBe(1000);
    expect(org.count('Lead')).toBe(1000);
  });

  it('validates PushTopic queries on create', () => {
    const org = new Org();
    const e = errorOf(() =>
      org.insert('PushTopic', { Name: 't', Query: 'SELECT Id, Shoe FROM Lead', ApiVersion: 62 }),
    );
    expect(e.errorCode).toBe('INVALID_FIELD');
    expect(e.message).toContain("No such column 'Shoe'");
    const t = org.insert('PushTopic', { Name: 't', Query: 'SELECT Id, Email FROM Lead', ApiVersion: 62 });
    expect(t.values).toMatchObject({
      NotifyForFields: 'Referenced',
      NotifyForOperationCreate: true,
      IsActive: true,
    });
  });
});

describe('update, delete, events', () => {
  it('updates fields and modstamps, recomputes Name, reports changed fields', () => {
    const c = clock('2026-05-01T10:00:00Z');
    const org = new Org({ now: c.now });
    const seen: Array<[string, string[]]> = [];
    const listener = (r: OrgRecord, change: { changedFields: string[] }): void =>
      void seen.push([r.Id, change.changedFields]);
    org.on('update', listener);
    const r = org.insert('Lead', { FirstName: 'A', LastName: 'L', Company: 'C' });
    c.set('2026-05-01T10:05:00.400Z');
    org.update('lead', r.Id, { firstname: 'B', Company: 'C' });
    expect(r.values).toMatchObject({
      Name: 'B L',
      CreatedDate: Date.parse('2026-05-01T10:00:00Z'),
      SystemModstamp: Date.parse('2026-05-01T10:05:00Z'),
    });
    expect(r.values.LastModifiedDate).toBe(r.values.SystemModstamp);
    expect(seen).toEqual([
      [r.Id, expect.arrayContaining(['FirstName', 'Name', 'LastModifiedDate', 'SystemModstamp'])],
    ]);
    expect(seen[0]![1]).not.toContain('Company');
    org.off('update', listener);
    org.update('Lead', r.Id, { Title: 'x' });
    expect(seen).toHaveLength(1);
    expect(errorOf(() => org.update('Lead', r.Id, { LastName: null })).errorCode).toBe(
      'REQUIRED_FIELD_MISSING',
    );
    expect(errorOf(() => org.update('Lead', r.Id, { CreatedDate: '2026-01-01T00:00:00Z' })).errorCode).toBe(
      'INVALID_FIELD_FOR_INSERT_UPDATE',
    );
    expect(errorOf(() => org.update('Lead', makeId('00Q', 9999), { Title: 'x' })).status).toBe(404);
  });

  it('emits insert, delete and undelete; a throwing listener does not break the write', () => {
    const org = new Org();
    const events: string[] = [];
    org.on('insert', (r) => events.push(`insert ${r.values.LastName as string}`));
    org.on('insert', () => {
      throw new Error('subscriber bug');
    });
    org.on('delete', (r) => events.push(`delete ${r.values.IsDeleted as boolean}`));
    org.on('undelete', (r) => events.push(`undelete ${r.values.IsDeleted as boolean}`));
    const errors = console.error;
    console.error = () => {};
    try {
      const r = org.insert('Lead', { LastName: 'A', Company: 'C' });
      org.insertMany('Lead', [{ LastName: 'B', Company: 'C' }]);
      org.delete('Lead', r.Id);
      expect(org.count('Lead')).toBe(1);
      expect(errorOf(() => org.update('Lead', r.Id, { Title: 'x' })).errorCode).toBe('ENTITY_IS_DELETED');
      org.undelete('Lead', r.Id);
    } finally {
      console.error = errors;
    }
    expect(events).toEqual(['insert A', 'insert B', 'delete true', 'undelete false']);
  });

  it('reset clears data, keeps the default user, and never reuses Ids', () => {
    const org = new Org({ defaultOwnerEmail: 'owner@example.com' });
    const user = org.defaultUserId;
    const first = org.insert('Lead', { LastName: 'A', Company: 'C' });
    org.reset();
    expect(org.count('Lead')).toBe(0);
    expect(org.defaultUserId).toBe(user);
    expect(org.users.default.values.Email).toBe('owner@example.com');
    expect(org.users.byUsername('OWNER@example.com')?.Id).toBe(user);
    const second = org.insert('Lead', { LastName: 'A', Company: 'C' });
    expect(second.Id).not.toBe(first.Id);
  });
});

describe('updatedBetween', () => {
  it('lists ids whose SystemModstamp is in [start, end)', () => {
    const c = clock('2026-05-01T10:00:00Z');
    const org = new Org({ now: c.now });
    const a = org.insert('Lead', { LastName: 'A', Company: 'C' });
    c.set('2026-05-01T10:01:00Z');
    const b = org.insert('Lead', { LastName: 'B', Company: 'C' });
    c.set('2026-05-01T10:02:00Z');
    org.update('Lead', a.Id, { Title: 't' });
    const d = org.insert('Lead', { LastName: 'D', Company: 'C' });
    org.delete('Lead', d.Id);
    const res = org.updatedBetween(
      'Lead',
      new Date('2026-05-01T10:01:00Z'),
      new Date('2026-05-01T10:02:00Z'),
    );
    expect(res).toEqual({ ids: [b.Id], latestDateCovered: '2026-05-01T10:02:00.000+0000' });
    expect(
      org.updatedBetween('Lead', new Date('2026-05-01T10:00:00Z'), new Date('2026-05-01T11:00:00Z')).ids,
    ).toEqual([a.Id, b.Id]);
  });
});

describe('toApiRecord', () => {
  it('renders all fields by default, or the ones asked for', () => {
    const org = new Org({ now: () => new Date('2026-05-01T10:00:00Z') });
    const r = org.insert('Lead', { LastName: 'A', Company: 'C' });
    const all = org.toApiRecord(r);
    expect(all.attributes).toEqual({ type: 'Lead', url: `/services/data/v62.0/sobjects/Lead/${r.Id}` });
    expect(all).toMatchObject({
      Id: r.Id,
      LastName: 'A',
      Email: null,
      CreatedDate: '2026-05-01T10:00:00.000+0000',
      IsDeleted: false,
    });
    const some = org.toApiRecord(r, ['lastname', 'owner.username'], { apiVersion: '59.0' });
    expect(Object.keys(some)).toEqual(['attributes', 'LastName', 'Owner']);
    expect(some.Owner).toMatchObject({ Username: 'integration@example.com' });
    expect(errorOf(() => org.toApiRecord(r, ['Nope'])).errorCode).toBe('INVALID_FIELD');
  });
});
