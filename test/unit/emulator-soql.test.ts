import { describe, expect, it } from 'vitest';
import { Org, SalesforceError } from '../../src/emulator/org.ts';
import { parseSoql, tokenize } from '../../src/emulator/soql/parser.ts';
import { dateLiteralRange, dayToDate } from '../../src/emulator/soql/dates.ts';
import { errorOf } from '../helpers/errors.ts';

// Sunday 2026-03-15, 12:00 UTC
const NOW = new Date('2026-03-15T12:00:00Z');

function seeded(): Org {
  const org = new Org({ now: () => NOW });
  const rows: Array<[Record<string, unknown>, string]> = [
    [
      {
        FirstName: 'Ada',
        LastName: 'Lovelace',
        Company: 'Analytical',
        LeadSource: 'Web',
        Email: 'ada@example.com',
        NumberOfEmployees: 10,
      },
      '2026-03-15T08:00:00Z',
    ],
    [
      {
        FirstName: 'Grace',
        LastName: 'Hopper',
        Company: 'Navy',
        LeadSource: 'Phone Inquiry',
        NumberOfEmployees: 500,
      },
      '2026-03-14T23:59:59Z',
    ],
    [
      { FirstName: null, LastName: "O'Brien", Company: '100%_Pure', LeadSource: null, Title: 'Line1\nLine2' },
      '2026-03-01T00:00:00Z',
    ],
    [
      {
        FirstName: 'alan',
        LastName: 'Turing',
        Company: 'Bletchley',
        LeadSource: 'web',
        NumberOfEmployees: 50,
      },
      '2026-02-10T10:00:00+02:00',
    ],
    [
      { FirstName: 'Edsger', LastName: 'Dijkstra', Company: 'TU', LeadSource: 'Other' },
      '2026-03-08T00:00:00Z',
    ],
  ];
  for (const [fields, created] of rows) org.insert('Lead', fields, { createdDate: created });
  return org;
}

const names = (org: Org, where: string, order = 'ORDER BY LastName'): string[] =>
  org.query(`SELECT LastName FROM Lead ${where} ${order}`).records.map((r) => r.LastName as string);

describe('tokenizer', () => {
  it('reads literals, escapes and datetimes', () => {
    const toks = tokenize(
      "SELECT Id FROM Lead WHERE Name = 'It\\'s \\\\ \\n\\t\\\"' AND CreatedDate > 2026-01-01T10:00:00.250+02:00",
    );
    const str = toks.find((t) => t.kind === 'string');
    expect(str && str.kind === 'string' && str.value).toBe('It\'s \\ \n\t"');
    const dt = toks.find((t) => t.kind === 'datetime');
    expect(dt && dt.kind === 'datetime' && dt.value).toBe(Date.parse('2026-01-01T08:00:00.250Z'));
  });

  it('rejects illegal escapes, unterminated strings and stray characters', () => {
    expect(errorOf(() => tokenize("SELECT Id FROM Lead WHERE Name = 'a\\qb'")).errorCode).toBe(
      'MALFORMED_QUERY',
    );
    expect(errorOf(() => tokenize("SELECT Id FROM Lead WHERE Name = 'abc")).errorCode).toBe(
      'MALFORMED_QUERY',
    );
    expect(errorOf(() => tokenize('SELECT Id FROM Lead WHERE Name = "x"')).message).toContain(
      `unexpected token: '"'`,
    );
    expect(
      errorOf(() => tokenize('SELECT Id FROM Lead WHERE CreatedDate > 2026-02-30T00:00:00Z')).errorCode,
    ).toBe('MALFORMED_QUERY');
  });
});

