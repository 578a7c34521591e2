// Start-up: wall time of `lead-notifier --help`, and of `lead-notifier run` from spawn to its first
// completed poll (`"msg":"poll"`) against the org emulator; median of 5 each. Baseline, measured in
// the same run: `node -e 0` (the bare runtime). Targets: --help under 0.3 s, first poll within 1 s.
// Run: node bench/startup.ts [RUNS=5]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { stringify } from 'yaml';
import { startEmulator } from '../src/emulator/index.ts';

for (const k of ['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY']) delete process.env[k];
const RUNS = Number(process.argv[2] ?? 5);
// BENCH_CLI: another checkout's bin/lead-notifier.js (to measure a "before")
const CLI = process.env.BENCH_CLI ?? new URL('../bin/lead-notifier.js', import.meta.url).pathname;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** seconds from spawn until `until` sees a matching stdout line (or the process exits) */
function timeIt(args: string[], until?: RegExp): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, args, {
      env: { ...process.env, LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let buf = '';
    let done = false;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (c: string) => {
      buf += c;
      if (until && !done && until.test(buf)) {
        done = true;
        resolve((performance.now() - t0) / 1000);
        child.kill('SIGTERM');
      }
    });
    child.on('exit', (code) => {
      if (done) return;
      if (until) reject(new Error(`exited (${code}) before ${until}: ${buf.slice(-500)}`));
      else resolve((performance.now() - t0) / 1000);
    });
  });
}

const emu = await startEmulator({ port: 0 });
const smtp = new SMTPServer({ authOptional: true, disabledCommands: ['STARTTLS'], logger: false });
await new Promise<void>((r) => smtp.listen(0, '127.0.0.1', r));
const dir = mkdtempSync(join(tmpdir(), 'ln-bench-start-'));
try {
  const bare: number[] = [];
  const help: number[] = [];
  const run: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    bare.push(await timeIt(['-e', '0']));
    help.push(await timeIt([CLI, '--help']));
    const config = {
      salesforce: {
        loginUrl: emu.url,
        auth: { flow: 'client_credentials', clientId: 'emulator-client', clientSecret: 'emulator-secret' },
      },
      smtp: { host: '127.0.0.1', port: (smtp.server.address() as { port: number }).port, ignoreTLS: true },
      store: `sqlite:${join(dir, `s${i}.db`)}`,
      http: { enabled: false },
      rules: [
        { name: 'leads', email: { from: 'a@example.com', to: 'b@example.com', subject: 'x', text: 'y' } },
      ],
    };
    writeFileSync(join(dir, `c${i}.yaml`), stringify(config));
    run.push(await timeIt([CLI, 'run', '-c', join(dir, `c${i}.yaml`)], /"msg":"poll"/));
  }
  const f = (x: number) => `${x.toFixed(3)} s`;
  console.log(
    `Start-up, median of ${RUNS}:\n` +
      `  node -e 0 (baseline)         ${f(median(bare))}\n` +
      `  lead-notifier --help         ${f(median(help))}  ratio to 0.3 s target ${(median(help) / 0.3).toFixed(2)} (<= 1.00 meets it)\n` +
      `  run -> first poll done       ${f(median(run))}  ratio to 1 s target ${median(run).toFixed(2)} (<= 1.00 meets it)`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
  await emu.close();
  await new Promise<void>((r) => smtp.close(() => r()));
}
