// dry-run and send-test of a digest rule: the digest the matching records would make now.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { leadFields, startStack } from '../helpers/stack.ts';
import type { Stack } from '../helpers/stack.ts';

let stack: Stack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

describe('digest rules in dry-run and send-test', () => {
  it('dry-run renders one digest of the matching records; send-test sends a digest of a sample', async () => {
    stack = await startStack({
      rule: {
        name: 'web-digest',
        where: "LeadSource = 'Web'",
        digest: { schedule: '0 0 8 * * 1-5', maxRecords: 2 },
        email: {
          from: 'Lead desk <leads@example.com>',
          to: 'managers@example.com',
          subject: '{{count}} new web leads',
          text: '{{#each records}}{{LastName}};{{/each}} and {{more}} more',
        },
      },
    });
    for (let i = 0; i < 3; i++) stack.emu.org.insert('Lead', leadFields(i));
    stack.emu.org.insert('Lead', leadFields(9, { LeadSource: 'Phone Inquiry' }));
    const r = await stack.cli(['dry-run']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('digest of 3 record(s), would go out at 0 0 8 * * 1-5');
    expect(r.stdout).toContain('Subject: 3 new web leads');
    expect(r.stdout).toContain('Body: Last0;Last1; and 1 more');
    expect(existsSync(join(stack.dir, 'notifier.db'))).toBe(false);

    const t = await stack.cli(['send-test', '--rule', 'web-digest', '--to', 'me@example.com']);
    expect(t.code).toBe(0);
    expect(stack.smtp.messages).toHaveLength(1);
    expect(stack.smtp.messages[0]!.parsed.subject).toBe('[test] 1 new web leads');
    expect(stack.smtp.messages[0]!.envelope.rcptTo).toEqual(['me@example.com']);
  });
});
