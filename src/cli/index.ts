// lead-notifier command line. Exit codes (DESIGN.md): 0 ok, 1 runtime failure, 2 invalid config or
// usage, 3 a dependency unreachable (check --connect).
import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';
// What a command needs is imported when it runs: `--help` loads none of it (start-up time and
// memory), and `status` never loads jsforce or nodemailer.
import type { LoadedConfig } from '../config/schema.ts';
import type { Logger } from '../log.ts';
import { makeScrubber } from '../util/secrets.ts';
import { ConfigError, coerceError } from '../util/errors.ts';
import { parseDuration } from '../util/duration.ts';

export const EXIT = { OK: 0, FAILURE: 1, INVALID: 2, UNREACHABLE: 3 } as const;

class UsageError extends Error {}

interface Command {
  summary: string;
  usage: string;
  options: NonNullable<ParseArgsConfig['options']>;
  run(values: Record<string, unknown>, positionals: string[]): Promise<number>;
}

const configOption = {
  config: { type: 'string', short: 'c' },
} as const;

const commands: Record<string, Command> = {
  run: {
    summary: 'run the daemon: poll, enqueue, send; SIGTERM/SIGINT drains and exits 0',
    usage: 'lead-notifier run [-c FILE]',
    options: { ...configOption },
    async run(values) {
      const config = await load(values);
      const logger = await loggerFor(config);
      const { App } = await import('../app/app.ts');
      const { Metrics } = await import('../http/metrics.ts');
      const { startHttpServer } = await import('../http/server.ts');
      const metrics = config.http.enabled
        ? new Metrics({ rules: config.rules.filter((r) => r.enabled).map((r) => r.name) })
        : undefined;
      const app = new App(config, { logger, ...(metrics ? { events: metrics.events } : {}) });
      let http: Awaited<ReturnType<typeof startHttpServer>> | undefined;
      let starting: Promise<void> | undefined;
      // First signal: readiness 503 at once, stop polling, let in-flight sends finish within
      // shutdownTimeout, close the store, close HTTP last (probes see 'stopping' until the end).
      // A second signal exits 1 at once.
      const shutdown = async (): Promise<number> => {
        http?.markStopping();
        let code: number = EXIT.OK;
        await starting?.catch(() => undefined);
        try {
          await app.stop();
        } catch (err) {
          logger.error({ err: coerceError(err) }, 'error while stopping');
          code = EXIT.FAILURE;
        }
        await http?.close();
        return code;
      };
      let signals = 0;
      const done = new Promise<number>((resolve) => {
        const onSignal = (sig: NodeJS.Signals) => {
          signals++;
          if (signals > 1) {
            logger.warn({ signal: sig }, 'second signal: exiting now');
            process.exit(EXIT.FAILURE);
          }
          http?.markStopping();
          logger.info({ signal: sig }, 'stopping: no new polls; waiting for in-flight sends');
          void shutdown().then(resolve);
        };
        process.on('SIGTERM', onSignal);
        process.on('SIGINT', onSignal);
      });
      try {
        // HTTP first: liveness answers while start-up runs, and a busy port fails before the store opens.
        if (config.http.enabled)
          http = await startHttpServer({
            app,
            host: config.http.host,
            port: config.http.port,
            logger,
            metrics,
          });
        if (signals > 0) return await done; // stopped while the port was being bound
        starting = app.start();
        await starting;
      } catch (e) {
        const err = coerceError(e);
        logger.fatal({ err }, `start-up failed: ${err.message}`);
        await app.stop(1000).catch(() => undefined);
        await http?.close(100);
        if (err.name === 'StoreLockedError')
          process.stderr.write(`lead-notifier run: ${scrub(err.message)}\n`);
        return EXIT.FAILURE;
      }
      return done;
    },
  },
  check: {
    summary: 'validate config and templates; with --connect also reach Salesforce and SMTP',
    usage: 'lead-notifier check [-c FILE] [--connect]',
    options: { ...configOption, connect: { type: 'boolean' } },
    async run(values) {
      const config = await load(values);
      const enabled = config.rules.filter((r) => r.enabled).length;
      out(`config ok: ${config.configPath} (${config.rules.length} rules, ${enabled} enabled)`);
      if (!values.connect) return EXIT.OK;
      const { checkConnections } = await import('../check.ts');
      return checkConnections(config, out);
    },
  },
  'dry-run': {
    summary: 'query Salesforce and render what each rule would send; sends and writes nothing',
    usage: 'lead-notifier dry-run [-c FILE] [--limit N] [--since DURATION|ISO] [--rule NAME] [--json]',
    options: {
      ...configOption,
      limit: { type: 'string' },
      since: { type: 'string' },
      rule: { type: 'string' },
      json: { type: 'boolean' },
    },
    async run(values) {
      const config = await load(values);
      const limit = values.limit === undefined ? 5 : Number(values.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 2000)
        throw new UsageError('--limit must be 1..2000');
      const since = parseSince(typeof values.since === 'string' ? values.since : '24h');
      const { dryRun } = await import('../dry-run.ts');
      return dryRun(config, {
        limit,
        since,
        json: Boolean(values.json),
        ...(typeof values.rule === 'string' ? { rule: values.rule } : {}),
        out,
      });
    },
  },
  status: {
    summary: 'checkpoints per rule, outbox counts by state, last errors',
    usage: 'lead-notifier status [-c FILE] [--json]',
    options: { ...configOption, json: { type: 'boolean' } },
    async run(values) {
      const config = await load(values, false);
      const { printStatus } = await import('../status.ts');
      return printStatus(config, { json: Boolean(values.json), out });
    },
  },
  outbox: {
    summary: 'inspect and act on outbox rows: list, retry dead ones, resolve uncertain ones',
    usage:
      'lead-notifier outbox list [--state dead|uncertain|pending|failed|sent] [--rule NAME] [--limit N] [--json] [-c FILE]\n' +
      '       lead-notifier outbox retry <id> | --all-dead [-c FILE]\n' +
      '       lead-notifier outbox resolve <id> --as sent|dead [--note TEXT] [-c FILE]',
    options: {
      ...configOption,
      state: { type: 'string' },
      rule: { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean' },
      'all-dead': { type: 'boolean' },
      as: { type: 'string' },
      note: { type: 'string' },
    },
    async run(values, positionals) {
      const config = await load(values, false);
      const { outboxCommand } = await import('../outbox-cli.ts');
      const str = (k: string) => (typeof values[k] === 'string' ? (values[k] as string) : undefined);
      return outboxCommand(config, {
        action: positionals[0],
        args: positionals.slice(1),
        ...(str('state') ? { state: str('state') } : {}),
        ...(str('rule') ? { rule: str('rule') } : {}),
        ...(str('limit') ? { limit: str('limit') } : {}),
        ...(str('as') ? { as: str('as') } : {}),
        ...(str('note') ? { note: str('note') } : {}),
        json: Boolean(values.json),
        allDead: Boolean(values['all-dead']),
        out,
      });
    },
  },
  'send-test': {
    summary: 'render a rule against a real or sample record and send it once to ADDR, outside the ledger',
    usage: 'lead-notifier send-test --rule NAME --to ADDR [--record-id ID | --record FILE.json] [-c FILE]',
    options: {
      ...configOption,
      rule: { type: 'string' },
      to: { type: 'string' },
      'record-id': { type: 'string' },
      record: { type: 'string' },
    },
    async run(values) {
      if (typeof values.rule !== 'string' || typeof values.to !== 'string') {
        throw new UsageError('--rule and --to are required');
      }
      if (values['record-id'] !== undefined && values.record !== undefined) {
        throw new UsageError('give --record-id or --record, not both');
      }
      const config = await load(values);
      const { sendTest } = await import('../send-test.ts');
      return sendTest(config, {
        rule: values.rule,
        to: values.to,
        ...(typeof values['record-id'] === 'string' ? { recordId: values['record-id'] } : {}),
        ...(typeof values.record === 'string' ? { recordFile: values.record } : {}),
        out,
      });
    },
  },
  demo: {
    summary: 'try it without credentials: org emulator + Lead generator + capture inbox + worker',
    usage: 'lead-notifier demo [--inbox-port N] [--interval SECONDS] [--no-generator]',
    options: {
      'inbox-port': { type: 'string' },
      interval: { type: 'string' },
      'no-generator': { type: 'boolean' },
    },
    async run(values) {
      const { runDemoCommand } = await import('../demo/demo.ts');
      return runDemoCommand(values);
    },
  },
  emulator: {
    summary: 'run the local Salesforce org emulator alone and print its URL',
    usage: 'lead-notifier emulator [--port N] [--host ADDR]',
    options: { port: { type: 'string', short: 'p' }, host: { type: 'string' } },
    async run(values) {
      const port = values.port === undefined ? 0 : Number(values.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535)
        throw new UsageError('--port must be 0..65535');
      const { startEmulator } = await import('../emulator/index.ts');
      const emu = await startEmulator({
        port,
        host: typeof values.host === 'string' ? values.host : '127.0.0.1',
      });
      out(emu.url);
      process.stderr.write(
        `Salesforce org emulator at ${emu.url}\n` +
          `  OAuth client: emulator-client / emulator-secret; user integration@example.com / emulator-password\n` +
          `  control API: ${emu.url}/__emulator/ (see src/emulator/README.md). Ctrl-C stops.\n`,
      );
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await emu.close();
      return EXIT.OK;
    },
  },
};

/** Replaces the loaded config's secrets in anything printed (set once the config is loaded). */
let scrub: (text: string) => string = (t) => t;

function out(line: string): void {
  process.stdout.write(scrub(line) + '\n');
}

function parseSince(text: string): Date {
  if (/^\d+(ms|s|m|h|d)$/.test(text)) return new Date(Date.now() - parseDuration(text));
  const t = Date.parse(text);
  if (Number.isNaN(t))
    throw new UsageError(`--since must be a duration (24h) or an ISO-8601 instant: ${text}`);
  return new Date(t);
}

async function load(values: Record<string, unknown>, checkTemplates = true): Promise<LoadedConfig> {
  const { loadConfig, resolveConfigPath, secretsOf } = await import('../config/load.ts');
  const path = resolveConfigPath(typeof values.config === 'string' ? values.config : undefined);
  // compileRule is imported lazily, as before: `status` and `outbox` only read the config
  const ruleChecks = checkTemplates ? (await import('../templates/index.ts')).compileRule : undefined;
  const config = await loadConfig(path, ruleChecks ? { ruleChecks } : {});
  scrub = makeScrubber(secretsOf(config));
  return config;
}

async function loggerFor(config: LoadedConfig): Promise<Logger> {
  const { secretsOf } = await import('../config/load.ts');
  const { createLogger } = await import('../log.ts');
  return createLogger({
    level: config.log.level,
    ...(config.log.format ? { format: config.log.format } : {}),
    secrets: secretsOf(config),
  });
}

function helpText(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  return [
    'lead-notifier: notify new Salesforce records by email, exactly once',
    '',
    'Usage: lead-notifier <command> [options]',
    '',
    'Commands:',
    ...Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    'Config: -c FILE, else $LEAD_NOTIFIER_CONFIG, else ./config/notifier.yaml',
    'Exit codes: 0 ok, 1 failure, 2 invalid config or usage, 3 Salesforce or SMTP unreachable',
    "Run 'lead-notifier <command> --help' for a command's options.",
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    out(helpText());
    return name ? EXIT.OK : EXIT.INVALID;
  }
  if (name === '--version' || name === '-v') {
    const { createRequire } = await import('node:module');
    out((createRequire(import.meta.url)('../../package.json') as { version: string }).version);
    return EXIT.OK;
  }
  const cmd = commands[name];
  if (!cmd) {
    process.stderr.write(`unknown command '${name}'\n\n${helpText()}\n`);
    return EXIT.INVALID;
  }
  try {
    const { values, positionals } = parseArgs({
      args: rest,
      options: { ...cmd.options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      out(`Usage: ${cmd.usage}\n\n${cmd.summary}`);
      return EXIT.OK;
    }
    return await cmd.run(values as Record<string, unknown>, positionals);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`invalid configuration:\n${e.issues.map((i) => `  ${i}`).join('\n')}\n`);
      return EXIT.INVALID;
    }
    const err = coerceError(e);
    if (
      e instanceof UsageError ||
      err.name === 'OutboxUsageError' ||
      err.name === 'SendTestUsageError' ||
      (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')
    ) {
      process.stderr.write(`${scrub(err.message)}\nUsage: ${cmd.usage}\n`);
      return EXIT.INVALID;
    }
    process.stderr.write(`lead-notifier ${name}: ${scrub(err.message)}\n`);
    return EXIT.FAILURE;
  }
}
