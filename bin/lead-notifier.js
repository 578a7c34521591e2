#!/usr/bin/env node
// Entry point for `npx lead-notifier`. It runs the build in dist/ (`npm run build`, run by
// `prepare` on install) when there is one: no type stripping at run time, so less memory and a
// faster start. Otherwise, and with LEAD_NOTIFIER_SOURCES=1 (the tests), the TypeScript sources
// run by Node's type stripping (on by default from Node 22.18/23.6); older 22.x lines get the
// flag by a re-exec.
//
// This file must stay plain JavaScript that any old Node can parse (no top-level await, no
// static imports): the version check comes first, before anything else is loaded, so an
// unsupported Node gets one line and exit code 1 instead of a stack trace or an option error.
const MIN = [22, 12];
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < MIN[0] || (major === MIN[0] && minor < MIN[1])) {
  process.stderr.write(
    `lead-notifier needs Node.js >= ${MIN.join('.')} (this is ${process.versions.node})\n`,
  );
  process.exitCode = 1;
} else {
  Promise.all([
    import('node:child_process'),
    import('node:fs'),
    import('node:module'),
    import('node:url'),
  ]).then(([{ spawnSync }, { existsSync }, { enableCompileCache }, { fileURLToPath }]) => {
    // Node's on-disk compile cache (the V8 code of every module loaded) spares a start the
    // compiling: about 60 ms of `run`'s start-up CPU here. It lives in the package's own
    // .cache/, writable only by whoever installed the package (Node's default, a directory under
    // the shared tmp, would let another local user plant code); where that cannot be created (a
    // read-only install, the image) enableCompileCache returns a failed status, and the start
    // just compiles. Node itself honours NODE_COMPILE_CACHE (a directory of the user's) and
    // NODE_DISABLE_COMPILE_CACHE=1.
    enableCompileCache(fileURLToPath(new URL('../.cache/node-compile-cache', import.meta.url)));
    const built = fileURLToPath(new URL('../dist/main.js', import.meta.url));
    const useBuild = !process.env.LEAD_NOTIFIER_SOURCES && existsSync(built);
    const cli = useBuild ? built : fileURLToPath(new URL('../src/main.ts', import.meta.url));
    if (useBuild || process.features.typescript) return import(cli);
    const r = spawnSync(
      process.execPath,
      ['--experimental-strip-types', '--no-warnings', cli, ...process.argv.slice(2)],
      { stdio: 'inherit' },
    );
    process.exit(r.status ?? 1);
  });
}
