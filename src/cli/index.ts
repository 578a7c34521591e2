// lead-notifier's command router: the command table, --help, --version, and the exit codes
// (0 ok, 1 runtime failure, 2 invalid config or usage, 3 a dependency unreachable). Each command
// lives in its own file with its options and its body; `main(argv)` runs one in-process and
// returns the exit code (src/main.ts is the process entry).
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { ConfigError, EXIT, coerceError, exitCodeOf } from '../util/errors.ts';
import { check } from './check.ts';
import { demo } from './demo.ts';
import { dryRunCommand } from './dry-run.ts';
import { emulator } from './emulator.ts';
import { createContext, type Command } from './options.ts';
import { outbox } from './outbox.ts';
import { run } from './run.ts';
import { sendTestCommand } from './send-test.ts';
import { status } from './status.ts';

export { EXIT } from '../util/errors.ts';

const COMMANDS: readonly Command[] = [
  run,
  check,
  dryRunCommand,
  status,
  outbox,
  sendTestCommand,
  demo,
  emulator,
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
  const cmd = byName.get(name);
  if (!cmd) {
    ctx.err(`unknown command '${name}'\n\n${helpText()}`);
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
      ctx.out(`Usage: ${cmd.usage}\n\n${cmd.summary}`);
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
