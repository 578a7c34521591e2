// `lead-notifier run` on a SQLite file that is not a database: one line naming the file, exit 1,
// the file as it was.
import { readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/process.ts';
import { startStack, teardown } from '../helpers/stack.ts';
import type { Stack } from '../helpers/stack.ts';

let stack: Stack | undefined;

afterEach(async () => {
  await teardown(undefined, stack);
  stack = undefined;
});

describe('run on a corrupt SQLite store', () => {
  it('exits 1 with one stderr line naming the file and what to do, and leaves the file untouched', async () => {
    stack = await startStack();
    const file = join(stack.dir, 'notifier.db');
    const garbage = randomBytes(16384);
    writeFileSync(file, garbage);
    const r = await runCli(['run', '-c', stack.configPath]);
    expect(r.code).toBe(1);
    const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(file);
    expect(lines[0]).toMatch(/restore it from a backup/);
    // the JSON fatal line names it too, without a stack trace
    const fatal = r.stdout.split('\n').find((l) => l.includes('"level":60'));
    expect(fatal).toContain(file);
    expect(fatal).not.toContain('    at ');
    expect(readFileSync(file).equals(garbage)).toBe(true);
  });
});
