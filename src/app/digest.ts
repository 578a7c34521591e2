// Digest rules (rule key `digest`): matched records are collected, not emailed one by one; at each
// scheduled time one email lists what was collected since the previous digest. The record a digest
// template sees is stored when it is collected, so a digest renders what the source read.
import type { Logger } from 'pino';
import type { RuleConfig } from '../config/index.ts';
import { changeVersion } from '../rules/triggers.ts';
import type { DigestContent, DigestItemInput, NewOutboxRow, Store } from '../store/index.ts';
import { renderDigest, type CompiledRule } from '../templates/index.ts';
import type { SourceRecord } from '../types.ts';
import { codeOf, coerceError } from '../util/errors.ts';

/** The record as a digest lists it: its fields by API name, plus update context when there is one. */
export function digestItem(
  record: SourceRecord,
  key: string,
  update?: { previous: Record<string, unknown>; changedFields: string[] },
): DigestItemInput {
  const fields: Record<string, unknown> = {
    Id: record.id,
    CreatedDate: record.createdDate,
    SystemModstamp: record.systemModstamp,
  };
  for (const [k, v] of Object.entries(record.fields ?? {})) if (k !== 'attributes') fields[k] = v;
  if (update) Object.assign(fields, update);
  return { recordKey: key, object: record.object, record: fields };
}

/** The outbox key of the digest going out at `until`: one per rule and scheduled second. */
export function digestKey(until: Date): string {
  return `digest.${changeVersion(until.toISOString())}`;
}

/**
 * Renders the digest row from the open items, or null when there is nothing to send. A render
 * failure dead-letters the digest row with the reason; its items stay covered by it (listed in
 * no other digest), as one record's render failure dead-letters that record's row.
 */
export function buildDigestRow(
  o: { rule: RuleConfig; compiled: CompiledRule; logger: Logger },
  content: DigestContent,
  until: Date,
  floor: string,
  now: Date,
): NewOutboxRow | null {
  const digest = o.rule.digest!;
  if (content.count === 0 && !digest.sendEmpty) return null;
  const key = digestKey(until);
  const base = {
    rule: o.rule.name,
    object: o.rule.object,
    recordId: key,
    recordCreatedDate: until.toISOString(),
  };
  try {
    const message = renderDigest(
      o.compiled,
      {
        records: content.items.map((i) => i.record),
        count: content.count,
        since: content.since ?? floor,
        until: until.toISOString(),
      },
      { now, key },
    );
    return { ...base, message, state: 'pending' };
  } catch (err) {
    const e = coerceError(err);
    o.logger.warn({ err: e, count: content.count }, 'digest render failed; digest dead-lettered');
    return {
      ...base,
      message: null,
      state: 'dead',
      lastError: `render: ${e.message}`,
      lastErrorCode: codeOf(e) ?? 'ERENDER',
    };
  }
}

/** One digest of the rule now: ONE transaction covers the items and writes the row. */
export async function sendDigest(
  o: { rule: RuleConfig; compiled: CompiledRule; logger: Logger; store: Store },
  until: Date,
  now: Date,
): Promise<{ outboxId: number | null; count: number }> {
  const cp = await o.store.getCheckpoint(o.rule.name);
  const floor = cp?.floor ?? until.toISOString();
  return o.store.commitDigest(o.rule.name, {
    until: until.toISOString(),
    maxRecords: o.rule.digest!.maxRecords,
    build: (content) => buildDigestRow(o, content, until, floor, now),
  });
}
