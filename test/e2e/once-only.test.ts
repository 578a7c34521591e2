// The daemon as users run it (`lead-notifier run` as a child process) against the org emulator
// over HTTP and a real SMTP server on loopback: every new record is emailed exactly once.
import { afterEach, describe, expect, it } from 'vitest';
import { runCli, waitFor } from '../helpers/process.ts';
import type { CliProcess } from '../helpers/process.ts';
import { startCaptureServer } from '../helpers/smtp-server.ts';
import { leadFields, startStack, teardown } from '../helpers/stack.ts';
import type { Stack } from '../helpers/stack.ts';

let stack: Stack | undefined;
let proc: CliProcess | undefined;

afterEach(async () => {
  await teardown(proc, stack);
  proc = undefined;
  stack = undefined;
});

/** Message-IDs are <rule.recordId@domain>: count deliveries per record id. */
function deliveriesByRecord(s: Stack, rule = 'new-leads'): Map<string, number> {
  const counts = new Map<string, number>();
  for (const m of s.smtp.messages) {
    const match = /^<([^.]+)\.([A-Za-z0-9]{18})@/.exec(m.messageId ?? '');
    if (!match || match[1] !== rule) continue;
    counts.set(match[2]!, (counts.get(match[2]!) ?? 0) + 1);
  }
  return counts;
}

async function started(p: CliProcess): Promise<void> {
  await p.waitForLine((_l, j) => j?.msg === 'poll', 20_000);
}

function secondsAgo(s: number): Date {
  return new Date(Math.floor(Date.now() / 1000) * 1000 - s * 1000);
}

