// Heap limits the daemon sets for itself. V8 sizes its heap from the machine's memory and grows it
// lazily: left alone, `run` working through a backlog lets garbage pile up to several hundred MB
// resident before it collects. When the user set no heap flag of their own (command line or
// NODE_OPTIONS), `run` re-executes itself in place (process.execve: same pid, so supervisors and
// `kill` see one process) with the limits the container image uses, and at most two malloc arenas.
// V8 lets the old generation fill to near its cap before it collects, so the cap is what the
// resident size follows: 96 MB peaked at 184 MB through a 100,000 backlog, 48 MB at 138-144 MB,
// for about 8% of the drain rate (more mark-compacts; bench/RESULTS.md, fifth round). The working
// set is about 30 MB; the poller's pages
// are sized by weight (sources/salesforce/poller.ts), so Leads with 32,000-character Descriptions
// stay near 40 MB.
export const HEAP_FLAGS = ['--max-old-space-size=48', '--max-semi-space-size=2'] as const;

/** set in the re-executed process, so it never loops; LEAD_NOTIFIER_HEAP=default opts out */
const MARK = 'LEAD_NOTIFIER_HEAP';

const USER_HEAP_FLAG =
  /--max-old-space-size|--max-semi-space-size|--max-heap-size|--max-young-generation-size/;

/** the argv to re-execute with, or null when the process should keep V8's sizing as it is */
export function heapReexecArgs(p: {
  argv: string[];
  execArgv: string[];
  env: NodeJS.ProcessEnv;
  canExecve: boolean;
}): string[] | null {
  if (!p.canExecve || p.env[MARK] !== undefined) return null;
  if (p.argv[2] !== 'run') return null;
  if (p.execArgv.some((a) => USER_HEAP_FLAG.test(a))) return null;
  if (USER_HEAP_FLAG.test(p.env.NODE_OPTIONS ?? '')) return null;
  return [p.argv[0]!, ...p.execArgv, ...HEAP_FLAGS, ...p.argv.slice(1)];
}

/** Re-executes `run` with HEAP_FLAGS when heapReexecArgs says so; otherwise returns. */
export function applyHeapLimits(): void {
  const proc = process as NodeJS.Process & {
    execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never;
  };
  const args = heapReexecArgs({
    argv: process.argv,
    execArgv: process.execArgv,
    env: process.env,
    canExecve: typeof proc.execve === 'function',
  });
  if (!args) return;
  // glibc's malloc keeps an arena per thread (V8's and libuv's pools): two are plenty here and
  // keep fragmentation out of the resident size (an explicit setting of the user's is kept)
  proc.execve!(process.execPath, args, { MALLOC_ARENA_MAX: '2', ...process.env, [MARK]: 'set' });
}
