// Building the poll query. Values that reach SOQL are our own (timestamps, field names validated by
// the config schema); the rule's `where` is the operator's, wrapped in parentheses.
import type { RuleConfig } from '../../config/index.ts';

/** Always read, whatever the rule selects. */
export const BASE_FIELDS = ['Id', 'CreatedDate', 'SystemModstamp'] as const;

/** SOQL dateTime literal (SOQL and SOSL Reference, "Date Formats and Date Literals"): whole seconds, UTC. */
export function soqlDateTime(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function selectList(rule: Pick<RuleConfig, 'select'>): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const f of [...BASE_FIELDS, ...rule.select]) {
    const key = f.toLowerCase();
    if (!seen.has(key)) {
      seen.add(key);
      out.push(f);
    }
  }
  return out;
}

/**
 * Everything the rule matches created at or after `from`, oldest first; with `after`, only what
 * comes after that key instead: `CreatedDate > :t OR (CreatedDate = :t AND Id > :id)`, so a regular
 * poll does not read the cursor's second again. The order is explicit: without ORDER BY Salesforce
 * promises no order, and the cursor relies on it. Id breaks ties, since CreatedDate has one-second
 * resolution and many records can share a second.
 */
export function buildPollQuery(
  rule: Pick<RuleConfig, 'select' | 'object' | 'where'>,
  from: Date,
  after?: { createdDate: Date; id: string },
  limit?: number,
): string {
  const conditions = after
    ? [
        `(CreatedDate > ${soqlDateTime(after.createdDate)} OR ` +
          `(CreatedDate = ${soqlDateTime(after.createdDate)} AND Id > '${after.id}'))`,
      ]
    : [`CreatedDate >= ${soqlDateTime(from)}`];
  if (rule.where && rule.where.trim()) conditions.push(`(${rule.where.trim()})`);
  return (
    `SELECT ${selectList(rule).join(', ')} FROM ${rule.object}` +
    ` WHERE ${conditions.join(' AND ')} ORDER BY CreatedDate ASC, Id ASC` +
    (limit === undefined ? '' : ` LIMIT ${limit}`)
  );
}

/** Stream mode: the records an event named, if the rule matches them. Ids are validated by the caller. */
export function buildEnrichmentQuery(
  rule: Pick<RuleConfig, 'select' | 'object' | 'where'>,
  ids: string[],
): string {
  const conditions = [`Id IN (${ids.map((id) => `'${id}'`).join(', ')})`];
  if (rule.where && rule.where.trim()) conditions.push(`(${rule.where.trim()})`);
  return `SELECT ${selectList(rule).join(', ')} FROM ${rule.object} WHERE ${conditions.join(' AND ')}`;
}
