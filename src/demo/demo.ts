// `lead-notifier demo`: the whole thing in one process, no credentials. The org emulator seeded
// with sales reps and a few historic Leads, a generator adding a Lead every few seconds, a capture
// SMTP server with a web inbox, and the real worker (App) running config/demo.yaml against them.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { App } from '../app/app.ts';
import { Metrics } from '../http/metrics.ts';
import { startHttpServer } from '../http/server.ts';
import { loadConfig, secretsOf } from '../config/load.ts';
import { startEmulator, DEFAULT_PASSWORD, DEFAULT_USERNAME } from '../emulator/index.ts';
import type { Emulator } from '../emulator/index.ts';
import { createLogger } from '../log.ts';
import { coerceError } from '../util/errors.ts';
import { createEmailStore, startCaptureSmtp } from './capture.ts';
import type { CaptureSmtp, EmailStore } from './capture.ts';
import { describeLead, leadChange, leadFactory, SAMPLE_USERS } from './generator.ts';
import { startInbox } from './inbox.ts';
import type { Inbox } from './inbox.ts';

export const DEMO_CONFIG_PATH = fileURLToPath(new URL('../../config/demo.yaml', import.meta.url));
export const DEFAULT_INBOX_PORT = 8025;
export const DEFAULT_SMTP_PORT = 2525;
export const DEFAULT_INTERVAL_MS = 5000;

export interface DemoOptions {
  /** web inbox port; default 8025, 0 = any free port */
  inboxPort?: number;
  /** capture SMTP port; default 2525, or any free port when that is taken */
  smtpPort?: number;
  /** create a Lead every intervalMs (default true) */
  generator?: boolean;
  intervalMs?: number;
  /** default config/demo.yaml */
  configPath?: string;
  /** console lines (default stdout) */
  out?: (line: string) => void;
  /** environment for the config's ${...} (default process.env) */
  env?: NodeJS.ProcessEnv;
}

export interface Demo {
  inboxUrl: string;
  emulatorUrl: string;
  smtpPort: number;
  /** http://host:port/metrics when the worker's HTTP endpoints answer */
  metricsUrl: string | null;
  dataDir: string;
  emails: EmailStore;
  emulator: Emulator;
  app: App;
  /** Ids of the sample sales reps (Lead owners) */
  ownerIds: string[];
  /** create one generated Lead now */
  addLead(): { id: string; lead: Record<string, unknown> };
  /** stop everything; safe twice */
  stop(): Promise<void>;
}

/** A start-up failure with a message meant for the user as it is. */
export class DemoError extends Error {}

/** Strips control characters (ANSI escapes included) before record data reaches a terminal. */
export function forTerminal(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ');
}

function isAddrInUse(err: unknown): boolean {
  return (err as { code?: string } | null)?.code === 'EADDRINUSE';
}

