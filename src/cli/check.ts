// `check`: validate the config and templates; with --connect also reach Salesforce (authenticate,
// and run each rule's query once, which proves its fields and `where` against the org) and SMTP
// (connect, EHLO, STARTTLS, AUTH). Exit 0 ok, 2 invalid config (or a rule the org rejects), 3 unreachable.
import type { LoadedConfig } from '../config/index.ts';
import { enabledRules } from '../rules/index.ts';
import { createSmtpSink } from '../sinks/index.ts';
import { connectSalesforce, createConnection } from '../sources/salesforce/connection.ts';
import { queryFirstPage } from '../sources/salesforce/query.ts';
import { buildPollQuery } from '../sources/salesforce/soql.ts';
import { coerceError, EXIT } from '../util/errors.ts';
import { configOption, type Command } from './options.ts';

/** errorCodes that mean the rule, not the network, is wrong */
const RULE_ERRORS = new Set([
  'INVALID_FIELD',
  'MALFORMED_QUERY',
  'INVALID_TYPE',
  'INVALID_QUERY_FILTER_OPERATOR',
]);

export const check: Command = {
  name: 'check',
  usage: 'lead-notifier check [-c FILE] [--connect]',
  options: { ...configOption, connect: { type: 'boolean' } },
  async run(values, _positionals, ctx) {
    const config = await ctx.load(values);
    const enabled = enabledRules(config).length;
    ctx.out(`config ok: ${config.configPath} (${config.rules.length} rules, ${enabled} enabled)`);
    if (!values.connect) return EXIT.OK;
    // remote replies are printed as they come (some servers echo what they were sent): ctx.out scrubs
    return checkConnections(config, ctx.out);
  },
};

export async function checkConnections(config: LoadedConfig, out: (line: string) => void): Promise<number> {
  let code: number = EXIT.OK;
  const conn = createConnection(config.salesforce, config.baseDir);
  try {
    await connectSalesforce(conn, config.salesforce, config.baseDir);
    out(`salesforce ok: authenticated (${config.salesforce.auth.flow}) at ${conn.instanceUrl}`);
    for (const rule of enabledRules(config)) {
      try {
        await queryFirstPage(
          conn,
          config.salesforce.apiVersion,
          `${buildPollQuery(rule, new Date())} LIMIT 1`,
        );
        out(`  rule ${rule.name}: query ok`);
      } catch (e) {
        const err = coerceError(e) as Error & { errorCode?: string };
        out(`  rule ${rule.name}: ${err.errorCode ?? 'error'}: ${err.message}`);
        const ruleError = err.errorCode !== undefined && RULE_ERRORS.has(err.errorCode);
        code = Math.max(code, ruleError ? EXIT.INVALID : EXIT.UNREACHABLE);
      }
    }
  } catch (e) {
    out(`salesforce unreachable: ${coerceError(e).message}`);
    code = EXIT.UNREACHABLE;
  }
  const sink = createSmtpSink(config.smtp, { baseDir: config.baseDir });
  try {
    await sink.verify();
    out(`smtp ok: ${config.smtp.host}:${config.smtp.port}${describeSmtpAuth(config)}`);
  } catch (e) {
    out(`smtp unreachable: ${config.smtp.host}:${config.smtp.port}: ${coerceError(e).message}`);
    code = Math.max(code, EXIT.UNREACHABLE);
  } finally {
    await sink.close();
  }
  return Math.max(code, await checkChannels(config, out));
}

/** Each webhook, Slack and Teams receiver a rule uses answers a TCP (and TLS) connect; nothing is posted. */
async function checkChannels(config: LoadedConfig, out: (line: string) => void): Promise<number> {
  const rules = enabledRules(config);
  if (!rules.some((r) => r.webhook || r.slack || r.teams)) return EXIT.OK;
  const { createHttpChannels } = await import('../app/channels.ts');
  let code: number = EXIT.OK;
  for (const [channel, r] of createHttpChannels(rules)) {
    try {
      await r.sink.verify();
      out(`${channel} ok: receiver reachable (rules ${r.rules.join(', ')})`);
    } catch (e) {
      // the URL of Slack and Teams is a secret: ctx.out scrubs it from the message
      out(`${channel} unreachable: ${coerceError(e).message}`);
      code = EXIT.UNREACHABLE;
    } finally {
      await r.sink.close();
    }
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
