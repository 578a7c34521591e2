#!/usr/bin/env node
// Entry point for `npx lead-notifier`. It runs the build in dist/ (`npm run build`, run by
// `prepare` on install) when there is one: no type stripping at run time, so less memory and a
// faster start. Otherwise, and with LEAD_NOTIFIER_SOURCES=1 (the tests), the TypeScript sources
// run by Node's type stripping (on by default from Node 22.18/23.6); older 22.x lines get the
// flag by a re-exec.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const built = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const useBuild = !process.env.LEAD_NOTIFIER_SOURCES && existsSync(built);
const cli = useBuild ? built : fileURLToPath(new URL('../src/main.ts', import.meta.url));
if (useBuild || process.features.typescript) {
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
