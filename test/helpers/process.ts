// Running the real CLI as a child process, the way users and CI run it.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../bin/lead-notifier.js', import.meta.url));

export interface CliProcess {
  proc: ChildProcess;
  /** stdout lines so far (JSON log lines for `run`) */
  lines: string[];
  stderr: string[];
  exit: Promise<number | null>;
  /** resolves with the first line matching, or rejects after timeoutMs */
  waitForLine(
    pred: (line: string, json: Record<string, unknown> | null) => boolean,
    timeoutMs?: number,
  ): Promise<string>;
  kill(signal?: NodeJS.Signals): void;
}

function cleanEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LOG_FORMAT: 'json', ...extra };
  // jsforce ignores NO_PROXY: the child must talk to loopback directly.
  for (const k of ['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY']) delete env[k];
  return env;
}

export function startCli(
  args: string[],
  opts: { env?: Record<string, string | undefined>; cwd?: string } = {},
): CliProcess {
  const proc = spawn(process.execPath, [CLI, ...args], {
    env: cleanEnv(opts.env ?? {}),
    cwd: opts.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const stderr: string[] = [];
  const waiters: Array<{
    pred: (l: string, j: Record<string, unknown> | null) => boolean;
    resolve: (l: string) => void;
  }> = [];
  const parse = (l: string): Record<string, unknown> | null => {
    try {
      return JSON.parse(l) as Record<string, unknown>;
    } catch {
      return null;
    }
  };
  let buf = '';
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (chunk: string) => {
    buf += chunk;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line);
      const j = parse(line);
      for (const w of [...waiters]) {
        if (w.pred(line, j)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  let ebuf = '';
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (chunk: string) => {
    ebuf += chunk;
    const parts = ebuf.split('\n');
    ebuf = parts.pop() ?? '';
    stderr.push(...parts);
  });
  const exit = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return {
    proc,
    lines,
    stderr,
    exit,
    waitForLine(pred, timeoutMs = 20_000) {
      for (const l of lines) if (pred(l, parse(l))) return Promise.resolve(l);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => {
          reject(
            new Error(
              `no matching output within ${timeoutMs} ms; last lines:\n${lines.slice(-15).join('\n')}\nstderr:\n${stderr.slice(-15).join('\n')}`,
            ),
          );
        }, timeoutMs);
        waiters.push({
          pred,
          resolve: (l) => {
            clearTimeout(t);
            resolve(l);
          },
        });
      });
    },
    kill(signal = 'SIGTERM') {
      proc.kill(signal);
    },
  };
}

/** Run a CLI command to completion. */
export async function runCli(
  args: string[],
  opts: { env?: Record<string, string | undefined>; cwd?: string; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = startCli(args, opts);
  const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
  const code = await p.exit;
  clearTimeout(timer);
  // let the stream handlers drain
  await new Promise((r) => setImmediate(r));
  return { code, stdout: p.lines.join('\n'), stderr: p.stderr.join('\n') };
}

export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 20_000,
  what = 'condition',
  intervalMs = 50,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
