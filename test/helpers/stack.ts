// An end-to-end stack for tests: the org emulator, a capture SMTP server and a config file in a
// temp dir, plus a way to run the real `lead-notifier` CLI against them.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { startEmulator } from '../../src/emulator/index.ts';
import type { Emulator, EmulatorOptions } from '../../src/emulator/index.ts';
import { startCli, runCli } from './process.ts';
import type { CliProcess } from './process.ts';
import { startCaptureServer } from './smtp-server.ts';
import type { CaptureServer, CaptureServerOptions } from './smtp-server.ts';

export interface StackOptions {
  emulator?: EmulatorOptions;
  smtp?: CaptureServerOptions;
  /** merged over the default rule */
  rule?: Record<string, unknown>;
  /** extra rules, complete */
  extraRules?: Record<string, unknown>[];
  /** merged over the top-level config */
  config?: Record<string, unknown>;
  /** salesforce.streaming; default: the emulator's Pub/Sub API over plaintext gRPC */
  streaming?: Record<string, unknown>;
}

export interface Stack {
  dir: string;
  configPath: string;
  emu: Emulator;
  smtp: CaptureServer;
  config: Record<string, unknown>;
  /** rewrite the config file */
  writeConfig(config: Record<string, unknown>): void;
  run(env?: Record<string, string>): CliProcess;
  cli(args: string[]): ReturnType<typeof runCli>;
  close(): Promise<void>;
}

export const DEFAULT_RULE = {
  name: 'new-leads',
  object: 'Lead',
  schedule: '* * * * * *',
  startFrom: 'now',
  lookback: '10m',
  select: ['FirstName', 'LastName', 'Company', 'Email', 'LeadSource', 'Owner.Email'],
  email: {
    from: 'Lead desk <leads@example.com>',
    to: 'sales@example.com',
    subject: 'New lead: {{FirstName}} {{LastName}} ({{Company}})',
    text: 'Lead {{Id}}: {{FirstName}} {{LastName}} <{{Email}}> from {{Company}}',
    html: '<p>Lead <b>{{FirstName}} {{LastName}}</b> from {{Company}}</p>',
  },
};

export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), 'ln-e2e-'));
  const emu = await startEmulator({ port: 0, ...opts.emulator });
  const smtp = await startCaptureServer(opts.smtp ?? {});
  const config: Record<string, unknown> = {
    salesforce: {
      loginUrl: emu.url,
      apiVersion: '62.0',
      auth: { flow: 'client_credentials', clientId: 'emulator-client', clientSecret: 'emulator-secret' },
      streaming: { api: 'pubsub', endpoint: emu.pubsub.endpoint, tls: false, ...opts.streaming },
    },
    smtp: {
      host: '127.0.0.1',
      port: smtp.port,
      secure: false,
      ignoreTLS: true,
      pool: { maxConnections: 3 },
      connectionTimeoutMs: 2000,
      greetingTimeoutMs: 2000,
      socketTimeoutMs: 5000,
      sendTimeoutMs: 10_000,
    },
    store: `sqlite:${join(dir, 'notifier.db')}`,
    http: { enabled: false },
    log: { level: 'info' },
    delivery: { backoffBaseMs: 200, backoffMaxMs: 2000, circuitRetryMs: 1000 },
    shutdownTimeout: '5s',
    ...opts.config,
    rules: [{ ...DEFAULT_RULE, ...opts.rule }, ...(opts.extraRules ?? [])],
  };
  const configPath = join(dir, 'notifier.yaml');
  const stack: Stack = {
    dir,
    configPath,
    emu,
    smtp,
    config,
    writeConfig(c) {
      writeFileSync(configPath, stringify(c));
    },
    run(env = {}) {
      return startCli(['run', '-c', configPath], { env });
    },
    cli(args) {
      return runCli([...args, '-c', configPath]);
    },
    async close() {
      await smtp.close();
      await emu.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  stack.writeConfig(config);
  return stack;
}

/** Fields of a plausible web lead; `i` makes them unique. */
export function leadFields(i: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    FirstName: `First${i}`,
    LastName: `Last${i}`,
    Company: `Company ${i}`,
    Email: `lead${i}@prospect.example.org`,
    LeadSource: 'Web',
    ...extra,
  };
}

/** After a test: kill the daemon (if any), wait for it to exit, close the stack. */
export async function teardown(proc: CliProcess | undefined, stack: Stack | undefined): Promise<void> {
  proc?.kill('SIGKILL');
  await proc?.exit;
  await stack?.close();
}
