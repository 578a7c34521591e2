// Cross-checks of a rule's trigger keys (on, changed, digest) that the schema cannot express.
import { validate } from 'node-cron';
import { isRecord } from './issues.ts';
import type { Issue, KeyPath } from './issues.ts';

export function triggerChecks(rule: Record<string, unknown>, i: number): Issue[] {
  const issues: Issue[] = [];
  const at = (...p: KeyPath): KeyPath => ['rules', i, ...p];
  const on = rule.on ?? 'created';
  if (rule.changed !== undefined && on !== 'updated') {
    issues.push({
      path: at('changed'),
      message: 'needs on: updated (a created rule fires once per new record, not on changes)',
    });
  }
  const hasWhere = typeof rule.where === 'string' && rule.where.trim() !== '';
  if (on === 'updated' && !hasWhere && rule.changed === undefined) {
    issues.push({
      path: at('on'),
      message:
        'on: updated needs `where` (fire when a change makes the record match it) or `changed` (fire when one of those fields changes)',
    });
  }
  if (Array.isArray(rule.changed)) {
    const seen = new Set<string>();
    rule.changed.forEach((field: unknown, j: number) => {
      if (typeof field !== 'string') return;
      const k = field.toLowerCase();
      if (seen.has(k)) issues.push({ path: at('changed', j), message: `repeats '${field}'` });
      seen.add(k);
      if (['systemmodstamp', 'lastmodifieddate', 'id', 'createddate'].includes(k)) {
        issues.push({
          path: at('changed', j),
          message: `'${field}' changes with every save (or never): watch the fields whose change matters`,
        });
      }
    });
  }
  if (
    isRecord(rule.digest) &&
    typeof rule.digest.schedule === 'string' &&
    !validate(rule.digest.schedule.trim())
  ) {
    issues.push({
      path: at('digest', 'schedule'),
      message: `invalid cron expression "${rule.digest.schedule}": node-cron takes 6 fields (second minute hour day-of-month month day-of-week) or 5`,
    });
  }
  return issues;
}
