// `dry-run`: what each rule would send for recent records. Reads Salesforce, renders, prints;
// opens no store and sends nothing.
import type { LoadedConfig } from '../config/index.ts';
import { enabledRules } from '../rules/index.ts';
import { connectSalesforce, createConnection } from '../sources/salesforce/connection.ts';
import { queryFirstPage } from '../sources/salesforce/query.ts';
import { toSourceRecord } from '../sources/salesforce/records.ts';
import { selectList, soqlDateTime } from '../sources/salesforce/soql.ts';
import { compileRule, renderDigest, renderMessage } from '../templates/index.ts';
import { renderNotifications } from '../templates/notifications.ts';
import { isHttpMessage } from '../types.ts';
import { digestItem, digestKey } from '../app/digest.ts';
import { DIGEST_LIST_BYTES } from '../store/common.ts';
import { updateSelectList } from '../sources/salesforce/update-soql.ts';
import { coerceError, EXIT } from '../util/errors.ts';
import { configOption, intOption, parseSince, str, type Command } from './options.ts';

export interface DryRunOptions {
  limit: number;
  since: Date;
  rule?: string;
  json: boolean;
  out: (line: string) => void;
}

export const dryRunCommand: Command = {
  name: 'dry-run',
  usage: 'lead-notifier dry-run [-c FILE] [--limit N] [--since DURATION|ISO] [--rule NAME] [--json]',
  options: {
    ...configOption,
    limit: { type: 'string' },
    since: { type: 'string' },
    rule: { type: 'string' },
    json: { type: 'boolean' },
  },
  async run(values, _positionals, ctx) {
    const config = await ctx.load(values);
    const limit = intOption(values, 'limit', 5, 1, 2000);
    const since = parseSince(str(values, 'since') ?? '24h');
    const rule = str(values, 'rule');
    return dryRun(config, {
      limit,
      since,
      json: Boolean(values.json),
      ...(rule ? { rule } : {}),
      out: ctx.out,
    });
  },
};

export async function dryRun(config: LoadedConfig, o: DryRunOptions): Promise<number> {
  const rules = o.rule ? config.rules.filter((r) => r.name === o.rule) : enabledRules(config);
  if (rules.length === 0) {
    o.out(o.rule ? `no rule named ${o.rule}` : 'no enabled rules');
    return EXIT.INVALID;
  }
  const conn = createConnection(config.salesforce, config.baseDir);
  await connectSalesforce(conn, config.salesforce, config.baseDir);
  const results: unknown[] = [];
  for (const rule of rules) {
    const compiled = compileRule(rule, config.baseDir);
    // an updated rule: records changed since then that match now (whether a change made them
    // match needs the stored state, which a dry run does not open)
    const stamp = rule.on === 'updated' ? 'SystemModstamp' : 'CreatedDate';
    const fields = rule.on === 'updated' ? updateSelectList(rule) : selectList(rule);
    const where = [`${stamp} >= ${soqlDateTime(o.since)}`, ...(rule.where ? [`(${rule.where})`] : [])];
    const soql =
      `SELECT ${fields.join(', ')} FROM ${rule.object} WHERE ${where.join(' AND ')}` +
      ` ORDER BY ${stamp} DESC, Id DESC LIMIT ${o.limit}`;
    const page = await queryFirstPage(conn, config.salesforce.apiVersion, soql);
    if (!o.json) o.out(`rule ${rule.name}: ${page.records.length} record(s) since ${o.since.toISOString()}`);
    if (rule.digest) {
      // the digest these records would make if it went out now (oldest first, as collected)
      const records = page.records.map((raw) => toSourceRecord(rule.object, raw)).reverse();
      const now = new Date();
      try {
        const message = renderDigest(
          compiled,
          {
            records: listedInDigest(
              records.slice(0, rule.digest.maxRecords).map((r) => digestItem(r, r.id).record),
            ),
            count: records.length,
            since: o.since.toISOString(),
            until: now.toISOString(),
          },
          { now, key: digestKey(now) },
        );
        if (o.json) results.push({ rule: rule.name, digest: true, count: records.length, message });
        else {
          o.out(`  digest of ${records.length} record(s), would go out at ${rule.digest.schedule}`);
          o.out(`    To: ${message.to.join(', ')}`);
          o.out(`    Subject: ${message.subject}`);
          o.out(`    Body: ${(message.text ?? message.html ?? '').replace(/\s+/g, ' ').slice(0, 160)}`);
        }
      } catch (e) {
        const err = coerceError(e);
        if (o.json) results.push({ rule: rule.name, digest: true, error: err.message });
        else o.out(`  digest would be dead-lettered: ${err.message}`);
      }
      continue;
    }
    for (const raw of page.records) {
      const record = toSourceRecord(rule.object, raw);
      // the other channels' requests, each rendered (or failing) on its own
      for (const n of renderNotifications(compiled, record).filter((x) => x.channel !== 'email')) {
        const entry =
          'message' in n
            ? { rule: rule.name, recordId: record.id, channel: n.channel, message: n.message }
            : {
                rule: rule.name,
                recordId: record.id,
                channel: n.channel,
                error: coerceError(n.error).message,
              };
        if (o.json) results.push(entry);
        else if ('message' in n && isHttpMessage(n.message))
          o.out(`  ${record.id} [${n.channel}] ${n.message.body.replace(/\s+/g, ' ').slice(0, 160)}`);
        else
          o.out(
            `  ${record.id} [${n.channel}]: would be dead-lettered: ${'error' in entry ? entry.error : ''}`,
          );
      }
      if (!compiled.templates) continue;
      try {
        const message = renderMessage(compiled, record);
        if (o.json) results.push({ rule: rule.name, recordId: record.id, message });
        else {
          o.out(`  ${record.id} (created ${record.createdDate})`);
          o.out(`    From: ${message.from}`);
          o.out(`    To: ${message.to.join(', ')}`);
          if (message.cc.length) o.out(`    Cc: ${message.cc.join(', ')}`);
          if (message.bcc.length) o.out(`    Bcc: ${message.bcc.join(', ')}`);
          o.out(`    Subject: ${message.subject}`);
          o.out(`    Message-ID: ${message.messageId}`);
          const body = (message.text ?? message.html ?? '').replace(/\s+/g, ' ').slice(0, 160);
          o.out(`    Body: ${body}`);
          if (message.attachments.length)
            o.out(`    Attachments: ${message.attachments.map((a) => a.filename).join(', ')}`);
        }
      } catch (e) {
        const err = coerceError(e);
        if (o.json) results.push({ rule: rule.name, recordId: record.id, error: err.message });
        else o.out(`  ${record.id}: would be dead-lettered: ${err.message}`);
      }
    }
  }
  if (o.json) o.out(JSON.stringify(results, null, 2));
  return EXIT.OK;
}

/** The records a digest lists, as the stores choose them: while those before weigh < DIGEST_LIST_BYTES. */
function listedInDigest(records: Record<string, unknown>[]): Record<string, unknown>[] {
  let before = 0;
  const out: Record<string, unknown>[] = [];
  for (const r of records) {
    if (before >= DIGEST_LIST_BYTES) break;
    out.push(r);
    before += JSON.stringify(r).length;
  }
  return out;
}
