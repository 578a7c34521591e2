// `check --connect`: reach Salesforce (authenticate, and run each rule's query once, which proves
// its fields and `where` against the org) and SMTP (connect, EHLO, STARTTLS, AUTH).
import type { LoadedConfig } from './config/schema.ts';
import { createSmtpSink } from './sinks/index.ts';
import { connectSalesforce, createConnection } from './sources/salesforce/connection.ts';
import { buildPollQuery } from './sources/salesforce/soql.ts';
import { secretsOf } from './config/load.ts';
import { makeScrubber } from './log.ts';
import { coerceError } from './util/errors.ts';

/** errorCodes that mean the rule, not the network, is wrong */
const RULE_ERRORS = new Set([
  'INVALID_FIELD',
  'MALFORMED_QUERY',
  'INVALID_TYPE',
  'INVALID_QUERY_FILTER_OPERATOR',
]);

export async function checkConnections(config: LoadedConfig, print: (line: string) => void): Promise<number> {
  // Remote replies are printed as they come, and some servers echo what they were sent.
  const scrub = makeScrubber(secretsOf(config));
  const out = (line: string) => print(scrub(line));
  let code = 0;
  const conn = createConnection(config.salesforce, config.baseDir);
  try {
    await connectSalesforce(conn, config.salesforce, config.baseDir);
    out(`salesforce ok: authenticated (${config.salesforce.auth.flow}) at ${conn.instanceUrl}`);
    for (const rule of config.rules.filter((r) => r.enabled)) {
      const soql = `${buildPollQuery(rule, new Date())} LIMIT 1`;
      try {
        await conn.request(
          `/services/data/v${config.salesforce.apiVersion}/query?q=${encodeURIComponent(soql)}`,
        );
        out(`  rule ${rule.name}: query ok`);
      } catch (e) {
        const err = coerceError(e) as Error & { errorCode?: string };
        out(`  rule ${rule.name}: ${err.errorCode ?? 'error'}: ${err.message}`);
        code = Math.max(code, err.errorCode && RULE_ERRORS.has(err.errorCode) ? 2 : 3);
      }
    }
  } catch (e) {
    out(`salesforce unreachable: ${coerceError(e).message}`);
    code = 3;
  }
  const sink = createSmtpSink(config.smtp, { baseDir: config.baseDir });
  try {
    await sink.verify();
    out(`smtp ok: ${config.smtp.host}:${config.smtp.port}${describeSmtpAuth(config)}`);
  } catch (e) {
    out(`smtp unreachable: ${config.smtp.host}:${config.smtp.port}: ${coerceError(e).message}`);
    code = Math.max(code, 3);
  } finally {
    await sink.close();
  }
  return code;
}

/** what the verify proved about AUTH: the mechanism and, for OAuth2, where the token came from */
function describeSmtpAuth(config: LoadedConfig): string {
  const auth = config.smtp.auth;
  if (!auth) return ' (no AUTH)';
  if (auth.type === 'oauth2') {
    return ` (AUTH XOAUTH2 as ${auth.user}, access token from ${new URL(auth.accessUrl).host})`;
  }
  return ` (AUTH ${auth.method ?? 'PLAIN/LOGIN'} as ${auth.user})`;
}
