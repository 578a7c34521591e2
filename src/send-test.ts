// `send-test`: render a rule against a real record (--record-id), a record from a JSON file
// (--record) or a sample record, and send it once to --to. Outside the ledger: nothing is stored,
// the Message-ID is a fresh one, and only --to receives it (the rule's own recipients do not).
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { LoadedConfig } from './config/schema.ts';
import { isValidAddress } from './templates/recipients.ts';
import { createSmtpSink } from './sinks/index.ts';
import { connectSalesforce, createConnection } from './sources/salesforce/connection.ts';
import { asQueryPage, toSourceRecord } from './sources/salesforce/records.ts';
import { buildEnrichmentQuery } from './sources/salesforce/soql.ts';
import { compileRule, renderMessage, sampleRecord } from './templates/index.ts';
import type { SourceRecord } from './types.ts';
import { secretsOf } from './config/load.ts';
import { makeScrubber } from './log.ts';
import { coerceError } from './util/errors.ts';

export class SendTestUsageError extends Error {
  override name = 'SendTestUsageError';
}

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
    if (!/^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$/.test(o.recordId))
      throw new SendTestUsageError('--record-id is not a Salesforce Id');
    const conn = createConnection(config.salesforce, config.baseDir);
    await connectSalesforce(conn, config.salesforce, config.baseDir);
    const page = asQueryPage(
      await conn.request(
        `/services/data/v${config.salesforce.apiVersion}/query?q=${encodeURIComponent(buildEnrichmentQuery({ ...rule, where: undefined }, [o.recordId]))}`,
      ),
    );
    const raw = page.records[0];
    if (!raw) throw new SendTestUsageError(`no ${rule.object} with Id ${o.recordId}`);
    return toSourceRecord(rule.object, raw);
  }
  const sample = sampleRecord(rule);
  if (o.recordFile) {
    let fields: unknown;
    try {
      fields = JSON.parse(readFileSync(o.recordFile, 'utf8'));
    } catch (e) {
      throw new SendTestUsageError(`--record ${o.recordFile}: ${coerceError(e).message}`);
    }
    if (!fields || typeof fields !== 'object' || Array.isArray(fields)) {
      throw new SendTestUsageError(`--record ${o.recordFile}: must hold a JSON object of field values`);
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

export async function sendTest(config: LoadedConfig, options: SendTestOptions): Promise<number> {
  const scrub = makeScrubber(secretsOf(config));
  const o = { ...options, out: (line: string) => options.out(scrub(line)) };
  const rule = config.rules.find((r) => r.name === o.rule);
  if (!rule)
    throw new SendTestUsageError(
      `no rule named '${o.rule}' (rules: ${config.rules.map((r) => r.name).join(', ')})`,
    );
  if (!isValidAddress(o.to)) throw new SendTestUsageError(`--to is not an email address: ${o.to}`);
  const record = await loadRecord(config, o);
  // The rule's allow-list guards recipients taken from record data; here the operator names the
  // only recipient, so render without it and replace every recipient.
  const compiled = compileRule({ ...rule, allowRecipients: undefined }, config.baseDir);
  const rendered = renderMessage(compiled, record);
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
      return 1;
    }
    return 0;
  } catch (e) {
    const err = coerceError(e) as Error & { kind?: string };
    o.out(`send failed (${err.kind ?? 'error'}): ${err.message}`);
    return err.kind === 'retry' || err.kind === 'auth' || err.kind === 'throttle' ? 3 : 1;
  } finally {
    await sink.close();
  }
}
