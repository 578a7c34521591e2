// Graceful shutdown of `lead-notifier run` as a child process: the first SIGTERM turns readiness
// to 503 at once and lets the send in flight finish (recorded sent, exit 0); a second signal exits 1
// at once. The SMTP server holds the send open from its DATA hook, over the real protocol.
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { CliProcess } from '../helpers/process.ts';
import { leadFields, startStack } from '../helpers/stack.ts';
import type { Stack } from '../helpers/stack.ts';

let stack: Stack | undefined;
let proc: CliProcess | undefined;
const releases: (() => void)[] = [];

afterEach(async () => {
  for (const r of releases.splice(0)) r();
  proc?.kill('SIGKILL');
  await proc?.exit;
  proc = undefined;
  await stack?.close();
  stack = undefined;
});

/** An onData hook that waits holdMs (or until released) before accepting; `entered` resolves on the first call. */
function holdingHook(holdMs: number): {
  hook: () => Promise<void>;
  entered: Promise<number>;
  releasedAt: () => number | undefined;
} {
  let enter!: (at: number) => void;
  const entered = new Promise<number>((r) => (enter = r));
  let releasedAt: number | undefined;
  return {
    entered,
    releasedAt: () => releasedAt,
    hook: async () => {
      enter(Date.now());
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, holdMs);
        releases.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
      releasedAt = Date.now();
    },
  };
}

async function startDaemon(s: Stack): Promise<{ p: CliProcess; url: string }> {
  const p = s.run();
  const line = await p.waitForLine((_l, j) => j?.msg === 'http listening', 20_000);
  const url = (JSON.parse(line) as { url: string }).url;
  expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  return { p, url };
}

async function readyz(url: string): Promise<{ status: number; body: { reason: string | null } }> {
  const res = await fetch(`${url}/readyz`);
  return { status: res.status, body: (await res.json()) as { reason: string | null } };
}

async function waitReady(url: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if ((await readyz(url)).status === 200) return;
    if (Date.now() > deadline) throw new Error(`not ready: ${JSON.stringify((await readyz(url)).body)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const httpOn = { http: { enabled: true, host: '127.0.0.1', port: 0 }, shutdownTimeout: '10s' };

describe('lead-notifier run: signals', () => {
  it('SIGTERM during a held send: readiness 503 at once, the send completes and is recorded sent, exit 0', async () => {
    const hold = holdingHook(2000);
    stack = await startStack({ config: httpOn, smtp: { onData: hold.hook } });
    const d = await startDaemon(stack);
    proc = d.p;
    await waitReady(d.url);

    const lead = stack.emu.org.insert('Lead', leadFields(1));
    await hold.entered;
    proc.kill('SIGTERM');
    await proc.waitForLine((_l, j) => j?.msg === 'stopping: no new polls; waiting for in-flight sends', 5000);
    const during = await readyz(d.url);
    expect(during.status).toBe(503);
    expect(during.body.reason).toBe('stopping');
    // liveness stays up while draining: an orchestrator must not kill a draining process
    expect((await fetch(`${d.url}/healthz`)).status).toBe(200);
    expect(hold.releasedAt()).toBeUndefined(); // still mid-send

    const code = await proc.exit;
    expect(code).toBe(0);
    // it waited for the held send instead of cutting it
    expect(hold.releasedAt()).toBeDefined();
    expect(stack.smtp.messages).toHaveLength(1);
    expect(stack.smtp.messages[0]!.messageId).toContain(lead.Id);
    // closed last: the HTTP port no longer answers after exit
    await expect(fetch(`${d.url}/healthz`)).rejects.toThrow();
    const lines = proc.lines.map((l) => JSON.parse(l) as { msg?: string });
    expect(lines.findIndex((l) => l.msg === 'sent')).toBeGreaterThan(-1);
    expect(lines.findIndex((l) => l.msg === 'lead-notifier stopped')).toBeGreaterThan(
      lines.findIndex((l) => l.msg === 'sent'),
    );

    const status = await stack.cli(['status', '--json']);
    expect(status.code).toBe(0);
    const counts = (JSON.parse(status.stdout) as { outbox: { total: Record<string, number> } }).outbox.total;
    expect(counts).toMatchObject({ sent: 1, sending: 0, unknown: 0, pending: 0 });
  });

  it('a second SIGTERM while a send is held exits 1 at once', async () => {
    const hold = holdingHook(30_000);
    stack = await startStack({ config: httpOn, smtp: { onData: hold.hook } });
    const d = await startDaemon(stack);
    proc = d.p;
    await waitReady(d.url);

    stack.emu.org.insert('Lead', leadFields(2));
    await hold.entered;
    proc.kill('SIGTERM');
    await proc.waitForLine((_l, j) => j?.msg === 'stopping: no new polls; waiting for in-flight sends', 5000);
    expect((await readyz(d.url)).status).toBe(503);
    const second = Date.now();
    proc.kill('SIGTERM');
    const code = await proc.exit;
    expect(code).toBe(1);
    expect(Date.now() - second).toBeLessThan(2000);
    expect(hold.releasedAt()).toBeUndefined(); // it did not wait for the send
    expect(proc.lines.some((l) => l.includes('second signal: exiting now'))).toBe(true);
  });

  it('a busy HTTP port stops start-up with exit 1 and a clear message, before the store is opened', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const port = (blocker.address() as AddressInfo).port;
    try {
      stack = await startStack({ config: { ...httpOn, http: { enabled: true, host: '127.0.0.1', port } } });
      proc = stack.run();
      expect(await proc.exit).toBe(1);
      const fatal = proc.lines.find((l) => l.includes('start-up failed'));
      expect(fatal).toContain(`HTTP port 127.0.0.1:${port} is already in use`);
      expect(proc.lines.some((l) => l.includes('lead-notifier started'))).toBe(false);
    } finally {
      await new Promise((r) => blocker.close(r));
    }
  });
});
