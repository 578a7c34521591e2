// Postfix's smtp-sink (Debian package `postfix`) as a benchmark peer: a fast real SMTP server that
// counts messages without storing them, so the client's overhead is what a benchmark sees.
// `-c` prints "sess=N quit=N mesg=N" after each event; we read the count from that.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect, createServer } from 'node:net';

// BENCH_SMTP_SINK: another program taking smtp-sink's arguments and printing its `-c` counts,
// e.g. smtp-sink-standin.c beside this file where Postfix is not installed
export const SMTP_SINK = process.env.BENCH_SMTP_SINK ?? '/usr/sbin/smtp-sink';

export interface PostfixSink {
  port: number;
  /** messages whose DATA completed so far */
  received(): number;
  close(): Promise<void>;
}

export function havePostfixSink(): boolean {
  return existsSync(SMTP_SINK);
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export async function startPostfixSink(): Promise<PostfixSink> {
  if (!havePostfixSink()) {
    throw new Error(`${SMTP_SINK} not found: install Postfix (apt-get install postfix)`);
  }
  const port = await freePort();
  // -u nobody: smtp-sink refuses to run as root otherwise; 1000 = listen backlog
  const child: ChildProcess = spawn(SMTP_SINK, ['-u', 'nobody', '-c', `127.0.0.1:${port}`, '1000'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let count = 0;
  let tail = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    tail = (tail + chunk).slice(-200);
    const all = [...tail.matchAll(/mesg=(\d+)/g)];
    const last = all.at(-1);
    if (last) count = Number(last[1]);
  });
  // wait until it accepts connections
  const deadline = Date.now() + 5000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1');
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill();
      throw new Error('smtp-sink did not start listening within 5 s');
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    received: () => count,
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
