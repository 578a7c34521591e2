// Realistic sample data for the demo: sales reps (Users) and Leads. A few Leads carry
// hostile-looking data, as web-to-lead forms do, to show what the worker does with it (HTML
// escaped in the HTML part, line breaks flattened in headers).

export interface SampleUser {
  username: string;
  email: string;
  firstName: string;
  lastName: string;
  title: string;
}

export const SAMPLE_USERS: SampleUser[] = [
  { firstName: 'Maria', lastName: 'Garcia', title: 'Account Executive, EMEA' },
  { firstName: 'James', lastName: 'Chen', title: 'Account Executive, North America' },
  { firstName: 'Priya', lastName: 'Patel', title: 'Sales Development Rep' },
].map((u) => {
  const email = `${u.firstName}.${u.lastName}@example.com`.toLowerCase();
  return { ...u, email, username: email };
});

const FIRST_NAMES = [
  'Olivia',
  'Liam',
  'Emma',
  'Noah',
  'Sofia',
  'Lucas',
  'Amelia',
  'Mateo',
  'Hannah',
  'Kenji',
  'Fatima',
  'Arjun',
  'Chloé',
  'Björn',
  'Zoë',
  'Siobhán',
  'Tomás',
  'Aisha',
  'Wei',
  'Ingrid',
];
const LAST_NAMES = [
  'Johnson',
  'Nguyen',
  'Müller',
  "O'Brien",
  'Kowalski',
  'Rossi',
  'Tanaka',
  'Okafor',
  'Dubois',
  'Andersson',
  'Silva',
  'Haddad',
  'Novak',
  'Fernández',
  'Kim',
  'MacLeod',
  'Van der Berg',
  'Costa',
];
const COMPANIES: Array<[name: string, domain: string, industry: string]> = [
  ['Northwind Traders', 'northwind.example', 'Retail'],
  ['Contoso Pharmaceuticals', 'contoso.example', 'Healthcare'],
  ['Fabrikam Energy', 'fabrikam.example', 'Energy'],
  ['Tailspin Toys', 'tailspin.example', 'Retail'],
  ['Globex Corporation', 'globex.example', 'Technology'],
  ['Initech', 'initech.example', 'Technology'],
  ['Umbrella Agritech', 'umbrella.example', 'Agriculture'],
  ['Wide World Importers', 'wideworld.example', 'Retail'],
  ['Litware Learning', 'litware.example', 'Education'],
  ['Adventure Works Media', 'adventure-works.example', 'Media'],
  ['Blue Yonder Bank', 'blueyonder.example', 'Banking'],
  ['Proseware, Inc.', 'proseware.example', 'Technology'],
];
const TITLES = [
  'Head of Operations',
  'CTO',
  'VP Marketing',
  'IT Manager',
  'Procurement Lead',
  'CFO',
  'Director of Sales',
  'Office Manager',
  'Founder & CEO',
  'Data Engineer',
];
// Picklist values as the emulated org (and a default Salesforce org) defines them.
const SOURCES = ['Web', 'Web', 'Web', 'Phone Inquiry', 'Partner Referral'];
const RATINGS = ['Hot', 'Warm', 'Warm', 'Cold', null];
const CITIES: Array<[city: string, country: string]> = [
  ['Lisbon', 'Portugal'],
  ['Austin', 'USA'],
  ['Lyon', 'France'],
  ['Osaka', 'Japan'],
  ['Leeds', 'UK'],
  ['Toronto', 'Canada'],
  ['Munich', 'Germany'],
  ['Melbourne', 'Australia'],
];
const DESCRIPTIONS = [
  'Asked for a demo next week.',
  'Downloaded the pricing sheet twice.',
  'Met us at the trade fair; interested in the enterprise plan.',
  'Wants a call back after 3 pm their time.',
  'Currently on a competitor, contract ends in Q3.',
];

