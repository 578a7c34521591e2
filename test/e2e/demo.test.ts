// `lead-notifier demo` as users run it (a child process), and the demo inbox on its own: a real
// capture SMTP server fed by nodemailer, the inbox over HTTP, hostile email content escaped.
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import nodemailer from 'nodemailer';
import type { SendMailOptions } from 'nodemailer';
import { afterEach, describe, expect, it } from 'vitest';
import { createEmailStore, startCaptureSmtp } from '../../src/demo/capture.ts';
import type { CaptureSmtp, EmailStore } from '../../src/demo/capture.ts';
import { startInbox } from '../../src/demo/inbox/server.ts';
import type { Inbox } from '../../src/demo/inbox/server.ts';
import { runCli, startCli, waitFor } from '../helpers/process.ts';
import type { CliProcess } from '../helpers/process.ts';

interface Summary {
  id: number;
  subject: string;
  to: string;
  messageId: string | null;
  rule: string | null;
  importance: string | null;
  hasHtml: boolean;
  attachments: Array<{ index: number; filename: string; contentType: string; size: number }>;
}

async function messages(inboxUrl: string): Promise<Summary[]> {
  const res = await fetch(`${inboxUrl}/api/messages`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { messages: Summary[] }).messages;
}

describe('lead-notifier demo (child process)', () => {
  let proc: CliProcess | undefined;
  afterEach(async () => {
    proc?.kill('SIGKILL');
    await proc?.exit;
    proc = undefined;
  });

  it('emails generated Leads into the inbox within seconds and stops cleanly on SIGINT', async () => {
    proc = startCli(['demo', '--inbox-port', '0', '--interval', '1'], { env: { DEMO_HTTP_PORT: '0' } });
    const p = proc;
    const line = await p.waitForLine((l) => /^\s*Inbox\s+http:\/\//.test(l), 20_000);
    const inboxUrl = /(http:\/\/\S+)/.exec(line)![1]!;
    const emulatorUrl = /(http:\/\/\S+)/.exec(
      await p.waitForLine((l) => /^\s*Emulator\s+http:\/\//.test(l)),
    )![1]!;
    const dataDir = /^\s*Data\s+(\S+)/.exec(await p.waitForLine((l) => /^\s*Data\s+\//.test(l)))![1]!;
    expect(existsSync(dataDir)).toBe(true);
    // the worker's own endpoints, as `run` serves them
    const metricsUrl = /(http:\/\/\S+)/.exec(
      await p.waitForLine((l) => /^\s*Metrics\s+http:\/\//.test(l)),
    )![1]!;
    expect(await (await fetch(metricsUrl)).text()).toContain('lead_notifier_records_seen_total');

    let got: Summary[] = [];
    await waitFor(
      async () => {
        got = await messages(inboxUrl);
        return got.length > 0;
      },
      20_000,
      'an email in the demo inbox',
      250,
    );
    // It comes from a Lead the generator made after the start, not from the seeded history.
    const leads = (
      (await (await fetch(`${emulatorUrl}/__emulator/records/Lead`)).json()) as {
        records: Array<{ Id: string; Status: string; FirstName: string; LastName: string }>;
      }
    ).records;
    const historic = new Set(leads.filter((l) => l.Status === 'Working - Contacted').map((l) => l.Id));
    expect(historic.size).toBe(4);
    const first = got[got.length - 1]!;
    const recordId = /\.([A-Za-z0-9]{18})@/.exec(first.messageId ?? '')?.[1];
    const lead = leads.find((l) => l.Id === recordId);
    expect(lead, `Message-ID ${first.messageId} names a Lead of the org`).toBeDefined();
    expect(historic.has(lead!.Id)).toBe(false);
    expect(first.subject).toContain(lead!.LastName);
    expect(['new-web-lead', 'lead-owner', 'hot-lead']).toContain(first.rule);
    expect(first.to).toMatch(/@example\.com/);
    // the console tells the story too
    await p.waitForLine((l) => /^\s+lead\s+00Q/.test(l));
    await p.waitForLine((l) => /^\s+mail\s+\S+@example\.com: /.test(l));

    p.kill('SIGINT');
    expect(await p.exit).toBe(0);
    expect(existsSync(dataDir)).toBe(false);
    await expect(fetch(`${inboxUrl}/api/messages`)).rejects.toThrow();
  });

  it('says clearly when the inbox port is taken', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as AddressInfo).port;
    try {
      const r = await runCli(['demo', '--inbox-port', String(port), '--no-generator'], {
        env: { DEMO_HTTP_PORT: '0' },
      });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`port ${port} is already in use`);
      expect(r.stderr).toContain('--inbox-port');
      expect(r.stderr).not.toMatch(/\n\s+at /); // a message, not a stack trace
    } finally {
      blocker.close();
    }
  });

  it('rejects bad options with usage (exit 2)', async () => {
    const r = await runCli(['demo', '--interval', 'soon']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--interval must be a number of seconds');
    const help = await runCli(['demo', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain(
      'lead-notifier demo [--inbox-port N] [--interval SECONDS] [--no-generator]',
    );
  });
});

describe('demo inbox', () => {
  let emails: EmailStore;
  let smtp: CaptureSmtp | undefined;
  let inbox: Inbox | undefined;
  afterEach(async () => {
    await inbox?.close();
    await smtp?.close();
    inbox = smtp = undefined;
  });

  async function deliver(mail: SendMailOptions): Promise<void> {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: smtp!.port,
      secure: false,
      ignoreTLS: true,
    });
    try {
      await transport.sendMail(mail);
    } finally {
      transport.close();
    }
  }

  async function start(): Promise<string> {
    emails = createEmailStore();
    smtp = await startCaptureSmtp(emails, { port: 0 });
    inbox = await startInbox(emails, { port: 0 });
    return inbox.url;
  }

  const hostile = {
    from: 'Lead desk <leads@example.com>',
    to: 'rep@example.com',
    subject: 'New lead: <script>alert("subject")</script> & <b>Co</b>',
    text: 'plain <script>alert("text")</script>',
    html: '<p>Hello</p><script>alert("html")</script><img src=x onerror=alert(1)>',
    priority: 'high' as const,
    attachments: [
      { filename: '<img src=x onerror=alert(1)>.json', content: '{"a":1}', contentType: 'application/json' },
    ],
  };

  it('shows a <script> in subject and body as text on the list and message pages', async () => {
    const url = await start();
    await deliver(hostile);
    await waitFor(() => emails.list().length === 1, 5000, 'the captured email');

    const list = await fetch(`${url}/`);
    expect(list.status).toBe(200);
    const csp = list.headers.get('content-security-policy')!;
    expect(csp).toContain("default-src 'none'");
    const nonce = /script-src 'nonce-([^']+)'/.exec(csp)![1]!;
    const page = await list.text();
    expect(page).toContain(
      'New lead: &lt;script&gt;alert(&quot;subject&quot;)&lt;/script&gt; &amp; &lt;b&gt;Co&lt;/b&gt;',
    );
    expect(page).not.toContain('<script>alert');
    expect(page).not.toContain('<b>Co</b>');
    // the only script is our own, carrying the nonce
    expect(page.match(/<script/g)).toHaveLength(1);
    expect(page).toContain(`<script nonce="${nonce}">`);

    const [summary] = await messages(url);
    expect(summary!.subject).toBe(hostile.subject);
    expect(summary!.importance).toMatch(/high|^1/i);
    const msg = await (await fetch(`${url}/messages/${summary!.id}`)).text();
    expect(msg).not.toMatch(/<script|<img src=x/);
    expect(msg).toContain('plain &lt;script&gt;alert(&quot;text&quot;)&lt;/script&gt;');
    expect(msg).toContain('<iframe class="htmlpart" sandbox=""');
    expect(msg).toContain('&lt;img src=x onerror=alert(1)&gt;.json');

    // the HTML part itself is served as sent, but only under a CSP without scripts, sandboxed
    const part = await fetch(`${url}/messages/${summary!.id}/html`);
    expect(part.headers.get('content-security-policy')).toBe(
      "default-src 'none'; img-src data: cid:; style-src 'unsafe-inline'; frame-ancestors 'self'; sandbox",
    );
    expect(await part.text()).toContain('<p>Hello</p>');

    const att = await fetch(`${url}/messages/${summary!.id}/attachments/0`);
    expect(att.status).toBe(200);
    expect(att.headers.get('content-disposition')).toMatch(/^attachment; filename="/);
    expect(att.headers.get('content-type')).toBe('application/json');
    expect(await att.text()).toBe('{"a":1}');
  });

  it('answers only to loopback host names and only to GET', async () => {
    const url = await start();
    const port = new URL(url).port;
    // DNS rebinding: a page on evil.example that resolves to 127.0.0.1 must not read the inbox
    const res = await new Promise<number>((resolve, reject) => {
      void import('node:http').then(({ request }) => {
        const req = request(
          { host: '127.0.0.1', port, path: '/api/messages', headers: { host: `evil.example:${port}` } },
          (r) => {
            r.resume();
            resolve(r.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end();
      });
    });
    expect(res).toBe(403);
    expect((await fetch(`${url}/api/messages`, { method: 'POST' })).status).toBe(405);
    expect((await fetch(`${url}/messages/99`)).status).toBe(404);
  });

  it('lists newest first', async () => {
    const url = await start();
    for (const n of [1, 2, 3]) await deliver({ ...hostile, subject: `message ${n}`, attachments: [] });
    await waitFor(() => emails.list().length === 3, 5000, 'three emails');
    expect((await messages(url)).map((m) => m.subject)).toEqual(['message 3', 'message 2', 'message 1']);
  });
});
