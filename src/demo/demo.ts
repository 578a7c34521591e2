// `lead-notifier demo`: the whole thing in one process, no credentials. The org emulator seeded
// with sales reps and a few historic Leads, a generator adding a Lead every few seconds, a capture
// SMTP server with a web inbox, and the real worker (App) running config/demo.yaml against them.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { App } from '../app/app.ts';
import { createWorker } from '../app/worker.ts';
import { loadConfig } from '../config/index.ts';
import { startEmulator, DEFAULT_PASSWORD, DEFAULT_USERNAME } from '../emulator/index.ts';
import type { Emulator } from '../emulator/index.ts';
import { enabledRules } from '../rules/index.ts';
import { compileRule } from '../templates/index.ts';
import { coerceError, StartupError } from '../util/errors.ts';
import { createEmailStore, startCaptureSmtp } from './capture.ts';
import type { CaptureSmtp, EmailStore } from './capture.ts';
import { describeLead, leadChange, leadFactory, SAMPLE_USERS } from './generator.ts';
import { startInbox } from './inbox/server.ts';
import type { Inbox } from './inbox/server.ts';

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
          'Every few seconds a new Lead appears in the local Salesforce org emulator. The worker emails each new Lead once per matching rule (config/demo.yaml):',
          '• new-web-lead: LeadSource = Web, streamed as Change Data Capture over the Pub/Sub API (gRPC), to web-desk@example.com, with an HTML card and the record as a JSON attachment.',
          '• lead-owner (polled every 2 s, like hot-lead): every Lead, to the sales rep who owns it. The address comes from the record, so allowRecipients fences it to *@example.com.',
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
        throw new StartupError(
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
      ruleChecks: compileRule,
      env: {
        ...(opts.env ?? process.env),
        DEMO_SF_URL: emulator.url,
        DEMO_PUBSUB_ENDPOINT: emulator.pubsub.endpoint,
        DEMO_SMTP_PORT: String(smtp.port),
        DEMO_DATA_DIR: dataDir,
      },
    });
    // The worker as `run` starts it, with its health, readiness and metrics endpoints.
    const worker = await createWorker(config);
    const app = worker.app;
    cleanups.push(() => worker.stop());
    try {
      await worker.start();
    } catch (e) {
      const err = coerceError(e);
      throw new StartupError(
        isAddrInUse(err) || /EADDRINUSE/.test(err.message)
          ? `the worker could not start: ${err.message} (port ${config.http.port} busy? set DEMO_HTTP_PORT=N, or 0 for any free port)`
          : `the worker could not start: ${err.message}`,
      );
    }

    const metricsUrl = worker.http ? `${worker.http.url}/metrics` : null;
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
      rules: enabledRules(config).map((r) => r.name),
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
