// The demo inbox in a real headless Chromium (Debian's `chromium` package, driven by
// playwright-core): a generated Lead appears in the list by itself (the page refreshes every
// 2 s), clicking it shows the HTML part in the sandboxed iframe with record data as text, and a
// script inside an email never runs. CI installs the browser with `apt-get install -y chromium`.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { chromium } from 'playwright-core';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemo } from '../../src/demo/demo.ts';
import type { Demo } from '../../src/demo/demo.ts';
import { waitFor } from '../helpers/process.ts';

const CHROMIUM = '/usr/bin/chromium';
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const HAVE_CHROMIUM = existsSync(CHROMIUM);
const TITLE = HAVE_CHROMIUM
  ? 'demo inbox in headless Chromium'
  : `demo inbox in headless Chromium (skipped: ${CHROMIUM} is not installed; apt-get install -y chromium)`;

describe(TITLE, () => {
  let demo: Demo | undefined;
  let browser: Browser | undefined;

  beforeAll(async () => {
    if (!HAVE_CHROMIUM) return;
    demo = await startDemo({
      inboxPort: 0,
      smtpPort: 0,
      generator: false,
      out: () => undefined,
      env: { ...process.env, DEMO_HTTP_PORT: '0' },
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await demo?.stop();
  });

  it.skipIf(!HAVE_CHROMIUM)(
    'shows a generated Lead as an email and renders its HTML part in the sandboxed iframe',
    async () => {
      const d = demo!;
      const page = await browser!.newPage({ viewport: { width: 1280, height: 900 } });
      const dialogs: string[] = [];
      page.on('dialog', (dlg) => {
        dialogs.push(dlg.message());
        void dlg.dismiss();
      });
      await page.goto(d.inboxUrl);
      expect(await page.locator('#empty').isVisible()).toBe(true);

      // A generated Lead that came through the web form: the new-web-lead rule has an HTML part.
      let web: { id: string; lead: Record<string, unknown> } | undefined;
      for (let i = 0; i < 20 && !web; i++) {
        const added = d.addLead();
        if (added.lead.LeadSource === 'Web') web = added;
      }
      expect(web, 'the generator makes web Leads').toBeDefined();
      const lastName = String(web!.lead.LastName);
      const company = String(web!.lead.Company);

      // The page was loaded before the email existed: the 2 s refresh brings it in.
      const row = page.locator('tr.msg', { hasText: `New web lead:` }).filter({ hasText: lastName });
      await row.first().waitFor({ timeout: 15_000 });
      expect(await page.locator('#empty').isHidden()).toBe(true);
      const listShot = join(tmpdir(), `lead-notifier-demo-inbox-list-${process.pid}.png`);
      await page.screenshot({ path: listShot, fullPage: true });

      await row.first().locator('td.subject a').click();
      await page.waitForURL(/\/messages\/\d+$/);
      const iframe = page.locator('iframe.htmlpart');
      expect(await iframe.getAttribute('sandbox')).toBe('');
      const frame = page.frameLocator('iframe.htmlpart');
      await frame.locator('body', { hasText: lastName }).waitFor({ timeout: 5000 });
      const rendered = await frame.locator('body').innerText();
      // Record data is text inside the email: a company like `<b>Bold</b> & Sons` shows its tags.
      const squash = (t: string): string => t.replace(/\s+/g, ' ').trim();
      expect(squash(rendered)).toContain(squash(company));
      expect(await frame.locator('b, script, svg, img').count()).toBe(0);
      expect(await page.locator('.msgview h1').innerText()).toContain(lastName);
      expect(await page.locator('ul.att a').innerText()).toBe(`lead-${web!.id}.json`);

      const shot = join(tmpdir(), `lead-notifier-demo-inbox-${process.pid}.png`);
      await page.screenshot({ path: shot, fullPage: true });
      for (const file of [listShot, shot]) {
        expect(statSync(file).size).toBeGreaterThan(5000);
        expect(readFileSync(file).subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
      }

      // An email whose HTML carries scripts: nothing runs, in the frame or in the page.
      const transport = nodemailer.createTransport({ host: '127.0.0.1', port: d.smtpPort, ignoreTLS: true });
      await transport.sendMail({
        from: 'x@example.com',
        to: 'y@example.com',
        subject: 'scripted <script>alert("subject")</script>',
        html: '<p id="p">static</p><script>document.getElementById("p").textContent = "SCRIPT RAN"; alert(1)</script><img src="x" onerror="alert(2)">',
      });
      transport.close();
      await waitFor(
        () => d.emails.list().some((e) => e.subject.startsWith('scripted')),
        5000,
        'the scripted email',
      );
      await page.goto(d.inboxUrl);
      await page.locator('tr.msg', { hasText: 'scripted <script>' }).locator('td.subject a').click();
      const p = page.frameLocator('iframe.htmlpart').locator('#p');
      await p.waitFor({ timeout: 5000 });
      expect(await p.innerText()).toBe('static');
      await page.waitForTimeout(300);
      expect(dialogs).toEqual([]);
      await page.close();
    },
  );
});
