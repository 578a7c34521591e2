// Queries of an `on: updated` rule. A change is judged against the record's state before it, so
// the poller must see every changed record, matching `where` or not: two keyset-paged queries,
// the "matches" side (`AND (where)`) and the "does not match" side (`AND NOT (where)`), both in
// (SystemModstamp, Id) order, merged by the poller. Salesforce evaluates `where`; we never do.
import type { RuleConfig } from '../../config/index.ts';
import { selectList, soqlDateTime } from './soql.ts';

export type UpdateSide = 'matches' | 'other';

type UpdateRule = Pick<RuleConfig, 'select' | 'object' | 'where' | 'changed'>;

/** A position in (SystemModstamp, Id) order: the last record read. */
export interface KeysetPosition {
  systemModstamp: string;
  id: string;
}

export function hasWhere(rule: Pick<RuleConfig, 'where'>): boolean {
  return !!rule.where && rule.where.trim() !== '';
}

/** What an updated rule reads: its select, plus the fields it watches for changes. */
export function updateSelectList(rule: UpdateRule): string[] {
  return selectList({ select: [...rule.select, ...(rule.changed ?? [])] });
}

function sideCondition(rule: UpdateRule, side: UpdateSide): string | null {
  if (!hasWhere(rule)) return null; // without `where` every record matches: one side only
  const where = rule.where!.trim();
  return side === 'matches' ? `(${where})` : `(NOT (${where}))`;
}

/**
 * One keyset page: records changed at or after `from`, after `after` in (SystemModstamp, Id)
 * order, on one side of `where`. Keyset paging (not nextRecordsUrl): every page is a fresh
 * query, so no query locator can expire between pages.
 */
export function buildUpdatePageQuery(
  rule: UpdateRule,
  side: UpdateSide,
  from: Date,
  after: KeysetPosition | null,
  limit: number,
): string {
  const conditions = [`SystemModstamp >= ${soqlDateTime(from)}`];
  if (after) {
    const w = soqlDateTime(new Date(after.systemModstamp));
    conditions.push(`(SystemModstamp > ${w} OR (SystemModstamp = ${w} AND Id > '${after.id}'))`);
  }
  const sc = sideCondition(rule, side);
  if (sc) conditions.push(sc);
  return (
    `SELECT ${updateSelectList(rule).join(', ')} FROM ${rule.object}` +
    ` WHERE ${conditions.join(' AND ')} ORDER BY SystemModstamp ASC, Id ASC LIMIT ${limit}`
  );
}

/** Stream mode: the records an event named, on one side of `where`. Ids are validated by the caller. */
export function buildUpdateEnrichmentQuery(rule: UpdateRule, side: UpdateSide, ids: string[]): string {
  const conditions = [`Id IN (${ids.map((id) => `'${id}'`).join(', ')})`];
  const sc = sideCondition(rule, side);
  if (sc) conditions.push(sc);
  return `SELECT ${updateSelectList(rule).join(', ')} FROM ${rule.object} WHERE ${conditions.join(' AND ')}`;
}

/** The sides an updated rule queries: both with `where`, one without. */
export function updateSides(rule: Pick<RuleConfig, 'where'>): UpdateSide[] {
  return hasWhere(rule) ? ['matches', 'other'] : ['matches'];
}
