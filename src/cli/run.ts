// `run`: the daemon. First SIGTERM/SIGINT: readiness 503 at once, no new polls, in-flight sends
// finish within shutdownTimeout, the store closes, HTTP closes last, exit 0. A second signal exits 1.
import { onShutdown } from '../app/signals.ts';
import { createWorker } from '../app/worker.ts';
import { codeOf, coerceError, EXIT } from '../util/errors.ts';
import { configOption, type Command } from './options.ts';

export const run: Command = {
  name: 'run',
  usage: 'lead-notifier run [-c FILE]',
  options: { ...configOption },
  async run(values, _positionals, ctx) {
    const config = await ctx.load(values);
    const worker = await createWorker(config);
    const { logger } = worker;
    const shutdown = onShutdown(() => worker.stop(), {
      onFirst: (signal) => {
        worker.markStopping();
        logger.info({ signal }, 'stopping: no new polls; waiting for in-flight sends');
      },
      onSecond: (signal) => logger.warn({ signal }, 'second signal: exiting now'),
    });
    try {
      await worker.start();
    } catch (e) {
      const err = coerceError(e);
      // a store that is held or unreadable is the operator's to fix: one line saying what, no stack
      const known = codeOf(err) === 'ESTORELOCKED' || codeOf(err) === 'ESTORECORRUPT';
      if (known) logger.fatal({ code: codeOf(err) }, `start-up failed: ${err.message}`);
      else logger.fatal({ err }, `start-up failed: ${err.message}`);
      if (known) ctx.err(`lead-notifier run: ${err.message}`);
      shutdown.dispose();
      return EXIT.FAILURE;
    }
    return shutdown.done;
  },
};