describe('parser', () => {
  it('parses the supported grammar', () => {
    const q = parseSoql(
      "select Id, owner.email from lead where (a = 1 or b != 'x') and not_a_kw in ('a','b') and c not in (1) and d like 'x%' " +
        'order by CreatedDate desc nulls first, Id limit 10 offset 5',
    );
    expect(q.fields?.map((f) => f.path.join('.'))).toEqual(['Id', 'owner.email']);
    expect(q.object.name).toBe('lead');
    expect(q.where?.kind).toBe('and');
    expect(q.orderBy).toEqual([
      expect.objectContaining({ desc: true, nullsLast: false }),
      expect.objectContaining({ desc: false, nullsLast: false }),
    ]);
    expect([q.limit, q.offset]).toEqual([10, 5]);
    expect(parseSoql('SELECT COUNT() FROM Lead').fields).toBeNull();
    expect(parseSoql('SELECT Id FROM Lead ORDER BY Name DESC').orderBy[0]?.nullsLast).toBe(true);
  });

  it('follows the reference on AND/OR nesting and NOT placement', () => {
    const mixed = errorOf(() => parseSoql('SELECT Id FROM Lead WHERE A = 1 AND B = 2 OR C = 3'));
    expect(mixed.errorCode).toBe('MALFORMED_QUERY');
    expect(mixed.message).toContain("unexpected token: 'OR'");
    expect(mixed.message).toContain('ERROR at Row:1:Column:43');
    expect(() => parseSoql('SELECT Id FROM Lead WHERE A = 1 AND (B = 2 OR C = 3)')).not.toThrow();
    expect(() => parseSoql('SELECT Id FROM Lead WHERE A = 1 AND B = 2 AND C = 3')).not.toThrow();
    expect(() => parseSoql('SELECT Id FROM Lead WHERE NOT A = 1')).not.toThrow();
    expect(() => parseSoql('SELECT Id FROM Lead WHERE A = 1 AND (NOT B = 2)')).not.toThrow();
    expect(errorOf(() => parseSoql('SELECT Id FROM Lead WHERE A = 1 AND NOT B = 2')).message).toContain(
      "unexpected token: 'NOT'",
    );
  });

  it.each([
    ['SELECT Id FORM Lead', "unexpected token: 'FORM'"],
    ['SELECT FROM Lead', "unexpected token: 'FROM'"],
    ['SELECT Id FROM', 'unexpected token: <EOF>'],
    ['SELECT Id FROM Lead WHERE', 'unexpected token: <EOF>'],
    ['SELECT Id FROM Lead WHERE Name =', 'unexpected token: <EOF>'],
    ['SELECT Id FROM Lead LIMIT x', "unexpected token: 'x'"],
    ['SELECT Id FROM Lead LIMIT 5 garbage', "unexpected token: 'garbage'"],
    ['SELECT Id, FROM Lead', "unexpected token: 'Lead'"],
    ['SELECT Id FROM Lead WHERE Name = :name', 'bind variable'],
    ['SELECT LeadSource, COUNT(Id) FROM Lead GROUP BY LeadSource', 'Aggregate function COUNT(field)'],
    ['SELECT Id FROM Lead GROUP BY LeadSource', 'GROUP BY is not supported'],
    ['SELECT MAX(CreatedDate) FROM Lead', 'Aggregate function MAX(field)'],
    ['SELECT Id, (SELECT Id FROM Contacts) FROM Account', 'subquery'],
    ['SELECT Id FROM Lead WHERE Id IN (SELECT LeadId FROM X)', 'semi-join'],
    ['SELECT TYPEOF Owner WHEN User THEN Email END FROM Lead', 'TYPEOF'],
    ['SELECT Id FROM Lead FOR UPDATE', 'FOR VIEW / FOR REFERENCE / FOR UPDATE'],
    ['SELECT Id FROM Lead WITH SECURITY_ENFORCED', 'WITH is not supported'],
    ['SELECT Id, COUNT() FROM Lead', 'COUNT() together with other fields'],
    ['SELECT FIELDS(ALL) FROM Lead', 'FIELDS()'],
    ['SELECT Id FROM Lead WHERE LAST_N_DAYS:x = 1', "unexpected token: ':'"],
    ['SELECT Id FROM Lead WHERE CreatedDate = LAST_N_DAYS', 'unexpected token: <EOF>'],
    ["SELECT Id FROM Lead WHERE Name NOT LIKE 'a'", "unexpected token: 'LIKE'"],
  ])('rejects %s', (soql, fragment) => {
    const e = errorOf(() => parseSoql(soql));
    expect(e.errorCode).toBe('MALFORMED_QUERY');
    expect(e.status).toBe(400);
    expect(e.message).toContain(fragment);
  });

  it('never throws anything but SalesforceError, whatever the input', () => {
    const org = seeded();
    const base = [
      "SELECT Id, Owner.Email FROM Lead WHERE (Name LIKE 'a\\%' OR CreatedDate > LAST_N_DAYS:3) AND NumberOfEmployees IN (1, -2.5) ORDER BY Id DESC NULLS LAST LIMIT 3 OFFSET 1",
      'SELECT COUNT() FROM Contact WHERE CreatedDate >= 2026-01-01T00:00:00Z',
    ];
    const alphabet = "SELECTFROMWHERE ()',.:=<>!%_\\\n\t0123456789-TZabc'\"";
    let seed = 42;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const inputs: string[] = [
      `SELECT Id FROM Lead WHERE ${'('.repeat(20_000)}Name = 'x'${')'.repeat(20_000)}`,
      `SELECT Id FROM Lead WHERE ${Array.from({ length: 5000 }, () => "Name = 'x'").join(' OR ')}`,
      "SELECT Id FROM Lead WHERE Name = '" + 'x'.repeat(200_000) + "'",
      '',
      ' ',
      "'",
      '(',
      'SELECT',
      "SELECT Id FROM Lead WHERE Name = '\\",
      '\u0000',
      '😀',
    ];
    for (const b of base) {
      for (let cut = 0; cut <= b.length; cut += 3) inputs.push(b.slice(0, cut));
      for (let i = 0; i < 300; i++) {
        const chars = [...b];
        for (let k = 0; k < 1 + rand(4); k++) chars[rand(chars.length)] = alphabet[rand(alphabet.length)]!;
        inputs.push(chars.join(''));
      }
    }
    for (let i = 0; i < 200; i++)
      inputs.push(Array.from({ length: rand(40) }, () => alphabet[rand(alphabet.length)]).join(''));
    for (const input of inputs) {
      try {
        org.query(input);
      } catch (e) {
        if (!(e instanceof SalesforceError))
          throw new Error(`non-Salesforce error for ${JSON.stringify(input)}: ${String(e)}`, { cause: e });
      }
    }
  });
});

