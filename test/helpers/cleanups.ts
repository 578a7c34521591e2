// Per-test teardown: what a test starts, it registers here; after each test everything registered
// is undone, last first (a sink before its server, a store before its directory).
import { afterEach } from 'vitest';

export type Cleanup = () => Promise<unknown> | unknown;

/** Call at the top of a test file; returns the list to push cleanups onto. */
export function cleanupsAfterEach(): Cleanup[] {
  const cleanups: Cleanup[] = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!();
  });
  return cleanups;
}