/** Starts every part; on a failure, what was started is stopped again before the error is thrown. */
export async function startDemo(opts: DemoOptions = {}): Promise<Demo> {
  const out = opts.out ?? ((line: string) => void process.stdout.write(line + '\n'));
  const cleanups: Array<() => unknown> = [];
  const undo = async (): Promise<void> => {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        await c();
      } catch {
        /* best effort while stopping */
      }
    }
  };
  try {
    const emails = createEmailStore();

    // 1. capture SMTP: 2525, or any free port (nothing outside the demo needs to know it)
    const wantedSmtp = opts.smtpPort ?? DEFAULT_SMTP_PORT;
    let smtp: CaptureSmtp;
    try {
      smtp = await startCaptureSmtp(emails, { port: wantedSmtp });
    } catch (err) {
      if (!isAddrInUse(err) || wantedSmtp === 0) throw err;
      smtp = await startCaptureSmtp(emails, { port: 0 });
    }
    cleanups.push(() => smtp.close());

    // 2. the org, with sales reps as Users (the first user is the API integration user)
    const emulator = await startEmulator({
      port: 0,
      users: [
        {
          username: DEFAULT_USERNAME,
          password: DEFAULT_PASSWORD,
          firstName: 'Integration',
          lastName: 'User',
        },
        ...SAMPLE_USERS.map((u) => ({
          username: u.username,
          email: u.email,
          firstName: u.firstName,
          lastName: u.lastName,
          password: randomBytes(12).toString('base64url'),
        })),
      ],
    });
    cleanups.push(() => emulator.close());
    const ownerIds = SAMPLE_USERS.map((u) => emulator.org.users.byUsername(u.username)!.Id);
    const nextLead = leadFactory({ ownerIds });
    // Lead queues (Groups of Type Queue): one with an address, one without
    const queueIds = emulator.control.insert('Group', [
      { Name: 'Web leads', DeveloperName: 'Web_leads', Type: 'Queue', Email: 'web-queue@example.com' },
      { Name: 'Unassigned', DeveloperName: 'Unassigned', Type: 'Queue' },
    ]);
    // Historic Leads: created an hour ago, before the worker's first start (startFrom: now), so
    // they are never notified.
    emulator.control.insert(
      'Lead',
      Array.from({ length: 4 }, () => ({ ...nextLead(), Status: 'Working - Contacted' })),
      { createdDate: new Date(Date.now() - 3600_000) },
    );

    // 3. the inbox
    const inboxPort = opts.inboxPort ?? DEFAULT_INBOX_PORT;
    let inbox: Inbox;
    try {
      inbox = await startInbox(emails, {
        port: inboxPort,
        hints: [
          'Every few seconds a new Lead appears in the local Salesforce org emulator. The worker polls it every 2 s and emails each new Lead once per matching rule (config/demo.yaml):',
          '• new-web-lead: LeadSource = Web, to web-desk@example.com, with an HTML card and the record as a JSON attachment.',
          '• lead-owner: every Lead, to the sales rep who owns it. The address comes from the record, so allowRecipients fences it to *@example.com.',
          '• hot-lead: Rating = Hot, importance high, to the owner with the sales manager in Cc.',
          '• lead-qualified (on: updated): a Lead the generator qualifies later, to its owner, threaded under its first email. Re-assigned to a queue without an email, it dead-letters with the reason.',
          '• web-leads-digest: every minute, one email listing the web Leads since the previous digest.',
          'Some Leads carry hostile data, as web forms do (<b>, <script>, line breaks in a company name): look how the emails show it as text.',
        ],
        links: [
          { label: 'Salesforce org emulator (control API: /__emulator/records/Lead)', url: emulator.url },
        ],
      });
    } catch (err) {
      if (isAddrInUse(err))
        throw new DemoError(
          `port ${inboxPort} is already in use (is another demo running?): choose another with --inbox-port N, or --inbox-port 0 for any free port`,
        );
      throw err;
    }
    cleanups.push(() => inbox.close());

    // 4. the worker, with the demo config
    const dataDir = mkdtempSync(join(tmpdir(), 'lead-notifier-demo-'));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const configPath = opts.configPath ?? DEMO_CONFIG_PATH;
    const config = await loadConfig(configPath, {
      env: {
        ...(opts.env ?? process.env),
        DEMO_SF_URL: emulator.url,
        DEMO_SMTP_PORT: String(smtp.port),
        DEMO_DATA_DIR: dataDir,
      },
    });
    const logger = createLogger({
      level: config.log.level,
      ...(config.log.format ? { format: config.log.format } : {}),
      secrets: secretsOf(config),
    });
    // The worker's health, readiness and metrics endpoints, as `run` serves them.
    const metrics = config.http.enabled
      ? new Metrics({ rules: config.rules.filter((r) => r.enabled).map((r) => r.name) })
      : undefined;
    const app = new App(config, { logger, ...(metrics ? { events: metrics.events } : {}) });
    cleanups.push(() => app.stop());
    let metricsUrl: string | null = null;
    try {
      if (config.http.enabled) {
        const http = await startHttpServer({
          app,
          host: config.http.host,
          port: config.http.port,
          logger,
          ...(metrics ? { metrics } : {}),
        });
        cleanups.push(() => http.close(100));
        metricsUrl = `${http.url}/metrics`;
      }
      await app.start();
    } catch (e) {
      const err = coerceError(e);
      throw new DemoError(
        isAddrInUse(err) || /EADDRINUSE/.test(err.message)
          ? `the worker could not start: ${err.message} (port ${config.http.port} busy? set DEMO_HTTP_PORT=N, or 0 for any free port)`
          : `the worker could not start: ${err.message}`,
      );
    }

    emails.onAdd((e) => out(forTerminal(`  mail  ${e.to}: ${e.subject}`)));

    const generated: string[] = [];
    const addLead = (): { id: string; lead: Record<string, unknown> } => {
      const lead = nextLead();
      const [id] = emulator.control.insert('Lead', [lead]);
      const owner = SAMPLE_USERS[ownerIds.indexOf(String(lead.OwnerId))];
      out(forTerminal(`  lead  ${id} ${describeLead(lead)}, owner ${owner?.email ?? '?'}`));
      generated.push(id!);
      return { id: id!, lead };
    };
    // an earlier generated Lead moves on: qualified, re-assigned (maybe to a queue), or touched
    const changeLead = (): void => {
      const id = generated[Math.floor(Math.random() * generated.length)];
      const fields = id ? leadChange(Math.random, { ownerIds, queueIds }) : null;
      if (!id || !fields) return;
      emulator.control.update('Lead', [{ Id: id, ...fields }]);
      out(forTerminal(`  edit  ${id} ${JSON.stringify(fields)}`));
    };

    const intervalMs = opts.intervalMs ?? DEFAULT_INTERVAL_MS;
    const timers: NodeJS.Timeout[] = [];
    if (opts.generator !== false) {
      const generate = (): void => {
        try {
          changeLead();
          addLead();
        } catch (e) {
          out(`  generator: ${coerceError(e).message}`);
        }
      };
      // the first Lead soon after the banner, so the inbox is not empty for long
      timers.push(setTimeout(generate, Math.min(intervalMs, 1500)), setInterval(generate, intervalMs));
      // pushed last, so undone first: no new Leads while the worker drains
      cleanups.push(() => timers.forEach((t) => clearTimeout(t)));
    }

    printBanner(out, {
      inboxUrl: inbox.url,
      emulatorUrl: emulator.url,
      smtpPort: smtp.port,
      metricsUrl,
      configPath: config.configPath,
      rules: config.rules.filter((r) => r.enabled).map((r) => r.name),
      dataDir,
      generator: opts.generator !== false,
      intervalMs,
      ownerId: ownerIds[0]!,
    });

    let stopping: Promise<void> | undefined;
    return {
      inboxUrl: inbox.url,
      emulatorUrl: emulator.url,
      smtpPort: smtp.port,
      metricsUrl,
      dataDir,
      emails,
      emulator,
      app,
      ownerIds,
      addLead,
      stop: () => (stopping ??= undo()),
    };
  } catch (err) {
    await undo();
    throw err;
  }
}