describe('binding errors', () => {
  const org = seeded();
  it('reports unknown fields, objects and relationships like Salesforce', () => {
    const f = errorOf(() => org.query('SELECT Id, Foo FROM Lead'));
    expect(f.errorCode).toBe('INVALID_FIELD');
    expect(f.message).toContain(
      "No such column 'Foo' on entity 'Lead'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name.",
    );
    const t = errorOf(() => org.query('SELECT Id FROM Foo'));
    expect(t.errorCode).toBe('INVALID_TYPE');
    expect(t.message).toContain("sObject type 'Foo' is not supported.");
    expect(errorOf(() => org.query('SELECT Boss.Email FROM Lead')).message).toContain(
      "Didn't understand relationship 'Boss'",
    );
    expect(errorOf(() => org.query('SELECT Owner.Shoe FROM Lead')).message).toContain(
      "No such column 'Shoe' on entity 'User'",
    );
    expect(errorOf(() => org.query('SELECT Id FROM Lead WHERE Foo = 1')).errorCode).toBe('INVALID_FIELD');
    expect(errorOf(() => org.query('SELECT Id FROM Lead ORDER BY Foo')).errorCode).toBe('INVALID_FIELD');
    expect(
      errorOf(() => org.query('SELECT Owner.Manager.Manager.Manager.Manager.Email FROM Lead')).errorCode,
    ).toBe('MALFORMED_QUERY');
    expect(errorOf(() => org.query('SELECT Owner.Manager.Shoe FROM Lead')).message).toContain(
      "No such column 'Shoe' on entity 'User'",
    );
    expect(errorOf(() => org.query('SELECT Id, id FROM Lead')).message).toContain(
      'duplicate field selected: Id',
    );
  });

  it('type-checks filter values', () => {
    expect(
      errorOf(() => org.query("SELECT Id FROM Lead WHERE CreatedDate > '2026-01-01'")).message,
    ).toContain(
      "value of filter criterion for field 'CreatedDate' must be of type dateTime and should not be enclosed in quotes",
    );
    expect(errorOf(() => org.query('SELECT Id FROM Lead WHERE CreatedDate > 2026-01-01')).errorCode).toBe(
      'INVALID_FIELD',
    );
    expect(errorOf(() => org.query('SELECT Id FROM Lead WHERE LastName = 5')).message).toContain(
      'should be enclosed in quotes',
    );
    expect(errorOf(() => org.query("SELECT Id FROM Lead WHERE NumberOfEmployees = '5'")).errorCode).toBe(
      'INVALID_FIELD',
    );
    expect(errorOf(() => org.query("SELECT Id FROM Lead WHERE Id = 'nope'")).errorCode).toBe(
      'INVALID_QUERY_FILTER_OPERATOR',
    );
    expect(errorOf(() => org.query('SELECT Id FROM Lead WHERE IsConverted > true')).errorCode).toBe(
      'INVALID_QUERY_FILTER_OPERATOR',
    );
    expect(errorOf(() => org.query("SELECT Id FROM Lead WHERE CreatedDate LIKE '2026%'")).errorCode).toBe(
      'INVALID_QUERY_FILTER_OPERATOR',
    );
  });

  it('limits OFFSET to 2000', () => {
    expect(org.query('SELECT Id FROM Lead LIMIT 1 OFFSET 2000').records).toEqual([]);
    expect(errorOf(() => org.query('SELECT Id FROM Lead OFFSET 2001')).errorCode).toBe(
      'NUMBER_OUTSIDE_VALID_RANGE',
    );
  });
});

