import { describe, expect, it } from 'vitest';
import { ruleSchema } from '../../src/config/schema.ts';
import {
  compileAllowList,
  InvalidAddressError,
  isValidAddress,
  parseAddressList,
  parseMailboxes,
  staticRecipientProblems,
} from '../../src/templates/recipients.ts';

describe('parseAddressList', () => {
  it('splits on ";" and "," like the Logic Apps SMTP connector', () => {
    expect(parseAddressList('a@example.com;b@example.com, c@example.com ;  d@example.com')).toEqual([
      'a@example.com',
      'b@example.com',
      'c@example.com',
      'd@example.com',
    ]);
  });

  it('keeps display names, quoting them, and does not split inside quotes', () => {
    expect(parseAddressList('Lead desk <leads@example.com>; "Doe, Jane" <jane@example.com>')).toEqual([
      '"Lead desk" <leads@example.com>',
      '"Doe, Jane" <jane@example.com>',
    ]);
    expect(parseMailboxes('"x;y" <a@example.com>')).toEqual([{ name: 'x;y', address: 'a@example.com' }]);
  });

  it('ignores blank entries and blank input', () => {
    expect(parseAddressList('')).toEqual([]);
    expect(parseAddressList('  ;, ;')).toEqual([]);
    expect(parseAddressList(';a@example.com;;')).toEqual(['a@example.com']);
  });

  it('refuses line breaks instead of letting addressparser pick the injected address', () => {
    // nodemailer's addressparser alone turns this into [evil@x.com]
    expect(() => parseAddressList('a@example.com\r\nBcc: evil@x.com')).toThrow(InvalidAddressError);
    expect(() => parseAddressList('a@example.com\u0000')).toThrow(/control character/);
    expect(() => parseAddressList('a@example.com\u2028b@example.com')).toThrow(InvalidAddressError);
  });

  it('refuses group syntax, bare words, and text around an address', () => {
    expect(() => parseAddressList('team: a@example.com, b@example.com;')).toThrow(/group syntax/);
    expect(() => parseAddressList('not-an-address')).toThrow(/not an email address/);
    expect(() => parseAddressList('a b@example.com')).toThrow(/not a display name/);
    expect(() => parseAddressList('<<a@example.com>>')).toThrow(/angle brackets/);
  });

  it('refuses invalid addr-specs', () => {
    for (const bad of ['a@b', 'a@@b.com', 'a@b..com', '.a@b.com', 'a@-b.com', 'a@b.123', 'a@[127.0.0.1]']) {
      expect(() => parseAddressList(bad), bad).toThrow(InvalidAddressError);
    }
  });
});

describe('isValidAddress', () => {
  it('accepts ordinary, plus-tagged, subdomain, IDN and localhost addresses', () => {
    for (const ok of [
      'a@example.com',
      "o'brien+leads@mail.example.co.uk",
      'user@localhost',
      'jörg@bücher.example',
      'x@xn--bcher-kva.example',
    ]) {
      expect(isValidAddress(ok), ok).toBe(true);
    }
  });

  it('refuses spaces, angle brackets, quotes, two @, overlong parts', () => {
    for (const bad of [
      'a b@example.com',
      '<a@example.com>',
      '"a"@example.com',
      'a@b@example.com',
      `${'x'.repeat(65)}@example.com`,
      `a@${'x'.repeat(250)}.com`,
      'a@example.com\n',
      '',
    ]) {
      expect(isValidAddress(bad), bad).toBe(false);
    }
  });
});

describe('compileAllowList', () => {
  it('allows everything without patterns and nothing with an empty list', () => {
    expect(compileAllowList(undefined)('anyone@anywhere.org')).toBe(true);
    expect(compileAllowList([])('a@example.com')).toBe(false);
  });

  it('matches exact addresses case-insensitively', () => {
    const allowed = compileAllowList(['Sales@Example.com']);
    expect(allowed('sales@example.com')).toBe(true);
    expect(allowed('SALES@EXAMPLE.COM')).toBe(true);
    expect(allowed('other@example.com')).toBe(false);
  });

  it('*@domain matches the domain only; *@*.domain matches subdomains only', () => {
    const domain = compileAllowList(['*@example.com']);
    expect(domain('anyone@EXAMPLE.com')).toBe(true);
    expect(domain('a@eu.example.com')).toBe(false);
    expect(domain('a@notexample.com')).toBe(false);
    expect(domain('a@example.com.attacker.net')).toBe(false);

    const subs = compileAllowList(['*@*.example.com']);
    expect(subs('a@eu.example.com')).toBe(true);
    expect(subs('a@x.eu.example.com')).toBe(true);
    expect(subs('a@example.com')).toBe(false);
    expect(subs('a@badexample.com')).toBe(false);
  });

  it('rejects pattern shapes it does not define, naming the index', () => {
    expect(() => compileAllowList(['*@example.com', '*.example.com'])).toThrow(/allowRecipients\[1\]/);
    expect(() => compileAllowList(['a*@example.com'])).toThrow(/allowRecipients\[0\]/);
    expect(() => compileAllowList(['@example.com'])).toThrow(/allowRecipients\[0\]/);
    expect(() => compileAllowList(['*@'])).toThrow(/bad domain/);
  });
});

describe('staticRecipientProblems', () => {
  const rule = (email: Record<string, string>, allowRecipients?: string[]) =>
    ruleSchema.parse({
      name: 'r',
      email: { from: 'a@example.com', subject: 's', text: 't', ...email },
      ...(allowRecipients ? { allowRecipients } : {}),
    });

  it('reports literal addresses the allow-list rejects, skipping templated entries', () => {
    const r = rule(
      {
        to: '{{Owner.Email}};sales@example.com;boss@elsewhere.org',
        cc: '"Ops, EU" <ops@eu.example.com>, {{default Email "x@other.org"}}',
        bcc: 'audit@elsewhere.org; boss@elsewhere.org',
      },
      ['*@example.com'],
    );
    expect(staticRecipientProblems(r)).toEqual([
      'boss@elsewhere.org',
      'ops@eu.example.com',
      'audit@elsewhere.org',
    ]);
  });

  it('returns nothing without allowRecipients, or when all literals pass', () => {
    expect(staticRecipientProblems(rule({ to: 'x@anywhere.org' }))).toEqual([]);
    expect(staticRecipientProblems(rule({ to: 'a@example.com;{{Email}}' }, ['*@example.com']))).toEqual([]);
  });

  it('reports a literal entry that cannot parse as its raw text', () => {
    expect(staticRecipientProblems(rule({ to: 'not an address;a@example.com' }, ['*@example.com']))).toEqual([
      'not an address',
    ]);
  });
});
