// The program's entry: the only module with top-level effects. bin/lead-notifier.js imports it;
// everything else (src/cli/ and below) can be imported and called in-process, e.g. by tests.
// The CLI is imported only after the heap check: `run` may re-execute itself first (util/heap.ts),
// and nothing should be loaded twice for that.
import { applyHeapLimits } from './util/heap.ts';

applyHeapLimits();
const { EXIT, main } = await import('./cli/index.ts');
const { coerceError } = await import('./util/errors.ts');

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // The daemon's handles (cron, pools) are closed by stop(); anything left must not hold us.
    if (code !== EXIT.OK || process.argv[2] !== 'run') setTimeout(() => process.exit(code), 50).unref();
    else setTimeout(() => process.exit(code), 200).unref();
  },
  (err: unknown) => {
    process.stderr.write(`${coerceError(err).stack}\n`);
    process.exit(EXIT.FAILURE);
  },
);
