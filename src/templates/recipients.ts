// Recipient lists and the rule-level allow-list guard. Record data is untrusted (web-to-lead
// forms), so anything that ends up as a recipient is parsed by nodemailer's own addressparser
// (the same parser that later builds the envelope) and then checked strictly here.
import addressparser from 'nodemailer/lib/addressparser';
import type { RuleConfig } from '../config/index.ts';

/** One mailbox: the display name may be empty. */
export interface Mailbox {
  name: string;
  address: string;
}

/** A list entry that is not a plain mailbox we are willing to send to. */
export class InvalidAddressError extends Error {
  override name = 'InvalidAddressError';
  readonly code = 'EADDRESS';
  /** the offending entry (address, or the raw text when nothing parseable was found) */
  readonly address: string;
  constructor(address: string, why: string) {
    super(`invalid address ${JSON.stringify(truncateForMessage(address))}: ${why}`);
    this.address = address;
  }
}

function truncateForMessage(s: string): string {
  return s.length > 200 ? `${s.slice(0, 200)}…` : s;
}

// C0 controls, DEL, C1 controls and the Unicode line/paragraph separators: none may appear in
// an address field. addressparser silently treats "a@x.com\r\nBcc: evil@x.com" as evil@x.com,
// so such text is rejected before it is parsed, never repaired.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

// RFC 5322 section 3.2.3 atext, as a dot-atom local part (quoted local parts are refused: no
// legitimate lead address needs them, and they are where the "angle tricks" live).
// Non-ASCII letters are allowed for RFC 6531 (SMTPUTF8) addresses.
const LOCAL_PART =
  /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uffff-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uffff-]+)*$/;
// RFC 1035 / RFC 5321 section 4.1.2 Domain: dot-separated labels of letters, digits and
// hyphens, not starting or ending with a hyphen; IDN labels may carry non-ASCII letters
// (nodemailer converts them to punycode). Address literals ([1.2.3.4]) are refused.
const LABEL = /^(?!-)[A-Za-z0-9\u0080-\uffff-]{1,63}(?<!-)$/;

/**
 * Whether `address` is an RFC 5322 addr-spec we accept: exactly one '@', a dot-atom local part
 * (max 64 chars), a domain of at least two labels with a non-numeric top-level label, or
 * `localhost`; max 254 chars in all (RFC 5321 section 4.5.3.1).
 */
export function isValidAddress(address: string): boolean {
  if (typeof address !== 'string' || address.length > 254 || CONTROL.test(address)) return false;
  const at = address.lastIndexOf('@');
  if (at <= 0 || address.indexOf('@') !== at) return false;
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  if (local.length > 64 || !LOCAL_PART.test(local)) return false;
  if (domain.toLowerCase() === 'localhost') return true;
  const labels = domain.split('.');
  if (labels.length < 2 || !labels.every((l) => LABEL.test(l))) return false;
  return !/^\d+$/.test(labels[labels.length - 1] ?? '');
}

/**
 * Parses a recipient field into mailboxes. Entries are separated by ',' or ';' (as the Logic Apps
 * SMTP connector accepts); `Name <a@b>` keeps its name. Blank entries are ignored. Throws
 * InvalidAddressError for control characters, group syntax (`team: a@x, b@x;`), entries without
 * an address, text outside the angle brackets that is not a name (`a b@x.com`), angle brackets
 * in names, and addresses isValidAddress refuses.
 */
