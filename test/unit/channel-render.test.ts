// Rendering the channels beside email at enqueue time: each channel its own request body, record
// data escaped for the channel's markup, one channel's template failure kept to its own row.
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/index.ts';
import { compileRule } from '../../src/templates/index.ts';
import { channelsOf, renderNotifications } from '../../src/templates/notifications.ts';
import type { HttpRequestMessage, SourceRecord } from '../../src/types.ts';

function rule(channels: string) {
  const c = parseConfigText(
    `salesforce:
  auth: { flow: client_credentials, clientId: abc, clientSecret: s3cret }
smtp: { host: smtp.example.com, port: 587 }
rules:
  - name: web
${channels}
`,
    'notifier.yaml',
    { env: {} },
  );
  return compileRule(c.rules[0]!, '/nonexistent');
}

const HOSTILE: SourceRecord = {
  object: 'Lead',
  id: '00Q000000000001AAA',
  createdDate: '2026-12-01T10:00:00.000Z',
  systemModstamp: '2026-12-01T10:00:00.000Z',
  fields: {
    FirstName: '<!channel>',
    LastName: 'O"Brien\\", "admin": true, "x": "',
    Company: '*Acme* & [click](https://evil.example) <b>',
    Email: 'x@example.com',
  },
};

function byChannel(rendered: ReturnType<typeof renderNotifications>) {
  return Object.fromEntries(
    rendered.map((n) => [
      'message' in n ? n.channel : `${n.channel}:error`,
      'message' in n ? n.message : n.error,
    ]),
  );
}

describe('channel rendering', () => {
  it('webhook: the record as JSON by default; a template cannot be broken out of by record data', () => {
    const plain = byChannel(
      renderNotifications(rule('    webhook: { url: "https://h.example.com" }'), HOSTILE),
    );
    const msg = plain.webhook as HttpRequestMessage;
    expect(msg).toMatchObject({
      channel: 'webhook',
      rule: 'web',
      idempotencyKey: 'web.00Q000000000001AAA',
      contentType: 'application/json',
    });
    expect(JSON.parse(msg.body)).toMatchObject({ Id: HOSTILE.id, LastName: HOSTILE.fields.LastName });
    const templated = byChannel(
      renderNotifications(
        rule(
          `    webhook: { url: "https://h.example.com", body: '{"name": "{{FirstName}} {{LastName}}", "lead": {{json this}} }' }`,
        ),
        HOSTILE,
        { messageKey: '00Q000000000001AAA.20261201T100000Z' },
      ),
    );
    const t = templated.webhook as HttpRequestMessage;
    const body = JSON.parse(t.body) as Record<string, unknown>;
    expect(Object.keys(body)).toEqual(['name', 'lead']);
    expect(body.name).toBe(`<!channel> ${HOSTILE.fields.LastName as string}`);
    expect((body.lead as Record<string, unknown>).Company).toBe(HOSTILE.fields.Company);
    expect(t.idempotencyKey).toBe('web.00Q000000000001AAA.20261201T100000Z');
  });

  it('Slack: record values escaped for mrkdwn (&, <, >) so <!channel> pings nobody; blocks too', () => {
    const r = rule(`    slack:
      webhookUrl: "https://hooks.slack.com/x"
      text: "<https://crm.example.com|Open> New lead {{FirstName}} ({{Company}})"
      blocks: '[{"type": "section", "text": {"type": "mrkdwn", "text": "*{{LastName}}* {{FirstName}}"}}]'`);
    const msg = byChannel(renderNotifications(r, HOSTILE)).slack as HttpRequestMessage;
    const payload = JSON.parse(msg.body) as { text: string; blocks: { text: { text: string } }[] };
    // the template's own link stays a link; the record's text cannot make one, nor a mention
    expect(payload.text).toBe(
      '<https://crm.example.com|Open> New lead &lt;!channel&gt; (*Acme* &amp; [click](https://evil.example) &lt;b&gt;)',
    );
    expect(payload.text).not.toContain('<!channel>');
    expect(payload.blocks).toHaveLength(1);
    expect(payload.blocks[0]!.text.text).toBe(`*${HOSTILE.fields.LastName as string}* &lt;!channel&gt;`);
  });

  it('Teams: an Adaptive Card (title, text, facts) with record text escaped as Markdown', () => {
    const r = rule(`    teams:
      webhookUrl: "https://example.webhook.office.com/x"
      title: "New lead {{LastName}}"
      text: "**From the web**: {{Company}}"
      fields: { Company: "{{Company}}", Name: "{{FirstName}}" }`);
    const msg = byChannel(renderNotifications(r, HOSTILE)).teams as HttpRequestMessage;
    const payload = JSON.parse(msg.body) as {
      type: string;
      attachments: { contentType: string; content: { type: string; body: Record<string, unknown>[] } }[];
    };
    expect(payload.type).toBe('message');
    const card = payload.attachments[0]!;
    expect(card.contentType).toBe('application/vnd.microsoft.card.adaptive');
    expect(card.content.type).toBe('AdaptiveCard');
    const [title, text, facts] = card.content.body;
    expect(title).toMatchObject({ type: 'TextBlock', weight: 'Bolder' });
    expect(text!.text).toBe(
      '**From the web**: \\*Acme\\* \\& \\[click\\]\\(https://evil\\.example\\) \\<b\\>',
    );
    expect(facts).toEqual({
      type: 'FactSet',
      facts: [
        { title: 'Company', value: '\\*Acme\\* \\& \\[click\\]\\(https://evil\\.example\\) \\<b\\>' },
        { title: 'Name', value: '\\<\\!channel\\>' },
      ],
    });
  });

  it('each channel its own notification; a render failure is that channel only', () => {
    const r = rule(`    email: { from: a@example.com, to: "{{Email}}", subject: s, text: t }
    webhook: { url: "https://h.example.com", body: "not json {{Id}}" }
    slack: { webhookUrl: "https://hooks.slack.com/x", text: "hi {{FirstName}}" }`);
    expect(channelsOf(r)).toEqual(['email', 'webhook', 'slack']);
    const out = byChannel(renderNotifications(r, HOSTILE));
    expect(Object.keys(out).sort()).toEqual(['email', 'slack', 'webhook:error']);
    expect(String(out['webhook:error'])).toContain('webhook.body: did not render valid JSON');
  });
});
