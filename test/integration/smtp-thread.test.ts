// smtp.thread: the daemon runs nodemailer on its main thread by default (SQLite, synchronous
// normal) and on a worker thread with `thread: true`. Both through the real App against the org emulator and a capture SMTP
// server: the mode the App took (its start line says which), every Lead sent once, and the same
// message on the wire from either thread.
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { App } from '../../src/app/app.ts';
import { loadConfig } from '../../src/config/index.ts';
import { createLogger } from '../../src/util/log.ts';
import type { CapturedMessage } from '../helpers/smtp-server.ts';
import { leadFields, startStack, type Stack } from '../helpers/stack.ts';

for (const k of ['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY']) delete process.env[k];

let stack: Stack | undefined;
let app: App | undefined;

afterEach(async () => {
  await app?.stop(2000);
  await stack?.close();
  app = undefined;
  stack = undefined;
});

const N = 25;

/** runs the App with smtp.thread as given (undefined: the default) until N Leads arrived */
async function deliver(
  thread: boolean | undefined,
  storeOptions = '',
): Promise<{ mode: unknown; messages: CapturedMessage[] }> {
  stack = await startStack();
  if (thread !== undefined) stack.config.smtp = { ...(stack.config.smtp as Record<string, unknown>), thread };
  stack.config.store = `${String(stack.config.store)}${storeOptions}`;
  stack.writeConfig(stack.config);
  const config = await loadConfig(stack.configPath);
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    level: 'info',
    format: 'json',
    destination: new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString().split('\n').filter(Boolean))
          lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    }),
  });
  app = new App(config, { logger });
  await app.start();
  stack.emu.org.insertMany(
    'Lead',
    Array.from({ length: N }, (_, i) => leadFields(i)),
  );
  const messages = await stack.smtp.waitFor(N, 30_000);
  // nothing more comes: each Lead once
  await new Promise((r) => setTimeout(r, 1500));
  expect(stack.smtp.messages).toHaveLength(N);
  await app.stop(2000);
  app = undefined;
  await stack.close();
  stack = undefined;
  const started = lines.find((l) => l.msg === 'lead-notifier started');
  return { mode: started?.smtp, messages };
}

/** what a recipient sees of a message, without what differs per send (Date, Message-ID) */
function visible(m: CapturedMessage) {
  const p = m.parsed;
  return {
    envelope: m.envelope,
    subject: p.subject,
    from: p.from?.text,
    to: Array.isArray(p.to) ? p.to.map((a) => a.text) : p.to?.text,
    text: p.text,
    html: p.html,
    contentType: (p.headers.get('content-type') as { value?: string } | undefined)?.value,
  };
}

describe('smtp.thread', () => {
  it('defaults to the main thread; true runs nodemailer on a worker thread; both send each Lead once, the same message', async () => {
    const onMain = await deliver(undefined);
    expect(onMain.mode).toBe('main thread');
    const threaded = await deliver(true);
    expect(threaded.mode).toBe('worker thread');
    const bySubject = (ms: CapturedMessage[]) =>
      new Map(ms.map((m) => [String(m.parsed.subject), visible(m)]));
    const a = bySubject(threaded.messages);
    const b = bySubject(onMain.messages);
    expect(a.size).toBe(N);
    expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
    for (const [subject, m] of a) expect(b.get(subject)).toEqual(m);
  }, 90_000);

  it('defaults to the worker thread with SQLite synchronous=full (its fsyncs would stall the sockets); false overrides that', async () => {
    expect((await deliver(undefined, '?synchronous=full')).mode).toBe('worker thread');
    expect((await deliver(false, '?synchronous=full')).mode).toBe('main thread');
  }, 90_000);
});