export function parseMailboxes(text: string): Mailbox[] {
  const raw = (text ?? '').trim();
  if (raw === '') return [];
  if (CONTROL.test(raw)) throw new InvalidAddressError(raw, 'contains a line break or control character');
  const out: Mailbox[] = [];
  for (const entry of addressparser(raw)) {
    if (entry.group !== undefined) {
      throw new InvalidAddressError(
        raw,
        `group syntax ("${entry.name}: ...;") is not allowed in a recipient field`,
      );
    }
    const address = entry.address.trim();
    const name = entry.name.trim();
    if (address === '') {
      if (name === '') continue;
      throw new InvalidAddressError(name, 'not an email address');
    }
    if (!isValidAddress(address)) throw new InvalidAddressError(address, 'not a valid addr-spec');
    if (name !== '') {
      if (/[<>]/.test(name))
        throw new InvalidAddressError(`${name} <${address}>`, 'angle brackets in the display name');
      // addressparser turns "a b@x.com" into name "a" + address "b@x.com"; a real display
      // name always comes with the address in angle brackets.
      if (!new RegExp(`<\\s*${escapeRegExp(address)}\\s*>`, 'i').test(raw)) {
        throw new InvalidAddressError(
          `${name} ${address}`,
          'text around the address that is not a display name',
        );
      }
    }
    out.push({ name, address });
  }
  return out;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** A mailbox as one header-ready string: `addr` or `"Name" <addr>` (RFC 5322 quoted-string). */
export function formatMailbox(m: Mailbox): string {
  if (m.name === '') return m.address;
  return `"${m.name.replace(/[\\"]/g, '\\$&')}" <${m.address}>`;
}

/**
 * Splits a ';' or ',' separated recipient field into entries, each `addr` or `"Name" <addr>`.
 * Throws InvalidAddressError (see parseMailboxes) rather than guessing.
 */
export function parseAddressList(text: string): string[] {
  return parseMailboxes(text).map(formatMailbox);
}

/**
 * Compiles allowRecipients patterns into a predicate over bare addresses (case-insensitive):
 * - `sales@example.com`  exactly that address;
 * - `*@example.com`      any address at example.com (NOT its subdomains);
 * - `*@*.example.com`    any address at any subdomain of example.com (NOT example.com itself:
 *                        list both patterns to allow both).
 * No patterns (undefined) allows everything; an empty list allows nothing. Any other pattern
 * shape (`*.example.com`, `a*@x.com`, `@x.com`) throws, so a typo cannot silently open or close
 * the guard.
 */
export function compileAllowList(patterns: string[] | undefined): (address: string) => boolean {
  if (patterns === undefined) return () => true;
  const exact = new Set<string>();
  const domains = new Set<string>();
  const parentDomains: string[] = [];
  patterns.forEach((p, i) => {
    const pattern = p.trim().toLowerCase();
    if (pattern.startsWith('*@*.')) {
      const domain = pattern.slice(4);
      if (domain.includes('*') || !isValidAddress(`x@${domain}`))
        throw new Error(`allowRecipients[${i}]: bad domain in pattern "${p}"`);
      parentDomains.push(`.${domain}`);
    } else if (pattern.startsWith('*@')) {
      const domain = pattern.slice(2);
      if (domain.includes('*') || !isValidAddress(`x@${domain}`))
        throw new Error(`allowRecipients[${i}]: bad domain in pattern "${p}"`);
      domains.add(domain);
    } else if (!pattern.includes('*') && isValidAddress(pattern)) {
      // '*' is legal atext, but in a pattern it is always a wildcard the author meant
      exact.add(pattern);
    } else {
      throw new Error(
        `allowRecipients[${i}]: "${p}" must be an address (sales@example.com), *@example.com or *@*.example.com`,
      );
    }
  });
  return (address: string) => {
    const a = String(address).trim().toLowerCase();
    if (exact.has(a)) return true;
    const at = a.lastIndexOf('@');
    if (at < 0) return false;
    const domain = a.slice(at + 1);
    return domains.has(domain) || parentDomains.some((suffix) => domain.endsWith(suffix));
  };
}

/**
 * Splits a recipient template into its list entries at ',' and ';' that are outside `{{ }}`
 * and outside double quotes.
 */
function splitTemplateEntries(template: string): string[] {
  const entries: string[] = [];
  let depth = 0;
  let quoted = false;
  let current = '';
  for (let i = 0; i < template.length; i++) {
    const c = template[i];
    if (template.startsWith('{{', i)) {
      depth++;
      current += '{{';
      i++;
      continue;
    }
    if (depth > 0 && template.startsWith('}}', i)) {
      depth--;
      current += '}}';
      i++;
      continue;
    }
    if (depth === 0 && c === '"') quoted = !quoted;
    if (depth === 0 && !quoted && (c === ',' || c === ';')) {
      entries.push(current);
      current = '';
      continue;
    }
    current += c;
  }
  entries.push(current);
  return entries;
}

/**
 * The literal (template-free) addresses in the rule's to/cc/bcc that its allowRecipients would
 * reject, for a config-time check (bare addresses, in field order, no duplicates). Entries that
 * contain any `{{...}}` are skipped (they depend on the record), as are file templates. A literal
 * entry that does not parse is returned as its raw text (it would fail every render). Empty when
 * the rule has no allowRecipients.
 */
export function staticRecipientProblems(rule: RuleConfig): string[] {
  if (rule.allowRecipients === undefined) return [];
  const allowed = compileAllowList(rule.allowRecipients);
  const problems: string[] = [];
  for (const key of ['to', 'cc', 'bcc'] as const) {
    const template = rule.email?.[key] ?? '';
    if (/\.hbs\s*$/.test(template) && !template.includes('{{')) continue;
    for (const entry of splitTemplateEntries(template)) {
      if (entry.includes('{{') || entry.trim() === '') continue;
      try {
        for (const m of parseMailboxes(entry)) {
          if (!allowed(m.address) && !problems.includes(m.address)) problems.push(m.address);
        }
      } catch {
        problems.push(entry.trim());
      }
    }
  }
  return problems;
}
