// `send-test`: render a rule against a real record (--record-id), a record from a JSON file
// (--record) or a sample record, and send it once to --to. Outside the ledger: nothing is stored,
// the Message-ID is a fresh one, and only --to receives it (the rule's own recipients do not).
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { LoadedConfig } from '../config/index.ts';
import { createSmtpSink } from '../sinks/index.ts';
import { connectSalesforce, createConnection } from '../sources/salesforce/connection.ts';
import { isSalesforceId } from '../sources/salesforce/ids.ts';
import { queryFirstPage } from '../sources/salesforce/query.ts';
import { toSourceRecord } from '../sources/salesforce/records.ts';
import { buildEnrichmentQuery } from '../sources/salesforce/soql.ts';
import { digestItem, digestKey } from '../app/digest.ts';
import {
  compileRule,
  isValidAddress,
  renderDigest,
  renderMessage,
  sampleRecord,
} from '../templates/index.ts';
import type { SourceRecord } from '../types.ts';
import { coerceError, EXIT, UsageError } from '../util/errors.ts';
import { configOption, str, type Command } from './options.ts';

export const sendTestCommand: Command = {
  name: 'send-test',
  usage: 'lead-notifier send-test --rule NAME --to ADDR [--record-id ID | --record FILE.json] [-c FILE]',
  options: {
    ...configOption,
    rule: { type: 'string' },
    to: { type: 'string' },
    'record-id': { type: 'string' },
    record: { type: 'string' },
  },
  async run(values, _positionals, ctx) {
    const rule = str(values, 'rule');
    const to = str(values, 'to');
    if (rule === undefined || to === undefined) throw new UsageError('--rule and --to are required');
    if (values['record-id'] !== undefined && values.record !== undefined) {
      throw new UsageError('give --record-id or --record, not both');
    }
    const config = await ctx.load(values);
    const recordId = str(values, 'record-id');
    const recordFile = str(values, 'record');
    return sendTest(config, {
      rule,
      to,
      ...(recordId ? { recordId } : {}),
      ...(recordFile ? { recordFile } : {}),
      out: ctx.out,
    });
  },
};

export interface SendTestOptions {
  rule: string;
  to: string;
  recordId?: string;
  recordFile?: string;
  out: (line: string) => void;
}

async function loadRecord(config: LoadedConfig, o: SendTestOptions): Promise<SourceRecord> {
  const rule = config.rules.find((r) => r.name === o.rule)!;
  if (o.recordId) {
    if (!isSalesforceId(o.recordId)) throw new UsageError('--record-id is not a Salesforce Id');
    const conn = createConnection(config.salesforce, config.baseDir);
    await connectSalesforce(conn, config.salesforce, config.baseDir);
    const soql = buildEnrichmentQuery({ ...rule, where: undefined }, [o.recordId]);
    const page = await queryFirstPage(conn, config.salesforce.apiVersion, soql);
    const raw = page.records[0];
    if (!raw) throw new UsageError(`no ${rule.object} with Id ${o.recordId}`);
    return toSourceRecord(rule.object, raw);
  }
  const sample = sampleRecord(rule);
  if (o.recordFile) {
    let fields: unknown;
    try {
      fields = JSON.parse(readFileSync(o.recordFile, 'utf8'));
    } catch (e) {
      throw new UsageError(`--record ${o.recordFile}: ${coerceError(e).message}`);
    }
    if (!fields || typeof fields !== 'object' || Array.isArray(fields)) {
      throw new UsageError(`--record ${o.recordFile}: must hold a JSON object of field values`);
    }
    const merged = { ...sample.fields, ...(fields as Record<string, unknown>) };
    return {
      ...sample,
      id: typeof merged.Id === 'string' ? merged.Id : sample.id,
      fields: merged,
    };
  }
  return sample;
}

export async function sendTest(config: LoadedConfig, o: SendTestOptions): Promise<number> {
  const rule = config.rules.find((r) => r.name === o.rule);
  if (!rule)
    throw new UsageError(`no rule named '${o.rule}' (rules: ${config.rules.map((r) => r.name).join(', ')})`);
  if (!isValidAddress(o.to)) throw new UsageError(`--to is not an email address: ${o.to}`);
  if (!rule.email) {
    throw new UsageError(
      `rule '${rule.name}' sends no email: send-test sends a rule's email (dry-run shows its webhook, Slack and Teams requests)`,
    );
  }
  const record = await loadRecord(config, o);
  // The rule's allow-list guards recipients taken from record data; here the operator names the
  // only recipient, so render without it and replace every recipient.
  const compiled = compileRule({ ...rule, allowRecipients: undefined }, config.baseDir);
  // a digest rule: the digest of this one record, as it would go out now
  const now = new Date();
  const rendered = rule.digest
    ? renderDigest(
        compiled,
        {
          records: [digestItem(record, record.id).record],
          count: 1,
          since: now.toISOString(),
          until: now.toISOString(),
        },
        { now, key: digestKey(now) },
      )
    : renderMessage(
        compiled,
        record,
        rule.on === 'updated' ? { extra: { previous: {}, changedFields: [] } } : {},
      );
  const domain = /@([^>]+)>$/.exec(rendered.messageId)?.[1] ?? 'lead-notifier.invalid';
  const message = {
    ...rendered,
    to: [o.to],
    cc: [],
    bcc: [],
    subject: `[test] ${rendered.subject}`,
    messageId: `<send-test.${randomUUID()}@${domain}>`,
    headers: { ...rendered.headers, 'X-Lead-Notifier-Test': `rule=${rule.name}; record=${record.id}` },
  };
  const sink = createSmtpSink(config.smtp, { baseDir: config.baseDir, inProcess: true });
  try {
    const result = await sink.send(message);
    o.out(`sent test of rule ${rule.name} (record ${record.id}) to ${o.to}: ${result.response}`);
    if (result.rejected.length > 0) {
      o.out(`rejected: ${result.rejected.join(', ')}`);
      return EXIT.FAILURE;
    }
    return EXIT.OK;
  } catch (e) {
    const err = coerceError(e) as Error & { kind?: string };
    o.out(`send failed (${err.kind ?? 'error'}): ${err.message}`);
    return err.kind === 'retry' || err.kind === 'auth' || err.kind === 'throttle'
      ? EXIT.UNREACHABLE
      : EXIT.FAILURE;
  } finally {
    await sink.close();
  }
}
