// The channels inside the real App with its HTTP server: a rule with email, a webhook and Slack,
// against the org emulator, a capture SMTP server and a node:http receiver. Readiness and
// metrics per channel; a Slack receiver that refuses us opens only Slack's circuit; the channel
// secrets appear in no log line, readiness or metrics output.
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { App } from '../../src/app/app.ts';
import { loadConfig, secretsOf } from '../../src/config/index.ts';
import { Metrics } from '../../src/http/metrics.ts';
import { startHttpServer, type HttpServer } from '../../src/http/server.ts';
import { createLogger } from '../../src/util/log.ts';
import { startReceiver, type Receiver } from '../helpers/http-receiver.ts';
import { waitFor } from '../helpers/process.ts';
import { leadFields, startStack, type Stack } from '../helpers/stack.ts';

const HOOK_SECRET = 'hook-signing-secret-5521';
const HOOK_TOKEN = 'hook-bearer-token-8812';
const SLACK_TOKEN = 'T0SLACK/B0SLACK/slacktokenZZ91';

let stack: Stack | undefined;
let receiver: Receiver | undefined;
let app: App | undefined;
let http: HttpServer | undefined;

afterEach(async () => {
  await app?.stop(1000);
  await http?.close(100);
  await stack?.close();
  await receiver?.close();
  app = undefined;
  http = undefined;
  stack = undefined;
  receiver = undefined;
});

const metric = (text: string, name: string) => {
  const m = new RegExp(`^${name.replace(/[{}"=,]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
};

describe('channels in the App', () => {
  it('Slack refusing us opens only its circuit (readiness names it, metrics show it); email and webhook go once; Slack catches up once fixed', async () => {
    receiver = await startReceiver({ secret: HOOK_SECRET });
    let slackRefuses = true;
    receiver.respond = (q) =>
      q.path.startsWith('/services') && slackRefuses
        ? { status: 403, body: 'invalid_token' }
        : { status: 200, body: 'ok' };
    const base = `http://127.0.0.1:${receiver.port}`;
    stack = await startStack({
      rule: {
        webhook: {
          url: `${base}/hook`,
          secret: HOOK_SECRET,
          headers: { Authorization: `Bearer ${HOOK_TOKEN}` },
        },
        slack: { webhookUrl: `${base}/services/${SLACK_TOKEN}`, text: 'New lead {{LastName}}' },
      },
      config: { delivery: { backoffBaseMs: 200, backoffMaxMs: 2000, circuitRetryMs: 3000 } },
    });
    const config = await loadConfig(stack.configPath);
    const logLines: string[] = [];
    const logger = createLogger({
      level: 'debug',
      format: 'json',
      destination: new Writable({
        write(chunk: Buffer, _enc, cb) {
          logLines.push(...chunk.toString().split('\n').filter(Boolean));
          cb();
        },
      }),
    });
    const metrics = new Metrics({ rules: ['new-leads'], channels: ['email', 'webhook', 'slack'] });
    app = new App(config, { logger, events: metrics.events });
    http = await startHttpServer({
      app,
      host: '127.0.0.1',
      port: 0,
      logger,
      metrics,
      secrets: secretsOf(config),
    });
    await app.start();
    const lead = stack.emu.org.insert('Lead', leadFields(1));

    await waitFor(() => stack!.smtp.messages.length === 1, 20_000, 'the email');
    await waitFor(() => receiver!.requests.some((q) => q.path === '/hook'), 20_000, 'the webhook');
    await waitFor(
      () => app!.channels.get('slack')?.dispatcher.circuit === 'open',
      20_000,
      'the Slack circuit',
    );
    const get = async (path: string) => {
      const res = await fetch(http!.url + path);
      return { status: res.status, body: await res.text() };
    };
    const ready = await get('/readyz');
    expect(ready.status).toBe(503);
    const report = JSON.parse(ready.body) as {
      reason: string;
      components: { smtp: { ok: boolean }; channels: Record<string, { ok: boolean; circuit: string }> };
    };
    expect(report.reason).toContain('slack');
    expect(report.components.smtp.ok).toBe(true);
    expect(report.components.channels.slack).toMatchObject({ ok: false, circuit: 'open' });
    expect(report.components.channels.webhook).toMatchObject({ ok: true, circuit: 'closed' });
    const m = (await get('/metrics')).body;
    expect(metric(m, 'lead_notifier_channel_circuit_open{channel="slack"}')).toBe(1);
    expect(metric(m, 'lead_notifier_channel_circuit_open{channel="webhook"}')).toBe(0);
    expect(metric(m, 'lead_notifier_smtp_circuit_open')).toBe(0);
    expect(metric(m, 'lead_notifier_channel_notifications_total{channel="webhook",outcome="sent"}')).toBe(1);
    expect(metric(m, 'lead_notifier_channel_notifications_total{channel="email",outcome="sent"}')).toBe(1);

    // the receiver accepts Slack again: the probe closes the circuit and the message goes, once
    slackRefuses = false;
    await waitFor(
      () =>
        receiver!.requests.filter((q) => q.path.startsWith('/services')).length > 0 &&
        app!.channels.get('slack')!.dispatcher.circuit === 'closed',
      20_000,
      'the Slack circuit to close',
    );
    await waitFor(async () => (await get('/readyz')).status === 200, 20_000, 'ready again');
    const slackOk = receiver.requests.filter((q) => q.path.startsWith('/services'));
    expect(new Set(slackOk.map((q) => q.headers['idempotency-key']))).toEqual(
      new Set([`new-leads.${lead.Id}`]),
    );
    await new Promise((r) => setTimeout(r, 500));
    expect(stack.smtp.messages).toHaveLength(1);
    expect(receiver.requests.filter((q) => q.path === '/hook')).toHaveLength(1);
    expect(receiver.requests.find((q) => q.path === '/hook')!.signatureOk).toBe(true);

    // no channel secret in logs, readiness or metrics
    const seen = [...logLines, ready.body, m, (await get('/readyz')).body].join('\n');
    for (const secret of [HOOK_SECRET, HOOK_TOKEN, 'slacktokenZZ91']) expect(seen).not.toContain(secret);
  }, 60_000);
});
