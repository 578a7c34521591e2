// Postfix's smtp-sink (apt-get install postfix: /usr/sbin/smtp-sink) as a loopback SMTP server for
// benchmarks: a C server that accepts and discards every message, so its own CPU cost is next to
// nothing and never shares the client's event loop. It counts messages (-c: "sess=N quit=N mesg=N"
// on stdout after each one).
//
//   const sink = await startSmtpSink();   // undefined (and one line on stderr) when it is missing
//   if (sink) { ... send to sink.host:sink.port ...; sink.received(); await sink.stop(); }
//
// `node bench/helpers/smtp-sink.ts` starts one, prints its address and runs until Ctrl-C.
// SMTP_SINK=/path/to/smtp-sink overrides the binary.
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { createConnection, createServer } from 'node:net';

export const SMTP_SINK_BIN = process.env.SMTP_SINK ?? '/usr/sbin/smtp-sink';

export interface SmtpSink {
  host: string;
  port: number;
  /** messages received so far (smtp-sink's own counter) */
  received(): number;
  stop(): Promise<void>;
}

/** Why smtp-sink cannot run here, or undefined when it can. */
export function smtpSinkMissing(): string | undefined {
  try {
    accessSync(SMTP_SINK_BIN, constants.X_OK);
    return undefined;
  } catch {
    return `smtp-sink: skipped: ${SMTP_SINK_BIN} is missing (Debian/Ubuntu: apt-get install postfix; or set SMTP_SINK)`;
  }
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Starts smtp-sink on a free loopback port and resolves once it accepts connections; undefined,
 * after one line on stderr, when the binary is missing.
 */
export async function startSmtpSink(
  opts: { host?: string; backlog?: number } = {},
): Promise<SmtpSink | undefined> {
  const missing = smtpSinkMissing();
  if (missing) {
    process.stderr.write(missing + '\n');
    return undefined;
  }
  const host = opts.host ?? '127.0.0.1';
  let lastError = '';
  // A port found free can be taken before smtp-sink binds it: a few attempts.
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort(host);
    // -u: smtp-sink refuses to run as root without dropping privileges after binding.
    const args = [
      ...(process.getuid?.() === 0 ? ['-u', 'nobody'] : []),
      '-c',
      `${host}:${port}`,
      String(opts.backlog ?? 1000),
    ];
    const child = spawn(SMTP_SINK_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let count = 0;
    let stderr = '';
    let exited = false;
    const exit = new Promise<void>((r) =>
      child.once('exit', () => {
        exited = true;
        r();
      }),
    );
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      const all = [...chunk.matchAll(/mesg=(\d+)/g)];
      const last = all.at(-1);
      if (last) count = Number(last[1]);
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', (err) => {
      stderr += err.message;
    });
    const deadline = Date.now() + 5000;
    while (!exited && Date.now() < deadline && !(await canConnect(host, port))) {
      await new Promise((r) => setTimeout(r, 50));
    }
    if (!exited && (await canConnect(host, port))) {
      return {
        host,
        port,
        received: () => count,
        async stop() {
          if (!exited) child.kill('SIGTERM');
          await exit;
        },
      };
    }
    if (!exited) child.kill('SIGKILL');
    await exit;
    lastError = stderr.trim() || `exited before listening on ${host}:${port}`;
  }
  throw new Error(`smtp-sink did not start: ${lastError}`);
}

if (import.meta.main) {
  const sink = await startSmtpSink();
  if (!sink) process.exit(0);
  process.stdout.write(`smtp-sink listening on ${sink.host}:${sink.port} (Ctrl-C stops it)\n`);
  process.once('SIGINT', () => {
    void sink.stop().then(() => {
      process.stdout.write(`smtp-sink: ${sink.received()} messages received\n`);
    });
  });
}
