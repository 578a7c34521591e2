// A PostgreSQL server of the test's own, for tests that restart the database under a running
// daemon (the machine's shared server must never be restarted). Built from the PostgreSQL binaries
// in /usr/lib/postgresql/<version>/bin: initdb into a temp dir, trust auth, listening on 127.0.0.1
// only, on a free port; as the `postgres` user when the tests run as root (initdb and postgres
// refuse root). Without those binaries: a testcontainers PostgreSqlContainer bound to a fixed host
// port (so a restarted container comes back where the daemon looks for it).
import { execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface PrivatePostgres {
  /** `postgres://postgres@127.0.0.1:<port>/postgres` */
  url: string;
  /** with `tls`: the CA that signed the server's certificate (for 127.0.0.1), a PEM file */
  caFile: string | null;
  port: number;
  /** 'binaries': a cluster of our own from initdb; 'container': testcontainers */
  kind: 'binaries' | 'container';
  /**
   * Restart the server: `fast` rolls back open transactions and disconnects every client, then
   * shuts down cleanly; `immediate` kills the server without a shutdown checkpoint, so the start
   * runs crash recovery. Resolves once it accepts connections again. `downMs`: stay stopped that
   * long before starting again (an outage, not a blip); only where `canStayDown`.
   */
  restart(mode: 'fast' | 'immediate', opts?: { downMs?: number }): Promise<void>;
  /** restart() can keep the server down for a while (not with the container fallback) */
  canStayDown: boolean;
  /** the server's log so far (for failure messages) */
  log(): string;
  /** stop the server and remove its files. Safe twice. */
  stop(): Promise<void>;
}

const PG_ROOT = '/usr/lib/postgresql';

/** The bin directory of the newest PostgreSQL installed, or null. */
export function findPostgresBin(): string | null {
  if (!existsSync(PG_ROOT)) return null;
  const versions = readdirSync(PG_ROOT)
    .filter(
      (v) => existsSync(join(PG_ROOT, v, 'bin', 'initdb')) && existsSync(join(PG_ROOT, v, 'bin', 'pg_ctl')),
    )
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(PG_ROOT, versions[0], 'bin') : null;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** uid and gid of a local user (from `id`), for spawning as it. */
function userIds(name: string): { uid: number; gid: number } {
  const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

function run(
  file: string,
  args: string[],
  as: { uid: number; gid: number } | null,
  timeoutMs = 120_000,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(as ? { uid: as.uid, gid: as.gid } : {}),
      // the server must not inherit the tests' environment beyond what it needs
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C' },
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${file} ${args.join(' ')} exited ${code}:\n${out}`));
    });
  });
}

export interface PrivatePostgresOptions {
  /** serve TLS too (binaries only), with a certificate for 127.0.0.1 from a CA of its own (openssl) */
  tls?: boolean;
}

export async function startPrivatePostgres(opts: PrivatePostgresOptions = {}): Promise<PrivatePostgres> {
  const bin = findPostgresBin();
  if (!bin && opts.tls) throw new Error('a TLS server needs the PostgreSQL binaries');
  return bin ? startFromBinaries(bin, opts) : startContainer();
}

/** A CA and a server certificate for IP 127.0.0.1 signed by it, in `dir`. */
async function makeCertificates(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const f = (name: string) => join(dir, name);
  const openssl = (args: string[]) => run('openssl', args, null);
  await openssl([
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=ln-test-ca',
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.pem'),
  ]);
  await openssl([
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=127.0.0.1',
    '-keyout',
    f('server.key'),
    '-out',
    f('server.csr'),
  ]);
  writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1\n');
  await openssl([
    'x509',
    '-req',
    '-days',
    '2',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.pem'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-extfile',
    f('server.ext'),
    '-out',
    f('server.crt'),
  ]);
  return { ca: f('ca.pem'), cert: f('server.crt'), key: f('server.key') };
}

async function startFromBinaries(bin: string, opts: PrivatePostgresOptions): Promise<PrivatePostgres> {
  const as = process.getuid?.() === 0 ? userIds('postgres') : null;
  const dir = mkdtempSync(join(tmpdir(), 'ln-pg-'));
  const certs = opts.tls ? await makeCertificates(dir) : null;
  if (certs) {
    // the server refuses a key others can read
    chmodSync(certs.key, 0o600);
    if (as) for (const file of [certs.cert, certs.key]) chownSync(file, as.uid, as.gid);
  }
  if (as) chownSync(dir, as.uid, as.gid);
  const data = join(dir, 'data');
  const logFile = join(dir, 'server.log');
  const port = await freePort();
  const pgCtl = join(bin, 'pg_ctl');
  // the socket in our own dir (the default one belongs to the shared server); no fsync: the data
  // survives a server process killed (-m immediate), which is all these tests need
  const serverOptions = [
    `-p ${port}`,
    `-c listen_addresses=127.0.0.1`,
    `-c unix_socket_directories='${dir}'`,
    `-c fsync=off`,
    `-c max_connections=60`,
    ...(certs ? [`-c ssl=on`, `-c ssl_cert_file='${certs.cert}'`, `-c ssl_key_file='${certs.key}'`] : []),
  ].join(' ');
  const ctl = (action: string, extra: string[] = []) =>
    run(pgCtl, ['-D', data, '-l', logFile, '-w', '-t', '60', '-o', serverOptions, ...extra, action], as);

  let stopped = false;
  const stopSync = () => {
    if (stopped) return;
    stopped = true;
    try {
      execFileSync(pgCtl, ['-D', data, '-m', 'immediate', '-w', 'stop'], {
        stdio: 'ignore',
        ...(as ? { uid: as.uid, gid: as.gid } : {}),
      });
    } catch {
      // not running
    }
    rmSync(dir, { recursive: true, force: true });
  };
  // a test run that dies must not leave a server behind
  process.once('exit', stopSync);

  try {
    await run(
      join(bin, 'initdb'),
      ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-sync', '--no-instructions'],
      as,
    );
    await ctl('start');
  } catch (e) {
    stopSync();
    throw e;
  }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    caFile: certs?.ca ?? null,
    port,
    kind: 'binaries',
    canStayDown: true,
    async restart(mode, opts = {}) {
      if (!opts.downMs) {
        await ctl('restart', ['-m', mode]);
        return;
      }
      await ctl('stop', ['-m', mode]);
      await new Promise((r) => setTimeout(r, opts.downMs));
      await ctl('start');
    },
    log() {
      try {
        return readFileSync(logFile, 'utf8');
      } catch {
        return '';
      }
    },
    async stop() {
      if (stopped) return;
      process.removeListener('exit', stopSync);
      try {
        await ctl('stop', ['-m', 'fast']);
      } catch {
        // stopped already, or gone: the files go anyway
      }
      stopped = true;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function startContainer(): Promise<PrivatePostgres> {
  const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
  const port = await freePort();
  const container = await new PostgreSqlContainer('postgres:15')
    .withExposedPorts({ container: 5432, host: port })
    .withUsername('postgres')
    .withPassword('postgres')
    .withDatabase('postgres')
    .start();
  let stopped = false;
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    caFile: null,
    port,
    kind: 'container',
    canStayDown: false,
    async restart(mode) {
      // docker restart: SIGTERM (a fast shutdown) or, with no grace, SIGKILL (no checkpoint)
      await container.restart({ timeout: mode === 'fast' ? 10_000 : 0 });
    },
    log: () => '',
    async stop() {
      if (stopped) return;
      stopped = true;
      await container.stop();
    },
  };
}
