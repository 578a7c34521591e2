// What a rule is and when it fires. A rule is its config (config/schema.ts ruleSchema); its
// `where` is pushed into SOQL by the source, so a record read for the rule already matches it.
// What is decided here: which rules run, which resend uncertain rows, and whether a record read
// for a rule is one it notifies (the trigger). Today's trigger is "created": a record fires
// once, if it was created at or after the rule's floor (startFrom, fixed at the first start).
import type { Config, RuleConfig } from '../config/index.ts';
import type { SourceRecord } from '../types.ts';

export type { RuleConfig };

/** the rules the daemon runs, in config order */
export function enabledRules(config: Pick<Config, 'rules'>): RuleConfig[] {
  return config.rules.filter((r) => r.enabled);
}

/** rules whose rows found mid-send after a crash are sent again rather than reported unknown */
export function resendRuleNames(config: Pick<Config, 'rules' | 'delivery'>): string[] {
  return config.rules
    .filter((r) => (r.onUncertain ?? config.delivery.onUncertain) === 'resend')
    .map((r) => r.name);
}

/** on: created. The ledger (one row per rule and record) makes "once" hold across re-reads. */
export function firesOnCreate(record: SourceRecord, floor: string): boolean {
  return Date.parse(record.createdDate) >= Date.parse(floor);
}
