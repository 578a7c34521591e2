// `npm run bench`: the benchmarks in bench/, one after the other (never two at once: they measure
// time and memory), each in its own process on this node, with their output as they print it;
// then their ratio lines together. Exit code 1 when one of them failed.
//
//   npm run bench                              # all, with the defaults below
//   npm run bench -- throughput poll-calls     # only these, in this order
//   npm run bench -- backlog-rss=20000 throughput=2000,1   # with arguments (comma-separated)
//
// Each bench's own header says what it measures and what its arguments are. backlog-rss also
// reads BENCH_NODE_ARGS (the daemon's node options; '' for V8's defaults), passed through here.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const BENCHES: { name: string; args: string[] }[] = [
  { name: 'emulator', args: [] }, // the emulator's own page rate: jsforce/raw ratio
  { name: 'poll-calls', args: [] }, // REST calls per poll for 0, 1, 2,500, 10,000 records
  { name: 'throughput', args: ['10000', '2'] }, // [N] [ROUNDS]: pipeline / plain nodemailer
  { name: 'backlog-rss', args: ['100000'] }, // [N]: peak RSS working through a backlog of N
];

const selected = process.argv.slice(2).map((a) => {
  const [name = '', args] = a.replace(/\.ts$/, '').split('=', 2);
  const known = BENCHES.find((b) => b.name === name);
  if (!known) {
    process.stderr.write(
      `bench: unknown benchmark ${name} (known: ${BENCHES.map((b) => b.name).join(', ')})\n`,
    );
    process.exit(2);
  }
  return { name, args: args === undefined ? known.args : args.split(',').filter(Boolean) };
});
const runs = selected.length > 0 ? selected : BENCHES;

function run(name: string, args: string[]): Promise<{ code: number; ratios: string[]; seconds: number }> {
  const file = fileURLToPath(new URL(`./${name}.ts`, import.meta.url));
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [file, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    const ratios: string[] = [];
    let partial = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      process.stdout.write(chunk);
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) if (/ratio/i.test(line)) ratios.push(line.trim());
    });
    child.once('close', (code, signal) => {
      if (/ratio/i.test(partial)) ratios.push(partial.trim());
      resolve({ code: code ?? (signal ? 1 : 0), ratios, seconds: (performance.now() - started) / 1000 });
    });
  });
}

const summary: string[] = [];
let failed = 0;
for (const { name, args } of runs) {
  process.stdout.write(`\n== bench/${name}.ts ${args.join(' ')}\n`);
  const r = await run(name, args);
  if (r.code !== 0) failed++;
  const status =
    r.code === 0 ? `${r.seconds.toFixed(0)} s` : `FAILED (exit ${r.code}) after ${r.seconds.toFixed(0)} s`;
  summary.push(`${name} (${status})`);
  if (r.ratios.length === 0) summary.push('  (no ratio line)');
  for (const line of r.ratios) summary.push(`  ${line}`);
}
process.stdout.write(`\n== ratios (node ${process.versions.node})\n${summary.join('\n')}\n`);
process.exitCode = failed > 0 ? 1 : 0;
