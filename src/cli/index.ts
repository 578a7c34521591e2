// lead-notifier's command router: the command table, --help, --version, and the exit codes
// (0 ok, 1 runtime failure, 2 invalid config or usage, 3 a dependency unreachable). Each command
// lives in its own file with its options and its body; `main(argv)` runs one in-process and
// returns the exit code (src/main.ts is the process entry).
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { ConfigError, EXIT, coerceError, exitCodeOf } from '../util/errors.ts';
import { createContext, type Command } from './options.ts';

export { EXIT } from '../util/errors.ts';

/**
 * name, summary, and the command's own file, imported only when the command runs: `--help` loads
 * none of them, and a command loads only what it needs (`status` never loads jsforce or nodemailer).
 */
const COMMANDS: ReadonlyArray<{ name: string; summary: string; load: () => Promise<Command> }> = [
  {
    name: 'run',
    summary: 'run the daemon: poll, enqueue, send; SIGTERM/SIGINT drains and exits 0',
    load: async () => (await import('./run.ts')).run,
  },
  {
    name: 'check',
    summary: 'validate config and templates; with --connect also reach Salesforce and SMTP',
    load: async () => (await import('./check.ts')).check,
  },
  {
    name: 'dry-run',
    summary: 'query Salesforce and render what each rule would send; sends and writes nothing',
    load: async () => (await import('./dry-run.ts')).dryRunCommand,
  },
  {
    name: 'status',
    summary: 'checkpoints per rule, outbox counts by state, last errors',
    load: async () => (await import('./status.ts')).status,
  },
  {
    name: 'outbox',
    summary: 'inspect and act on outbox rows: list, retry dead ones, resolve uncertain ones',
    load: async () => (await import('./outbox.ts')).outbox,
  },
  {
    name: 'send-test',
    summary: 'render a rule against a real or sample record and send it once to ADDR, outside the ledger',
    load: async () => (await import('./send-test.ts')).sendTestCommand,
  },
  {
    name: 'demo',
    summary: 'try it without credentials: org emulator + Lead generator + capture inbox + worker',
    load: async () => (await import('./demo.ts')).demo,
  },
  {
    name: 'emulator',
    summary: 'run the local Salesforce org emulator alone and print its URL',
    load: async () => (await import('./emulator.ts')).emulator,
  },
];
const byName = new Map(COMMANDS.map((c) => [c.name, c]));

function helpText(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'lead-notifier: notify new Salesforce records by email, exactly once',
    '',
    'Usage: lead-notifier <command> [options]',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Config: -c FILE, else $LEAD_NOTIFIER_CONFIG, else ./config/notifier.yaml',
    'Exit codes: 0 ok, 1 failure, 2 invalid config or usage, 3 Salesforce or SMTP unreachable',
    "Run 'lead-notifier <command> --help' for a command's options.",
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const ctx = createContext();
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    ctx.out(helpText());
    return name ? EXIT.OK : EXIT.INVALID;
  }
  if (name === '--version' || name === '-v') {
    ctx.out((createRequire(import.meta.url)('../../package.json') as { version: string }).version);
    return EXIT.OK;
  }
  const entry = byName.get(name);
  if (!entry) {
    ctx.err(`unknown command '${name}'\n\n${helpText()}`);
    return EXIT.INVALID;
  }
  const cmd = await entry.load();
  try {
    const { values, positionals } = parseArgs({
      args: rest,
      options: { ...cmd.options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      ctx.out(`Usage: ${cmd.usage}\n\n${entry.summary}`);
      return EXIT.OK;
    }
    return await cmd.run(values as Record<string, unknown>, positionals, ctx);
  } catch (e) {
    if (e instanceof ConfigError) {
      ctx.err(`invalid configuration:\n${e.issues.map((i) => `  ${i}`).join('\n')}`);
      return EXIT.INVALID;
    }
    const err = coerceError(e);
    const exit = exitCodeOf(err);
    if (exit === EXIT.INVALID) ctx.err(`${err.message}\nUsage: ${cmd.usage}`);
    else ctx.err(`lead-notifier ${name}: ${err.message}`);
    return exit;
  }
}