interface BannerInfo {
  inboxUrl: string;
  emulatorUrl: string;
  smtpPort: number;
  metricsUrl: string | null;
  configPath: string;
  rules: string[];
  dataDir: string;
  generator: boolean;
  intervalMs: number;
  ownerId: string;
}

function printBanner(out: (line: string) => void, b: BannerInfo): void {
  const example = JSON.stringify({
    FirstName: 'Ada',
    LastName: 'Lovelace',
    Company: 'Analytical Engines',
    LeadSource: 'Web',
    Rating: 'Hot',
    OwnerId: b.ownerId,
  });
  const lines = [
    '',
    'lead-notifier demo: a local Salesforce org, a capture SMTP server and the worker, all in this process.',
    'Nothing leaves this machine and no credentials are needed.',
    '',
    `  Inbox     ${b.inboxUrl}   <- open this: every email the worker sends lands here`,
    `  Emulator  ${b.emulatorUrl}   (a local Salesforce org; OAuth client emulator-client / emulator-secret)`,
    `  SMTP      127.0.0.1:${b.smtpPort}   (capture server; nothing is relayed)`,
    ...(b.metricsUrl ? [`  Metrics   ${b.metricsUrl}`] : []),
    `  Config    ${b.configPath}   (rules: ${b.rules.join(', ')})`,
    `  Data      ${b.dataDir}   (SQLite outbox; removed on exit)`,
    '',
    b.generator
      ? `A new Lead is created every ${b.intervalMs / 1000} s (--interval SECONDS changes it, --no-generator turns it off).`
      : 'The Lead generator is off (--no-generator): add Leads by hand.',
    'Add a Lead by hand (it is emailed within a few seconds):',
    `  curl -s -X POST ${b.emulatorUrl}/__emulator/records/Lead -H 'content-type: application/json' \\`,
    `    -d '${example}'`,
    `List the org's Leads: curl -s ${b.emulatorUrl}/__emulator/records/Lead`,
    'Ctrl-C stops everything.',
    '',
  ];
  for (const l of lines) out(l);
}

/** The `demo` command: parses its options, runs until SIGINT/SIGTERM, returns the exit code. */
export async function runDemoCommand(values: Record<string, unknown>): Promise<number> {
  const fail = (msg: string): number => {
    process.stderr.write(
      `${msg}\nUsage: lead-notifier demo [--inbox-port N] [--interval SECONDS] [--no-generator]\n`,
    );
    return 2;
  };
  const inboxPort = values['inbox-port'] === undefined ? DEFAULT_INBOX_PORT : Number(values['inbox-port']);
  if (!Number.isInteger(inboxPort) || inboxPort < 0 || inboxPort > 65535)
    return fail('--inbox-port must be 0..65535 (0 = any free port)');
  const interval = values.interval === undefined ? DEFAULT_INTERVAL_MS / 1000 : Number(values.interval);
  if (!Number.isFinite(interval) || interval < 0.1 || interval > 3600)
    return fail('--interval must be a number of seconds, 0.1..3600');

  let demo: Demo;
  try {
    demo = await startDemo({
      inboxPort,
      intervalMs: Math.round(interval * 1000),
      generator: values['no-generator'] !== true,
    });
  } catch (e) {
    const err = coerceError(e);
    process.stderr.write(
      `lead-notifier demo: ${err instanceof DemoError ? err.message : (err.stack ?? err.message)}\n`,
    );
    return 1;
  }
  let signals = 0;
  return new Promise<number>((resolve) => {
    const onSignal = (): void => {
      signals++;
      if (signals > 1) process.exit(1);
      process.stdout.write('\nstopping the demo...\n');
      demo.stop().then(
        () => resolve(0),
        (err: unknown) => {
          process.stderr.write(`lead-notifier demo: error while stopping: ${coerceError(err).message}\n`);
          resolve(1);
        },
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
