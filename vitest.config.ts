import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // jsforce ignores NO_PROXY; every test talks to loopback only. LEAD_NOTIFIER_SOURCES: the CLI
    // children run the TypeScript sources under test, never a dist/ build that may be stale.
    env: { http_proxy: '', https_proxy: '', HTTP_PROXY: '', HTTPS_PROXY: '', LEAD_NOTIFIER_SOURCES: '1' },
    pool: 'forks',
    // Most tests wait on sockets, child processes and timers rather than the CPU: three files at
    // a time on CI's two cores keeps the whole suite near 5 minutes (one at a time, vitest's
    // default there, takes more than twice that).
    maxWorkers: 3,
  },
});
