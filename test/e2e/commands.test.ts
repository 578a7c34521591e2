// The smaller commands as users run them: dry-run writes and sends nothing, check --connect tells
// reachable from unreachable, the emulator command serves an org, every command has --help.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startReceiver } from '../helpers/http-receiver.ts';
import { runCli, startCli } from '../helpers/process.ts';
import { leadFields, startStack } from '../helpers/stack.ts';
import type { Stack } from '../helpers/stack.ts';

let stack: Stack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

describe('commands', () => {
  it('dry-run prints what each rule would send for recent records, and writes and sends nothing', async () => {
    stack = await startStack();
    const id = stack.emu.org.insert('Lead', leadFields(42)).Id;
    stack.emu.org.insert('Lead', leadFields(43, { Email: 'x@example.com' }), {
      createdDate: new Date(Date.now() - 3 * 86_400_000),
    });
    const r = await stack.cli(['dry-run', '--limit', '5']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('rule new-leads: 1 record(s) since');
    expect(r.stdout).toContain(id);
    expect(r.stdout).toContain('Subject: New lead: First42 Last42 (Company 42)');
    expect(r.stdout).toContain(`Message-ID: <new-leads.${id}@example.com>`);
    const json = await stack.cli(['dry-run', '--since', '7d', '--json']);
    expect(JSON.parse(json.stdout)).toHaveLength(2);
    expect(existsSync(join(stack.dir, 'notifier.db'))).toBe(false);
    expect(stack.smtp.messages).toHaveLength(0);
    expect((await stack.cli(['dry-run', '--limit', 'lots'])).code).toBe(2);
  });

  it('check --connect: 0 when Salesforce and SMTP answer, 3 when SMTP does not, 2 for a rule the org rejects', async () => {
    stack = await startStack();
    const ok = await stack.cli(['check', '--connect']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/salesforce ok: authenticated \(client_credentials\)/);
    expect(ok.stdout).toMatch(/rule new-leads: query ok/);
    expect(ok.stdout).toMatch(/smtp ok: 127\.0\.0\.1:\d+/);

    stack.writeConfig({
      ...stack.config,
      rules: [{ ...(stack.config.rules as object[])[0], where: 'NoSuchField__c = 1' }],
    });
    const badRule = await stack.cli(['check', '--connect']);
    expect(badRule.code).toBe(2);
    expect(badRule.stdout).toMatch(/rule new-leads: INVALID_FIELD/);

    stack.writeConfig(stack.config);
    await stack.smtp.close();
    const down = await stack.cli(['check', '--connect']);
    expect(down.code).toBe(3);
    expect(down.stdout).toMatch(/smtp unreachable: 127\.0\.0\.1:\d+: .*ECONNREFUSED/);
  });

  it("channels: dry-run shows each channel's request, check --connect reaches each receiver (3 when one does not answer, its token scrubbed)", async () => {
    const receiver = await startReceiver();
    try {
      const token = 'T000/B000/slackSecretToken77';
      stack = await startStack({
        rule: {
          webhook: { url: `${receiver.url}` },
          slack: {
            webhookUrl: `http://127.0.0.1:${receiver.port}/services/${token}`,
            text: 'New {{LastName}} <b>',
          },
        },
      });
      const id = stack.emu.org.insert('Lead', leadFields(7, { LastName: '<!channel>' })).Id;
      const dry = await stack.cli(['dry-run', '--limit', '5']);
      expect(dry.code).toBe(0);
      expect(dry.stdout).toContain(`${id} [slack] {"text":"New &lt;!channel&gt; <b>"}`);
      expect(dry.stdout).toContain(`${id} [webhook] {`);
      expect(receiver.requests).toHaveLength(0);
      const ok = await stack.cli(['check', '--connect']);
      expect(ok.code).toBe(0);
      expect(ok.stdout).toMatch(/webhook ok: receiver reachable \(rules new-leads\)/);
      expect(ok.stdout).toMatch(/slack ok: receiver reachable/);
      expect(receiver.requests).toHaveLength(0);
      await receiver.close();
      const down = await stack.cli(['check', '--connect']);
      expect(down.code).toBe(3);
      expect(down.stdout).toMatch(/slack unreachable: .*ECONNREFUSED/);
      expect(down.stdout + down.stderr).not.toContain('slackSecretToken77');
    } finally {
      await receiver.close().catch(() => undefined);
    }
  });

  it('emulator --port 0 prints its URL, serves the REST API, and stops on SIGINT', async () => {
    const p = startCli(['emulator', '--port', '0']);
    const line = await p.waitForLine((l) => /^http:\/\/127\.0\.0\.1:\d+$/.test(l));
    const versions = (await (await fetch(`${line}/services/data`)).json()) as Array<{ version: string }>;
    expect(versions.map((v) => v.version)).toContain('62.0');
    p.kill('SIGINT');
    expect(await p.exit).toBe(0);
  });

  it('every command answers --help with its usage; an unknown command exits 2', async () => {
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    const names = [...help.stdout.matchAll(/^ {2}([a-z-]+) {2,}/gm)].map((m) => m[1]!);
    expect(names).toEqual(['run', 'check', 'dry-run', 'status', 'outbox', 'send-test', 'demo', 'emulator']);
    for (const name of names) {
      const r = await runCli([name, '--help']);
      expect(r.code, name).toBe(0);
      expect(r.stdout, name).toContain(`lead-notifier ${name}`);
    }
    const unknown = await runCli(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'frobnicate'");
  }, 60_000);
});