describe('lead-notifier run, end to end', () => {
  it('emails 2,500 leads exactly once: late commits, a shared CreatedDate across a page boundary, nothing historic', async () => {
    // startFrom 5 minutes back: late commits must land between the floor and the cursor.
    // lookback 2m: sweeps every 30 s (min(60 s, lookback / 4)).
    const startFrom = secondsAgo(300);
    stack = await startStack({ rule: { lookback: '2m', startFrom: startFrom.toISOString() } });
    const { emu } = stack;
    // Historic leads: created before startFrom, never notified.
    const historic = emu.org.insertMany(
      'Lead',
      Array.from({ length: 50 }, (_, i) => leadFields(-i - 1)),
      { createdDate: secondsAgo(360) },
    );
    proc = stack.run();
    await started(proc);

    const ids: string[] = [];
    // 1,900 leads then 300 sharing one CreatedDate second: one poll reads 2,200 records and the
    // page boundary at 2,000 falls inside the shared second.
    // (Both batches carry timestamps a second or two old: committed a moment late.)
    const first = emu.org.insertMany(
      'Lead',
      Array.from({ length: 1900 }, (_, i) => leadFields(i)),
      { createdDate: secondsAgo(2) },
    );
    const shared = emu.org.insertMany(
      'Lead',
      Array.from({ length: 300 }, (_, i) => leadFields(1900 + i)),
      { createdDate: secondsAgo(1) },
    );
    ids.push(...first.map((r) => r.Id), ...shared.map((r) => r.Id));
    await waitFor(() => stack!.smtp.messages.length >= 1000, 60_000, 'the first deliveries');
    // 100 late-committing records: CreatedDate a minute or more behind the cursor, inside the lookback.
    for (let i = 0; i < 100; i++) {
      ids.push(emu.org.insert('Lead', leadFields(2200 + i), { createdDate: secondsAgo(60 + (i % 50)) }).Id);
    }
    // 200 more over a few seconds, as a web form would.
    for (let b = 0; b < 10; b++) {
      for (let i = 0; i < 20; i++) ids.push(emu.org.insert('Lead', leadFields(2300 + b * 20 + i)).Id);
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(ids).toHaveLength(2500);

    await waitFor(() => stack!.smtp.messages.length >= 2500, 90_000, '2,500 deliveries').catch(
      (e: unknown) => {
        const got = deliveriesByRecord(stack!);
        const lost = ids.filter((id) => !got.has(id));
        throw new Error(
          `${String(e)}: ${stack!.smtp.messages.length} received; missing ${lost.length}, e.g. ${lost.slice(0, 3).join(' ')}\n` +
            proc!.lines
              .filter((l) => !l.includes('"msg":"sent"'))
              .slice(-12)
              .join('\n'),
        );
      },
    );
    // A few more poll cycles: the lookback re-reads everything again and must send nothing new.
    await new Promise((r) => setTimeout(r, 3000));
    const counts = deliveriesByRecord(stack);
    const missing = ids.filter((id) => !counts.has(id));
    const twice = [...counts].filter(([, n]) => n > 1);
    expect(missing).toEqual([]);
    expect(twice).toEqual([]);
    expect(stack.smtp.messages).toHaveLength(2500);
    for (const h of historic) expect(counts.has(h.Id)).toBe(false);

    proc.kill('SIGTERM');
    expect(await proc.exit).toBe(0);
    const status = await stack.cli(['status', '--json']);
    expect(status.code).toBe(0);
    const parsed = JSON.parse(status.stdout) as { outbox: { total: Record<string, number> } };
    expect(parsed.outbox.total.sent).toBe(2500);
    expect(parsed.outbox.total.pending! + parsed.outbox.total.failed! + parsed.outbox.total.dead!).toBe(0);
  }, 180_000);

  // both ways nodemailer runs: on the daemon's main thread (the default) and on its own thread
  for (const thread of [false, true]) {
    it(`survives kill -9 ten times during 2,000 new leads${thread ? ' (smtp.thread: true)' : ''}: none missed, none twice, at most one uncertain row per connection per kill`, async () => {
      stack = await startStack({ rule: { lookback: '10m' } });
      if (thread) {
        stack.config.smtp = { ...(stack.config.smtp as Record<string, unknown>), thread: true };
        stack.writeConfig(stack.config);
      }
      const connections = (stack.config.smtp as { pool: { maxConnections: number } }).pool.maxConnections;
      const { emu } = stack;
      proc = stack.run();
      await started(proc);
      const ids: string[] = [];
      let creating = true;
      const creator = (async () => {
        for (let b = 0; b < 40; b++) {
          for (let i = 0; i < 50; i++) ids.push(emu.org.insert('Lead', leadFields(b * 50 + i)).Id);
          await new Promise((r) => setTimeout(r, 150));
        }
        creating = false;
      })();
      // After each kill, before the restart recovers them: the rows the dead process left `sending`
      // are the ones that will be reported uncertain. Rows it had only claimed ahead must not be
      // among them: only a row handed to a connection is `sending`, one per connection at most.
      const perKill: string[][] = [];
      for (let k = 0; k < 10; k++) {
        await new Promise((r) => setTimeout(r, 300 + Math.random() * 900));
        proc.kill('SIGKILL');
        await proc.exit;
        const left = await stack.cli(['outbox', 'list', '--state', 'sending', '--json', '--limit', '10000']);
        expect(left.code).toBe(0);
        perKill.push((JSON.parse(left.stdout) as Array<{ recordId: string }>).map((r) => r.recordId));
        proc = stack.run();
        await started(proc);
      }
      await creator;
      expect(creating).toBe(false);
      expect(ids).toHaveLength(2000);

      const settled = async () => {
        const s = await stack!.cli(['status', '--json']);
        const st = JSON.parse(s.stdout) as { outbox: { total: Record<string, number> } };
        const t = st.outbox.total;
        return t.sent! + t.unknown! + t.dead! === 2000 && t.pending === 0 && t.sending === 0;
      };
      await waitFor(settled, 90_000, 'every lead to be sent or reported', 1000);
      proc.kill('SIGTERM');
      expect(await proc.exit).toBe(0);

      const status = JSON.parse((await stack.cli(['status', '--json'])).stdout) as {
        outbox: { total: Record<string, number> };
        uncertain: Array<{ recordId: string }>;
      };
      const uncertain = new Set(status.uncertain.map((u) => u.recordId));
      expect(status.outbox.total.dead).toBe(0);
      expect(uncertain.size).toBe(status.outbox.total.unknown);
      const counts = deliveriesByRecord(stack);
      const twice = [...counts].filter(([, n]) => n > 1);
      expect(twice).toEqual([]);
      // Every lead was delivered, or is listed as uncertain (the process died mid-send).
      const missing = ids.filter((id) => !counts.has(id) && !uncertain.has(id));
      expect(missing).toEqual([]);
      // The uncertain rows are exactly those the kills left mid-send, at most one per connection each.
      for (const left of perKill) expect(left.length).toBeLessThanOrEqual(connections);
      expect([...uncertain].sort()).toEqual(perKill.flat().sort());
      const report = perKill.map(
        (left, k) =>
          `kill ${k + 1}: ${left.length} unknown, ${left.filter((id) => counts.has(id)).length} arrived`,
      );
      console.log(
        `kill -9 x10 with ${connections} connections${thread ? ', smtp.thread' : ''}: ${counts.size} delivered, ${uncertain.size} uncertain ` +
          `(of which ${[...uncertain].filter((id) => counts.has(id)).length} had in fact arrived)\n  ${report.join('\n  ')}`,
      );
    }, 240_000);
  }

  it('Salesforce faults mid-run (expired session, REQUEST_LIMIT_EXCEEDED, 503 bursts, non-JSON reply): nothing lost, nothing twice', async () => {
    stack = await startStack();
    const { emu } = stack;
    proc = stack.run();
    await started(proc);
    const ids: string[] = [];
    const batch = (n: number, from: number) => {
      for (let i = 0; i < n; i++) ids.push(emu.org.insert('Lead', leadFields(from + i)).Id);
    };
    const pollsSoFar = () => proc!.lines.filter((l) => l.includes('"msg":"poll"')).length;
    const nextPolls = async (n: number) => {
      const target = pollsSoFar() + n;
      await waitFor(() => pollsSoFar() >= target, 30_000, `${n} more polls`);
    };

    batch(50, 0);
    emu.control.expireSessions(); // jsforce refreshes through our refreshFn
    await nextPolls(2);
    batch(50, 100);
    // a 503 burst longer than jsforce's own retries: the poll fails, the next one catches up
    emu.control.addFault({ path: '/query', status: 503, errorCode: 'SERVER_UNAVAILABLE', count: 8 });
    await proc.waitForLine(
      (_l, j) => j?.msg === 'poll failed; cursor unchanged, retried on the next tick',
      30_000,
    );
    batch(50, 200);
    // a maintenance page instead of JSON
    emu.control.addFault({
      path: '/query',
      status: 200,
      body: '<html><body>Down for maintenance</body></html>',
      contentType: 'text/html',
      count: 2,
    });
    await nextPolls(1);
    batch(50, 300);
    // the org's API allocation runs out: polling pauses with the cursor unmoved
    const limits = emu.control.limits();
    emu.control.setLimits({ used: limits.max });
    await proc.waitForLine(
      (_l, j) => typeof j?.msg === 'string' && j.msg.includes('REQUEST_LIMIT_EXCEEDED'),
      30_000,
    );
    batch(50, 400);
    await new Promise((r) => setTimeout(r, 2000));
    emu.control.setLimits({ used: 0 });
    // resumes after its back-off (15 s) and catches up
    await waitFor(() => stack!.smtp.messages.length >= 250, 60_000, '250 deliveries');
    await nextPolls(3);
    const counts = deliveriesByRecord(stack);
    expect(ids.filter((id) => !counts.has(id))).toEqual([]);
    expect([...counts].filter(([, n]) => n > 1)).toEqual([]);
    expect(stack.smtp.messages).toHaveLength(250);
    // the cursor never passed a record it had not enqueued: it is at the newest CreatedDate seen
    // (the org keeps datetimes as epoch milliseconds)
    const newest = Math.max(...ids.map((id) => Number(emu.org.get('Lead', id)!.values.CreatedDate)));
    const status = JSON.parse((await stack.cli(['status', '--json'])).stdout) as {
      checkpoints: Array<{ watermark: string }>;
    };
    expect(Date.parse(status.checkpoints[0]!.watermark)).toBe(newest);
  }, 120_000);

  it('the SMTP server down for a minute: everything is delivered once it returns', async () => {
    stack = await startStack({ config: { delivery: { circuitRetryMs: 2000, maxAttempts: 3 } } });
    const { emu } = stack;
    proc = stack.run();
    await started(proc);
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push(emu.org.insert('Lead', leadFields(i)).Id);
    await waitFor(() => stack!.smtp.messages.length >= 20, 20_000, 'the first 20');
    const first = stack.smtp;
    const port = first.port;
    await first.close();
    const down = Date.now();
    for (let i = 20; i < 50; i++) {
      ids.push(emu.org.insert('Lead', leadFields(i)).Id);
      await new Promise((r) => setTimeout(r, 1000));
    }
    await new Promise((r) => setTimeout(r, Math.max(0, 60_000 - (Date.now() - down))));
    // nothing given up on while it was away (maxAttempts is 3: attempts must not have been spent)
    const during = JSON.parse((await stack.cli(['status', '--json'])).stdout) as {
      outbox: { total: Record<string, number> };
    };
    expect(during.outbox.total.dead).toBe(0);
    expect(during.outbox.total.sent).toBe(20);
    stack.smtp = await startCaptureServer({ port });
    await waitFor(() => stack!.smtp.messages.length >= 30, 30_000, 'the 30 held back');
    await new Promise((r) => setTimeout(r, 2000));
    const all = [...first.messages, ...stack.smtp.messages];
    const seen = new Map<string, number>();
    for (const m of all) seen.set(m.messageId ?? '', (seen.get(m.messageId ?? '') ?? 0) + 1);
    expect(all).toHaveLength(50);
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
    for (const id of ids) expect(seen.get(`<new-leads.${id}@example.com>`)).toBe(1);
  }, 150_000);

  it('hostile record data: HTML escaped, no injected header, foreign recipient blocked', async () => {
    stack = await startStack({
      rule: {
        select: ['FirstName', 'LastName', 'Company', 'Email'],
        email: {
          from: 'Lead desk <leads@example.com>',
          to: '{{Email}}',
          cc: 'sales@example.com',
          subject: 'New lead: {{FirstName}} {{LastName}}',
          html: '<p>{{FirstName}} {{LastName}} from {{Company}}</p>',
          text: '{{FirstName}} {{LastName}}',
        },
        allowRecipients: ['*@example.com'],
      },
    });
    proc = stack.run();
    await started(proc);
    const good = stack.emu.org.insert('Lead', {
      FirstName: '<script>alert(1)</script>',
      LastName: 'Smith\r\nBcc: evil@attacker.example',
      Company: '"><img src=x onerror=alert(1)>',
      Email: 'buyer@example.com',
    });
    const foreign = stack.emu.org.insert('Lead', {
      FirstName: 'Eve',
      LastName: 'Evil',
      Company: 'Attacker',
      Email: 'victim@attacker.example',
    });
    await waitFor(() => stack!.smtp.messages.length >= 1, 20_000, 'the good lead');
    await waitFor(
      async () => {
        const s = JSON.parse((await stack!.cli(['status', '--json'])).stdout) as {
          outbox: { total: Record<string, number> };
        };
        return s.outbox.total.dead === 1;
      },
      20_000,
      'the foreign recipient to be dead-lettered',
    );
    expect(stack.smtp.messages).toHaveLength(1);
    const m = stack.smtp.messages[0]!;
    expect(m.messageId).toContain(good.Id);
    expect(m.envelope.rcptTo.sort()).toEqual(['buyer@example.com', 'sales@example.com']);
    expect(m.parsed.headers.has('bcc')).toBe(false);
    expect(m.parsed.subject).toBe('New lead: <script>alert(1)</script> Smith Bcc: evil@attacker.example');
    expect(m.parsed.html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(m.parsed.html).not.toContain('<script>');
    expect(m.parsed.html).not.toContain('<img');
    // (the text body may show the line break; the header block must not)
    const headerBlock = m.raw.toString('utf8').split('\r\n\r\n')[0]!;
    expect(headerBlock).not.toMatch(/^Bcc:/im);
    expect(headerBlock).toMatch(/^Subject: /m);
    const status = JSON.parse((await stack.cli(['status', '--json'])).stdout) as {
      lastErrors: Array<{ recordId: string; state: string; lastError: string }>;
    };
    const dead = status.lastErrors.find((e) => e.recordId === foreign.Id);
    expect(dead?.state).toBe('dead');
    expect(dead?.lastError).toMatch(/victim@attacker\.example/);
  }, 60_000);
});

describe('lead-notifier check', () => {
  it('exits 2 with file, line and key path for a bad config', async () => {
    stack = await startStack();
    const bad = { ...stack.config, smtp: { ...(stack.config.smtp as object), port: 'twenty-five' } };
    stack.writeConfig(bad);
    const r = await runCli(['check', '-c', stack.configPath]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/notifier\.yaml:\d+ smtp\.port: /);
  });
});