describe('evaluation', () => {
  const org = seeded();

  it('shapes records like the REST API, with canonical names and nested parents', () => {
    const r = org.query(
      "select id, FIRSTNAME, createddate, owner.EMAIL, Owner.Name from LEAD where lastname = 'LOVELACE'",
      { apiVersion: '60.0' },
    );
    expect(r.totalSize).toBe(1);
    const rec = r.records[0]!;
    expect(Object.keys(rec)).toEqual(['attributes', 'Id', 'FirstName', 'CreatedDate', 'Owner']);
    expect(rec.attributes).toEqual({
      type: 'Lead',
      url: `/services/data/v60.0/sobjects/Lead/${rec.Id as string}`,
    });
    expect(rec.CreatedDate).toBe('2026-03-15T08:00:00.000+0000');
    expect(rec.Owner).toEqual({
      attributes: { type: 'User', url: `/services/data/v60.0/sobjects/User/${org.defaultUserId}` },
      Email: 'integration@example.com',
      Name: 'Integration User',
    });
  });

  it('gives a null parent for an empty lookup', () => {
    const acct = org.insert('Account', { Name: 'Acme' });
    org.insert('Contact', { LastName: 'NoAccount' });
    org.insert('Contact', { LastName: 'WithAccount', AccountId: acct.Id });
    const rows = org.query('SELECT LastName, Account.Name FROM Contact ORDER BY LastName').records;
    expect(rows.map((r) => r.Account)).toEqual([null, expect.objectContaining({ Name: 'Acme' })]);
    expect(
      org.query("SELECT LastName FROM Contact WHERE Account.Name = 'acme'").records.map((r) => r.LastName),
    ).toEqual(['WithAccount']);
    expect(
      org.query('SELECT LastName FROM Contact WHERE Account.Name = null').records.map((r) => r.LastName),
    ).toEqual(['NoAccount']);
  });

  it('compares strings case-insensitively and treats null as Salesforce does', () => {
    expect(names(org, "WHERE LeadSource = 'WEB'")).toEqual(['Lovelace', 'Turing']);
    expect(names(org, "WHERE LeadSource != 'web'")).toEqual(["O'Brien", 'Dijkstra', 'Hopper'].sort());
    expect(names(org, 'WHERE LeadSource = null')).toEqual(["O'Brien"]);
    expect(names(org, 'WHERE LeadSource != null')).toHaveLength(4);
    expect(names(org, "WHERE LeadSource IN ('web', 'OTHER')")).toEqual(['Dijkstra', 'Lovelace', 'Turing']);
    expect(names(org, "WHERE LeadSource NOT IN ('web', 'Other')")).toEqual(['Hopper', "O'Brien"]);
    expect(names(org, 'WHERE NumberOfEmployees < 100')).toEqual(['Lovelace', 'Turing']);
    expect(names(org, 'WHERE NumberOfEmployees >= 50 AND NumberOfEmployees <= 500')).toEqual([
      'Hopper',
      'Turing',
    ]);
    expect(names(org, "WHERE LastName > 'l'")).toEqual(["O'Brien", 'Turing', 'Lovelace'].sort());
    expect(names(org, "WHERE LastName = 'o\\'brien'")).toEqual(["O'Brien"]);
    expect(names(org, "WHERE Title = 'line1\\nline2'")).toEqual(["O'Brien"]);
    expect(names(org, 'WHERE IsConverted = false')).toHaveLength(5);
  });

  it('evaluates LIKE with wildcards and escapes', () => {
    expect(names(org, "WHERE LastName LIKE 'l%'")).toEqual(['Lovelace']);
    expect(names(org, "WHERE LastName LIKE '_opper'")).toEqual(['Hopper']);
    expect(names(org, "WHERE Company LIKE '100\\%\\_%'")).toEqual(["O'Brien"]);
    expect(names(org, "WHERE Company LIKE '100\\%\\_x'")).toEqual([]);
    expect(names(org, "WHERE Company LIKE 'n.vy'")).toEqual([]);
    expect(names(org, "WHERE FirstName LIKE '%'")).toHaveLength(4);
    expect(names(org, "WHERE LastName LIKE '%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%x'")).toEqual([]);
    expect(names(org, "WHERE LastName LIKE 'Turin_%'")).toEqual(['Turing']);
    expect(names(org, "WHERE LastName LIKE 'Turing_%'")).toEqual([]);
  });

  it('combines AND, OR, NOT and parentheses', () => {
    expect(
      names(org, "WHERE LeadSource = 'Web' OR NumberOfEmployees > 100 OR LastName = 'Dijkstra'"),
    ).toEqual(['Dijkstra', 'Hopper', 'Lovelace', 'Turing']);
    expect(
      names(org, "WHERE (LeadSource = 'Web' OR LeadSource = 'Other') AND NumberOfEmployees != null"),
    ).toEqual(['Lovelace', 'Turing']);
    expect(names(org, "WHERE NOT (LeadSource = 'Web' OR LeadSource = null)")).toEqual(['Dijkstra', 'Hopper']);
    expect(names(org, "WHERE NOT LastName LIKE '%e%'")).toEqual(['Dijkstra', 'Turing']);
  });

  it('compares datetimes with literals in any offset and date literals as day ranges (UTC)', () => {
    expect(names(org, 'WHERE CreatedDate >= 2026-03-15T00:00:00Z')).toEqual(['Lovelace']);
    expect(names(org, 'WHERE CreatedDate = 2026-02-10T08:00:00.000Z')).toEqual(['Turing']);
    expect(names(org, 'WHERE CreatedDate = 2026-02-10T09:00:00+01:00')).toEqual(['Turing']);
    expect(names(org, 'WHERE CreatedDate = TODAY')).toEqual(['Lovelace']);
    expect(names(org, 'WHERE CreatedDate = YESTERDAY')).toEqual(['Hopper']);
    expect(names(org, 'WHERE CreatedDate < TODAY')).toHaveLength(4);
    expect(names(org, 'WHERE CreatedDate <= YESTERDAY')).toHaveLength(4);
    expect(names(org, 'WHERE CreatedDate > YESTERDAY')).toEqual(['Lovelace']);
    expect(names(org, 'WHERE CreatedDate != TODAY')).toHaveLength(4);
    expect(names(org, 'WHERE CreatedDate = TOMORROW')).toEqual([]);
    // NOW is Sunday 2026-03-15: THIS_WEEK starts today, LAST_WEEK is Mar 8..14
    expect(names(org, 'WHERE CreatedDate = THIS_WEEK')).toEqual(['Lovelace']);
    expect(names(org, 'WHERE CreatedDate = LAST_WEEK')).toEqual(['Dijkstra', 'Hopper']);
    expect(names(org, 'WHERE CreatedDate = THIS_MONTH')).toEqual([
      'Dijkstra',
      'Hopper',
      'Lovelace',
      "O'Brien",
    ]);
    expect(names(org, 'WHERE CreatedDate = LAST_MONTH')).toEqual(['Turing']);
    expect(names(org, 'WHERE CreatedDate = NEXT_MONTH')).toEqual([]);
    expect(names(org, 'WHERE CreatedDate = LAST_N_DAYS:1')).toEqual(['Hopper', 'Lovelace']);
    expect(names(org, 'WHERE CreatedDate = LAST_N_DAYS:14')).toEqual([
      'Dijkstra',
      'Hopper',
      'Lovelace',
      "O'Brien",
    ]);
    expect(names(org, 'WHERE CreatedDate = N_DAYS_AGO:7')).toEqual(['Dijkstra']);
    expect(names(org, 'WHERE CreatedDate = NEXT_N_DAYS:3')).toEqual([]);
    expect(names(org, 'WHERE CreatedDate >= LAST_N_DAYS:7')).toEqual(['Dijkstra', 'Hopper', 'Lovelace']);
  });

  it('computes date literal ranges per the reference', () => {
    const r = (name: string, n?: number): [string, string] => {
      const x = dateLiteralRange(name, n, new Date('2026-03-18T23:59:59Z')); // a Wednesday
      return [dayToDate(x.startDay), dayToDate(x.endDay)];
    };
    expect(r('TODAY')).toEqual(['2026-03-18', '2026-03-19']);
    expect(r('THIS_WEEK')).toEqual(['2026-03-15', '2026-03-22']);
    expect(r('NEXT_WEEK')).toEqual(['2026-03-22', '2026-03-29']);
    expect(r('LAST_MONTH')).toEqual(['2026-02-01', '2026-03-01']);
    expect(r('LAST_N_DAYS', 3)).toEqual(['2026-03-15', '2026-03-19']);
    expect(r('NEXT_N_DAYS', 3)).toEqual(['2026-03-19', '2026-03-22']);
    expect(r('N_DAYS_AGO', 3)).toEqual(['2026-03-15', '2026-03-16']);
  });

  it('filters date fields with date values and literals', () => {
    const o = new Org({ now: () => NOW });
    o.insert('Opportunity', { Name: 'a', StageName: 'Prospecting', CloseDate: '2026-03-15' });
    o.insert('Opportunity', { Name: 'b', StageName: 'Prospecting', CloseDate: '2026-04-02' });
    const opp = (w: string): unknown[] =>
      o.query(`SELECT Name FROM Opportunity WHERE ${w} ORDER BY Name`).records.map((r) => r.Name);
    expect(opp('CloseDate = TODAY')).toEqual(['a']);
    expect(opp('CloseDate = NEXT_MONTH')).toEqual(['b']);
    expect(opp('CloseDate > 2026-03-15')).toEqual(['b']);
    expect(errorOf(() => opp('CloseDate > 2026-03-15T00:00:00Z')).errorCode).toBe('INVALID_FIELD');
  });

  it('orders by several keys with null placement, then applies OFFSET and LIMIT', () => {
    const order = (o: string): unknown[] =>
      org.query(`SELECT FirstName FROM Lead ${o}`).records.map((r) => r.FirstName);
    expect(order('ORDER BY FirstName')).toEqual([null, 'Ada', 'alan', 'Edsger', 'Grace']);
    expect(order('ORDER BY FirstName DESC')).toEqual(['Grace', 'Edsger', 'alan', 'Ada', null]);
    expect(order('ORDER BY FirstName ASC NULLS LAST')).toEqual(['Ada', 'alan', 'Edsger', 'Grace', null]);
    expect(order('ORDER BY FirstName DESC NULLS FIRST')).toEqual([null, 'Grace', 'Edsger', 'alan', 'Ada']);
    expect(order('ORDER BY FirstName LIMIT 2')).toEqual([null, 'Ada']);
    expect(order('ORDER BY FirstName LIMIT 2 OFFSET 2')).toEqual(['alan', 'Edsger']);
    expect(order('ORDER BY FirstName OFFSET 4')).toEqual(['Grace']);
    // 'web' twice (Turing created before Lovelace), then Phone Inquiry, Other, and null last
    expect(order('ORDER BY LeadSource DESC, CreatedDate')).toEqual(['alan', 'Ada', 'Grace', 'Edsger', null]);
    expect(org.query('SELECT COUNT() FROM Lead WHERE NumberOfEmployees != null')).toEqual({
      totalSize: 3,
      records: [],
    });
  });

  it('shuffles unordered results only when asked, and never loses rows', () => {
    const o = new Org({ now: () => NOW, shuffleUnordered: true });
    o.insertMany(
      'Lead',
      Array.from({ length: 50 }, (_, i) => ({ LastName: `L${String(i).padStart(2, '0')}`, Company: 'c' })),
    );
    const seen = new Set<string>();
    for (let i = 0; i < 5; i++)
      seen.add(
        o
          .query('SELECT LastName FROM Lead')
          .records.map((r) => r.LastName)
          .join(),
      );
    expect(seen.size).toBeGreaterThan(1);
    const sorted = o
      .query('SELECT LastName FROM Lead ORDER BY LastName')
      .records.map((r) => r.LastName as string);
    expect(sorted).toEqual([...sorted].sort());
    expect(new Set(o.query('SELECT LastName FROM Lead').records.map((r) => r.LastName)).size).toBe(50);
  });

  it('hides deleted records unless includeDeleted', () => {
    const o = seeded();
    const [first] = o.all('Lead');
    o.delete('Lead', first!.Id);
    expect(o.query('SELECT COUNT() FROM Lead').totalSize).toBe(4);
    expect(o.query('SELECT COUNT() FROM Lead', { includeDeleted: true }).totalSize).toBe(5);
    expect(
      o.query('SELECT Id FROM Lead WHERE IsDeleted = true', { includeDeleted: true }).records,
    ).toHaveLength(1);
  });

  it('matches Ids given in 15 or 18 characters', () => {
    const [first] = org.all('Lead');
    const id = first!.Id;
    expect(org.query(`SELECT Id FROM Lead WHERE Id = '${id.slice(0, 15)}'`).records.map((r) => r.Id)).toEqual(
      [id],
    );
    expect(org.query(`SELECT Id FROM Lead WHERE Id IN ('${id}')`).records.map((r) => r.Id)).toEqual([id]);
    expect(org.query(`SELECT Id FROM Lead WHERE OwnerId = '${org.defaultUserId}'`).totalSize).toBe(5);
  });
});

