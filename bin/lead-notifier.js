#!/usr/bin/env node
// Entry point for `npx lead-notifier`. The sources are TypeScript run by Node's type stripping
// (on by default from Node 22.18/23.6); older 22.x lines get the flag by a re-exec.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../src/main.ts', import.meta.url));
if (process.features.typescript) {
  await import(cli);
} else {
  const r = spawnSync(
    process.execPath,
    ['--experimental-strip-types', '--no-warnings', cli, ...process.argv.slice(2)],
    {
      stdio: 'inherit',
    },
  );
  process.exit(r.status ?? 1);
}
