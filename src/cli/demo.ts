// `demo`: the org emulator, a Lead generator, a capture inbox and the worker in one process, no
// credentials needed. Runs until SIGINT/SIGTERM (a second signal exits 1 at once).
import { onShutdown } from '../app/signals.ts';
import { coerceError, EXIT, StartupError } from '../util/errors.ts';
import type { Command } from './options.ts';

const DEFAULT_INBOX_PORT = 8025;
const DEFAULT_INTERVAL_S = 5;

export const demo: Command = {
  name: 'demo',
  usage: 'lead-notifier demo [--inbox-port N] [--interval SECONDS] [--no-generator]',
  options: {
    'inbox-port': { type: 'string' },
    interval: { type: 'string' },
    'no-generator': { type: 'boolean' },
  },
  async run(values, _positionals, ctx) {
    const usage = (msg: string): number => {
      ctx.err(`${msg}\nUsage: ${demo.usage}`);
      return EXIT.INVALID;
    };
    const inboxPort = values['inbox-port'] === undefined ? DEFAULT_INBOX_PORT : Number(values['inbox-port']);
    if (!Number.isInteger(inboxPort) || inboxPort < 0 || inboxPort > 65535)
      return usage('--inbox-port must be 0..65535 (0 = any free port)');
    const interval = values.interval === undefined ? DEFAULT_INTERVAL_S : Number(values.interval);
    if (!Number.isFinite(interval) || interval < 0.1 || interval > 3600)
      return usage('--interval must be a number of seconds, 0.1..3600');

    // loaded on demand: the emulator, smtp-server and the inbox are the demo's alone
    const { startDemo } = await import('../demo/demo.ts');
    let running: Awaited<ReturnType<typeof startDemo>>;
    try {
      running = await startDemo({
        inboxPort,
        intervalMs: Math.round(interval * 1000),
        generator: values['no-generator'] !== true,
      });
    } catch (e) {
      const err = coerceError(e);
      ctx.err(
        `lead-notifier demo: ${err instanceof StartupError ? err.message : (err.stack ?? err.message)}`,
      );
      return EXIT.FAILURE;
    }
    const shutdown = onShutdown(
      () =>
        running.stop().then(
          () => EXIT.OK,
          (err: unknown) => {
            ctx.err(`lead-notifier demo: error while stopping: ${coerceError(err).message}`);
            return EXIT.FAILURE;
          },
        ),
      { onFirst: () => ctx.out('\nstopping the demo...') },
    );
    return shutdown.done;
  },
};