describe('compile()', () => {
  it('matches single records by the WHERE clause and projects them', () => {
    const org = seeded();
    const c = org.compile(
      "SELECT Id, LastName, Owner.Email FROM Lead WHERE LeadSource = 'Web' AND CreatedDate = TODAY",
    );
    expect(c.object).toBe('Lead');
    expect(c.fields).toEqual(['Id', 'LastName', 'Owner.Email']);
    const [ada, grace] = org.all('Lead');
    expect(c.matches(ada!)).toBe(true);
    expect(c.matches(grace!)).toBe(false);
    expect(c.project(ada!)).toMatchObject({
      LastName: 'Lovelace',
      Owner: { Email: 'integration@example.com' },
    });
    const acct = org.insert('Account', { Name: 'x' });
    expect(org.compile('SELECT Id FROM Lead').matches(acct)).toBe(false);
    expect(() => org.compile('SELECT Id FROM Lead WHERE')).toThrow(SalesforceError);
  });
});

describe('performance smoke', () => {
  it('inserts 100k leads and runs the poll query over them quickly', () => {
    const org = new Org({ now: () => NOW });
    const sources = ['Web', 'Phone Inquiry', 'Other'];
    const rows = Array.from({ length: 100_000 }, (_, i) => ({
      FirstName: `F${i}`,
      LastName: `L${i}`,
      Company: 'Co',
      Email: `l${i}@example.com`,
      LeadSource: sources[i % 3],
    }));
    let t = performance.now();
    org.insertMany('Lead', rows);
    const insertMs = performance.now() - t;
    const soql =
      "SELECT Id, CreatedDate, SystemModstamp, FirstName, Owner.Email FROM Lead WHERE CreatedDate >= 2026-01-01T00:00:00Z AND LeadSource = 'Web' ORDER BY CreatedDate, Id";
    t = performance.now();
    const res = org.query(soql);
    const queryMs = performance.now() - t;
    expect(res.totalSize).toBe(33_334);
    const ids = res.records.map((r) => r.Id as string);
    expect(ids).toEqual([...ids].sort());
    // generous bounds (measured ~250 ms and ~100 ms on 2 cores); catches accidental O(n^2)
    expect(insertMs).toBeLessThan(3000);
    expect(queryMs).toBeLessThan(1500);
  });
});
