// A plausible record for `send-test` and `dry-run` previews: every selected field filled with a
// value that reads like real data, so a template author sees a realistic email.
import type { RuleConfig } from '../config/index.ts';
import type { SourceRecord } from '../types.ts';
import { makeId } from '../sources/salesforce/ids.ts';

/** Key prefixes of common standard objects (the first 3 chars of their Ids). */
const KEY_PREFIX: Record<string, string> = {
  Account: '001',
  Contact: '003',
  User: '005',
  Opportunity: '006',
  Lead: '00Q',
  Task: '00T',
  Event: '00U',
  Case: '500',
  Campaign: '701',
  Group: '00G',
};

/** Relationship names that point at a known object (Owner -> User, Account -> Account, ...). */
const RELATIONSHIP_OBJECT: Record<string, string> = {
  Owner: 'User',
  CreatedBy: 'User',
  LastModifiedBy: 'User',
  Account: 'Account',
  Contact: 'Contact',
  Parent: 'Account',
  Campaign: 'Campaign',
  ConvertedAccount: 'Account',
  ConvertedContact: 'Contact',
  ConvertedOpportunity: 'Opportunity',
};

function prefixFor(object: string): string {
  // custom objects (Foo__c) have org-specific prefixes; a00 is typical of the first one
  return KEY_PREFIX[object] ?? 'a00';
}

/** Salesforce REST datetime format: 2024-05-01T12:34:56.000+0000 */
function sfDateTime(d: Date): string {
  return d.toISOString().replace('Z', '+0000');
}

const PLAIN: Record<string, unknown> = {
  FirstName: 'Ada',
  LastName: 'Lovelace',
  Name: 'Ada Lovelace',
  Salutation: 'Ms.',
  Title: 'Head of Computation',
  Email: 'ada.lovelace@example.com',
  Company: 'Analytical Engines Ltd',
  Phone: '+44 20 7946 0018',
  MobilePhone: '+44 7700 900018',
  Fax: '+44 20 7946 0019',
  Website: 'https://www.example.com',
  LeadSource: 'Web',
  Status: 'Open - Not Contacted',
  Rating: 'Hot',
  Industry: 'Technology',
  Street: '12 St James Square',
  City: 'London',
  State: 'Greater London',
  PostalCode: 'SW1Y 4JH',
  Country: 'United Kingdom',
  Description: 'Interested in a demonstration of the Difference Engine.',
  AnnualRevenue: 2500000,
  NumberOfEmployees: 42,
  Amount: 125000,
  Probability: 20,
  StageName: 'Prospecting',
  Type: 'New Customer',
  Subject: 'Question about the Analytical Engine',
  Priority: 'High',
  Origin: 'Web',
  CaseNumber: '00001042',
  Username: 'ada.lovelace@example.com',
  Alias: 'alove',
};

function valueFor(field: string, owner: string, now: Date, counter: { n: number }): unknown {
  if (field === 'Email' && owner !== '') return `${owner.toLowerCase()}@example.com`;
  if (field === 'Name' && owner !== '') return owner === 'Owner' ? 'Grace Hopper' : `Sample ${owner}`;
  if (field in PLAIN) return PLAIN[field];
  if (/Email$/.test(field)) return 'ada.lovelace@example.com';
  if (/(Date|Stamp)$/.test(field)) {
    // Date fields are calendar dates (YYYY-MM-DD); DateTime fields (CreatedDate, ...) end in
    // Date too, so only the well-known Date fields get the short form.
    if (/^(CloseDate|Birthdate|ActivityDate|LastActivityDate)$/.test(field))
      return now.toISOString().slice(0, 10);
    return sfDateTime(now);
  }
  if (/^(Is|Has|Do)[A-Z]/.test(field)) return false;
  if (field === 'Id') return makeId(prefixFor(RELATIONSHIP_OBJECT[owner] ?? owner), 1);
  if (/Id$/.test(field)) {
    const rel = field.slice(0, -2);
    return makeId(prefixFor(RELATIONSHIP_OBJECT[rel] ?? rel), 100 + counter.n++);
  }
  if (/(Count|Number|Amount|Revenue|Quantity)$/.test(field)) return 1;
  return `Sample ${field}`;
}

/**
 * A sample record for the rule's object: Id (18 chars, the object's key prefix), CreatedDate and
 * SystemModstamp `now`, every `select` field filled by name (FirstName 'Ada', Email
 * 'ada.lovelace@example.com', Company 'Analytical Engines Ltd', Owner.Email 'owner@example.com',
 * date fields now, ...). Relationship fields are nested as the REST API returns them.
 */
export function sampleRecord(rule: RuleConfig, now: Date = new Date()): SourceRecord {
  const object = rule.object ?? 'Lead';
  const id = makeId(prefixFor(object), 1);
  const created = sfDateTime(now);
  const fields: Record<string, unknown> = { Id: id, CreatedDate: created, SystemModstamp: created };
  const counter = { n: 0 };
  for (const path of rule.select ?? []) {
    const [first, second] = path.split('.');
    if (first === undefined) continue;
    if (second === undefined) {
      if (!(first in fields)) fields[first] = valueFor(first, '', now, counter);
      continue;
    }
    const existing = fields[first];
    const nested: Record<string, unknown> =
      existing !== null && typeof existing === 'object' ? (existing as Record<string, unknown>) : {};
    nested[second] = valueFor(second, first, now, counter);
    fields[first] = nested;
  }
  return { object, id, createdDate: created, systemModstamp: created, fields };
}
