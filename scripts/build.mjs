// `npm run build`: the TypeScript sources compiled into dist/ (tsconfig.build.json), plus every
// file under src/ that is not TypeScript (SQL migrations, the Pub/Sub .proto and its licence),
// which the compiled modules read at run time relative to themselves.
import { execFileSync } from 'node:child_process';
import { cpSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import process from 'node:process';

rmSync('dist', { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
cpSync('src', 'dist', { recursive: true, filter: (src) => !src.endsWith('.ts') });
