// When `run` re-executes itself with heap limits (src/util/heap.ts), and when it must not.
import { describe, expect, it } from 'vitest';
import { HEAP_FLAGS, heapReexecArgs } from '../../src/util/heap.ts';

const base = {
  argv: ['/usr/bin/node', '/app/bin/lead-notifier.js', 'run', '-c', 'n.yaml'],
  execArgv: [] as string[],
  env: {} as NodeJS.ProcessEnv,
  canExecve: true,
};

describe('heapReexecArgs', () => {
  it('run with no heap flag of the user: re-executes with the limits, arguments kept in order', () => {
    expect(heapReexecArgs(base)).toEqual([
      '/usr/bin/node',
      ...HEAP_FLAGS,
      '/app/bin/lead-notifier.js',
      'run',
      '-c',
      'n.yaml',
    ]);
    // Node options of the user's that are not heap flags are kept, before ours
    expect(heapReexecArgs({ ...base, execArgv: ['--enable-source-maps'] })?.slice(0, 2)).toEqual([
      '/usr/bin/node',
      '--enable-source-maps',
    ]);
  });

  it('keeps the user’s own heap settings, other commands, and never loops', () => {
    expect(heapReexecArgs({ ...base, execArgv: ['--max-old-space-size=512'] })).toBeNull();
    expect(heapReexecArgs({ ...base, env: { NODE_OPTIONS: '--max-semi-space-size=8' } })).toBeNull();
    expect(heapReexecArgs({ ...base, env: { LEAD_NOTIFIER_HEAP: 'set' } })).toBeNull();
    expect(heapReexecArgs({ ...base, env: { LEAD_NOTIFIER_HEAP: 'default' } })).toBeNull();
    expect(
      heapReexecArgs({ ...base, argv: ['/usr/bin/node', '/app/bin/lead-notifier.js', 'status'] }),
    ).toBeNull();
    expect(heapReexecArgs({ ...base, canExecve: false })).toBeNull();
  });
});