/** What web forms really receive: markup, quotes, header-injection attempts, non-Latin text. */
const HOSTILE: Array<Record<string, string>> = [
  { Company: '<b>Bold</b> & Sons "Ltd"' },
  { Company: 'Evil Corp<script>alert(1)</script>', Description: '<img src=x onerror=alert(1)> please call' },
  { Company: 'Header Injection GmbH\r\nBcc: everyone@example.org', Title: 'CTO\r\nX-Evil: 1' },
  { FirstName: '"><svg onload=alert(1)>', Company: 'Quotes & Angles Pty' },
  { Company: '株式会社サンプル', FirstName: '太郎', LastName: '山田' },
];

export type Rng = () => number;

/** mulberry32: a small seeded PRNG, so tests can ask for the same Leads twice. */
export function seededRng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pick<T>(rng: Rng, list: readonly T[]): T {
  return list[Math.floor(rng() * list.length)]!;
}

function asciiSlug(s: string): string {
  return s
    .normalize('NFD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '');
}

export interface LeadGeneratorOptions {
  /** User Ids the Leads are assigned to (OwnerId), round robin */
  ownerIds: string[];
  rng?: Rng;
  /** one Lead in this many carries hostile-looking data (default 5; 0 = never) */
  hostileEvery?: number;
}

/** Returns a function that makes the next Lead's fields (Salesforce API names). */
export function leadFactory(opts: LeadGeneratorOptions): () => Record<string, unknown> {
  const rng = opts.rng ?? Math.random;
  const hostileEvery = opts.hostileEvery ?? 5;
  let n = 0;
  let hostileIndex = 0;
  return () => {
    n++;
    const first = pick(rng, FIRST_NAMES);
    const last = pick(rng, LAST_NAMES);
    const [company, domain, industry] = pick(rng, COMPANIES);
    const [city, country] = pick(rng, CITIES);
    const local = `${asciiSlug(first)}.${asciiSlug(last)}`;
    const lead: Record<string, unknown> = {
      FirstName: first,
      LastName: last,
      Company: company,
      Title: pick(rng, TITLES),
      Email: `${local}@${domain}`,
      Phone: `+1 555 01${String(Math.floor(rng() * 100)).padStart(2, '0')} ${String(Math.floor(rng() * 10000)).padStart(4, '0')}`,
      LeadSource: pick(rng, SOURCES),
      Industry: industry,
      City: city,
      Country: country,
      Status: 'Open - Not Contacted',
      Description: pick(rng, DESCRIPTIONS),
      NumberOfEmployees: 10 * (1 + Math.floor(rng() * 500)),
      OwnerId: opts.ownerIds[(n - 1) % opts.ownerIds.length],
    };
    const rating = pick(rng, RATINGS);
    if (rating) lead.Rating = rating;
    if (hostileEvery > 0 && n % hostileEvery === 0) {
      Object.assign(lead, HOSTILE[hostileIndex++ % HOSTILE.length]);
      // hostile leads come in through the web form
      lead.LeadSource = 'Web';
    }
    return lead;
  };
}

/** A one-line description of a Lead for the console. */
export function describeLead(lead: Record<string, unknown>): string {
  const oneLine = (v: unknown): string => String(v ?? '').replace(/[\r\n]+/g, ' ');
  const name = [lead.FirstName, lead.LastName].filter(Boolean).map(oneLine).join(' ');
  const extras = [lead.LeadSource, lead.Rating].filter(Boolean).map(oneLine).join(', ');
  return `${name} (${oneLine(lead.Company)})${extras ? ` [${extras}]` : ''}`;
}

/**
 * What happens to Leads after they come in: some are qualified (the "lead qualified" rule),
 * some are re-assigned to another rep or to a queue (a queue may have no email: that
 * notification dead-letters with the reason), most just get a field touched. Returns the
 * fields to update, or null for no change this time.
 */
export function leadChange(
  rng: Rng,
  opts: { ownerIds: string[]; queueIds: string[] },
): Record<string, unknown> | null {
  const p = rng();
  if (p < 0.3) return { Status: 'Qualified' };
  if (p < 0.45) return { OwnerId: pick(rng, opts.ownerIds) };
  if (p < 0.55 && opts.queueIds.length > 0) return { OwnerId: pick(rng, opts.queueIds) };
  if (p < 0.75) return { Rating: pick(rng, ['Hot', 'Warm', 'Cold']) };
  return null;
}
