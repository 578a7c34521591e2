import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { simpleParser, type ParsedMail } from 'mailparser';
import MailComposer from 'nodemailer/lib/mail-composer';
import { afterAll, describe, expect, it } from 'vitest';
import { ruleSchema, type RuleConfig } from '../../src/config/schema.ts';
import { isValidId } from '../../src/sources/salesforce/ids.ts';
import {
  compileRule,
  RenderError,
  renderMessage,
  sampleRecord,
  TemplateError,
  type CompiledRule,
} from '../../src/templates/index.ts';
import {
  defaultHelper,
  formatDate,
  join,
  json,
  lower,
  truncate,
  upper,
  eq,
} from '../../src/templates/helpers.ts';
import type { RenderedMessage, SourceRecord } from '../../src/types.ts';

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/templates');
const NOW = new Date('2024-05-01T12:34:56.000Z');

function rule(overrides: Record<string, unknown> = {}, email: Record<string, unknown> = {}): RuleConfig {
  return ruleSchema.parse({
    name: 'new-web-leads',
    object: 'Lead',
    select: ['FirstName', 'LastName', 'Company', 'Email', 'LeadSource', 'Owner.Email'],
    ...overrides,
    email: {
      from: 'Lead desk <leads@example.com>',
      to: '{{Owner.Email}};sales@example.com',
      subject: 'New lead: {{FirstName}} {{LastName}} ({{Company}})',
      text: 'Hello {{FirstName}}',
      ...email,
    },
  });
}

function lead(fields: Record<string, unknown> = {}, id = '00Q5g00000AbCdEAAV'): SourceRecord {
  return {
    object: 'Lead',
    id,
    createdDate: '2024-05-01T12:00:00.000+0000',
    systemModstamp: '2024-05-01T12:00:00.000+0000',
    fields: {
      attributes: { type: 'Lead', url: `/services/data/v62.0/sobjects/Lead/${id}` },
      Id: id,
      FirstName: 'Ada',
      LastName: 'Lovelace',
      Company: 'Analytical Engines Ltd',
      Email: 'ada@example.com',
      LeadSource: 'Web',
      Owner: { Email: 'owner@example.com' },
      ...fields,
    },
  };
}

function render(r: RuleConfig, record: SourceRecord = lead()): RenderedMessage {
  return renderMessage(compileRule(r, FIXTURES), record, { now: NOW });
}

function renderError(fn: () => unknown): RenderError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(RenderError);
    return err as RenderError;
  }
  throw new Error('expected a RenderError');
}

function templateError(fn: () => unknown): TemplateError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TemplateError);
    return err as TemplateError;
  }
  throw new Error('expected a TemplateError');
}

/** Builds the MIME exactly as the SMTP sink would hand it over, and parses it like a receiver. */
async function roundTrip(m: RenderedMessage): Promise<{ raw: string; parsed: ParsedMail }> {
  const composer = new MailComposer({
    messageId: m.messageId,
    from: m.from,
    to: m.to,
    cc: m.cc,
    bcc: m.bcc,
    ...(m.replyTo ? { replyTo: m.replyTo } : {}),
    subject: m.subject,
    ...(m.text !== undefined ? { text: m.text } : {}),
    ...(m.html !== undefined ? { html: m.html } : {}),
    headers: m.headers,
    attachments: m.attachments.map((a) => ({
      filename: a.filename,
      content: a.content,
      ...(a.contentType ? { contentType: a.contentType } : {}),
      ...(a.encoding ? { encoding: a.encoding } : {}),
      ...(a.cid ? { cid: a.cid } : {}),
    })),
    date: NOW,
  });
  const buf = await composer.compile().build();
  return { raw: buf.toString('utf8'), parsed: await simpleParser(buf) };
}

/** The top-level header block of a raw message, unfolded, one entry per header. */
function topHeaderNames(raw: string): string[] {
  const head = raw.slice(0, raw.indexOf('\r\n\r\n'));
  return head
    .split('\r\n')
    .filter((line) => !/^[ \t]/.test(line))
    .map((line) => line.slice(0, line.indexOf(':')).toLowerCase());
}

const tmpDirs: string[] = [];
function tmpDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ln-templates-'));
  tmpDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('renderMessage: context and basics', () => {
  it('renders fields, nested relationships, rule, now and record', () => {
    const m = render(
      rule(
        {},
        {
          text: '{{FirstName}} {{Owner.Email}} {{rule.name}} {{rule.object}} {{now}} {{record.Company}} {{Id}} [{{NoSuchField}}] [{{Owner.NoSuch}}]',
        },
      ),
    );
    expect(m.text).toBe(
      'Ada owner@example.com new-web-leads Lead 2024-05-01T12:34:56.000Z Analytical Engines Ltd 00Q5g00000AbCdEAAV [] []',
    );
    expect(m.from).toBe('"Lead desk" <leads@example.com>');
    expect(m.to).toEqual(['owner@example.com', 'sales@example.com']);
    expect(m.cc).toEqual([]);
    expect(m.bcc).toEqual([]);
    expect(m.subject).toBe('New lead: Ada Lovelace (Analytical Engines Ltd)');
    expect(m.headers).toEqual({});
    expect(m.attachments).toEqual([]);
    expect(m.html).toBeUndefined();
    // JSON-serialisable, as the outbox stores it
    expect(JSON.parse(JSON.stringify(m))).toEqual(m);
  });

  it('fills Id/CreatedDate from the SourceRecord when the fields lack them; rule and now shadow fields', () => {
    const record = lead({ rule: 'field-rule', now: 'field-now' });
    delete record.fields.Id;
    const m = render(
      rule({}, { text: '{{Id}}|{{CreatedDate}}|{{rule.name}}|{{now}}|{{record.rule}}' }),
      record,
    );
    expect(m.text).toBe(
      '00Q5g00000AbCdEAAV|2024-05-01T12:00:00.000+0000|new-web-leads|2024-05-01T12:34:56.000Z|field-rule',
    );
  });

  it('{{json this}} prints the record fields only (no rule, now, record, attributes)', () => {
    const m = render(rule({}, { text: '{{json this}}' }));
    const printed = JSON.parse(m.text ?? '');
    expect(Object.keys(printed).sort()).toEqual(
      [
        'Company',
        'CreatedDate',
        'Email',
        'FirstName',
        'Id',
        'LastName',
        'LeadSource',
        'Owner',
        'SystemModstamp',
      ].sort(),
    );
    expect(printed.Owner).toEqual({ Email: 'owner@example.com' });
    expect(m.text).toBe(render(rule({}, { text: '{{json record}}' })).text);
    // #each over the root sees fields and our keys, never the internal marker
    const each = render(rule({}, { text: '{{#each this}}{{@key}},{{/each}}' }));
    expect(each.text).toBe(
      'Id,CreatedDate,SystemModstamp,FirstName,LastName,Company,Email,LeadSource,Owner,rule,now,record,',
    );
  });

  it('keeps prototype access disabled', () => {
    const m = render(
      rule(
        {},
        {
          text: '[{{constructor}}][{{__proto__}}][{{FirstName.constructor.name}}][{{lookup this "toString"}}]',
        },
      ),
    );
    expect(m.text).toBe('[][][][]');
  });

  it('compiles once: a template file changed after compileRule does not change renders', () => {
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, 'body.txt.hbs'), 'v1 {{FirstName}}');
    const compiled = compileRule(rule({}, { text: 'body.txt.hbs' }), dir);
    fs.writeFileSync(path.join(dir, 'body.txt.hbs'), 'v2 {{FirstName}}');
    expect(renderMessage(compiled, lead(), { now: NOW }).text).toBe('v1 Ada');
    expect(renderMessage(compiled, lead({ FirstName: 'Grace' }), { now: NOW }).text).toBe('v1 Grace');
  });
});

describe('renderMessage: hostile record data', () => {
  const hostile = {
    FirstName: '<script>alert(1)</script>',
    LastName: 'Subject\r\nBcc: evil@x.com',
    Company: '"><img src=x onerror=alert(1)>',
  };

  it('escapes HTML in html, not in text', () => {
    const m = render(
      rule({}, { html: '<p>{{FirstName}} {{Company}}</p>', text: '{{FirstName}} & {{Company}}' }),
      lead(hostile),
    );
    expect(m.html).toBe(
      '<p>&lt;script&gt;alert(1)&lt;/script&gt; &quot;&gt;&lt;img src&#x3D;x onerror&#x3D;alert(1)&gt;</p>',
    );
    expect(m.text).toBe('<script>alert(1)</script> & "><img src=x onerror=alert(1)>');
  });

  it('makes single-line fields single-line: CR/LF, NUL, NEL and U+2028 become spaces', () => {
    const m = render(
      rule({}, { subject: 'Lead {{LastName}}', headers: { 'X-Lead-Name': '{{LastName}} {{FirstName}}' } }),
      lead({ LastName: 'Subject\r\nBcc: evil@x.com', FirstName: 'a\u0085b\u2028c\u0000d\te' }),
    );
    expect(m.subject).toBe('Lead Subject Bcc: evil@x.com');
    expect(m.headers['X-Lead-Name']).toBe('Subject Bcc: evil@x.com a b c d e');
  });

  it('end to end: the MIME built from it has exactly the expected headers, no Bcc, no injected lines', async () => {
    const m = render(
      rule(
        {},
        {
          subject: 'New lead: {{FirstName}} {{LastName}}',
          html: '<p>{{FirstName}} {{Company}}</p>',
          importance: 'high',
          headers: { 'X-Lead-Name': '{{LastName}}' },
          replyTo: '"{{LastName}}" <reply@example.com>',
        },
      ),
      lead(hostile),
    );
    const { raw, parsed } = await roundTrip(m);
    expect(topHeaderNames(raw).sort()).toEqual(
      [
        'content-type',
        'date',
        'from',
        'importance',
        'message-id',
        'mime-version',
        'reply-to',
        'subject',
        'to',
        'x-lead-name',
        'x-priority',
      ].sort(),
    );
    expect(parsed.headers.has('bcc')).toBe(false);
    expect(parsed.subject).toBe('New lead: <script>alert(1)</script> Subject Bcc: evil@x.com');
    expect(parsed.headers.get('x-lead-name')).toBe('Subject Bcc: evil@x.com');
    expect(raw).not.toMatch(/\r\nBcc:/i);
    expect(parsed.html).toContain('&lt;script&gt;');
    expect(parsed.html).not.toContain('<script>');
    expect(parsed.html).not.toContain('<img');
    // the display name from the record is a quoted name, not a header or a second address
    expect(parsed.replyTo?.value).toEqual([
      { address: 'reply@example.com', name: 'Subject Bcc: evil@x.com' },
    ]);
  });

  it('markup in a display name cannot become an address: EADDRESS', () => {
    const err = renderError(() =>
      render(
        rule({}, { replyTo: '{{FirstName}} <reply@example.com>' }),
        lead({ FirstName: '<script>alert(1)</script>' }),
      ),
    );
    expect(err.code).toBe('EADDRESS');
    expect(err.keyPath).toBe('email.replyTo');
  });

  it('MIME encoded-words in record data stay literal text after a receiver decodes them', async () => {
    const smuggled = `=?utf-8?B?${Buffer.from('x\r\nBcc: evil@x.com').toString('base64')}?=`;
    const m = render(
      rule({}, { subject: 'Lead {{LastName}}', to: '{{FirstName}} <a@example.com>' }),
      lead({ LastName: smuggled, FirstName: '=?utf-8?Q?evil=0D=0Aevil?=' }),
    );
    const { parsed } = await roundTrip(m);
    // the receiver shows the characters the record held (a zero-width space breaks the syntax)
    expect(parsed.subject).toBe(`Lead ${smuggled.replace('=?', '=\u200b?')}`);
    expect(parsed.subject).not.toMatch(/[\r\n]/);
    const to = parsed.to && !Array.isArray(parsed.to) ? parsed.to.value : [];
    expect(to.map((a) => a.address)).toEqual(['a@example.com']);
    expect(to[0]?.name).toBe('=\u200b?utf-8?Q?evil=0D=0Aevil?=');
    expect(parsed.headers.has('bcc')).toBe(false);
  });

  it('a recipient field carrying a second address is blocked by allowRecipients', () => {
    const r = rule({ allowRecipients: ['*@example.com'] }, { to: '{{Email}}' });
    const err = renderError(() => render(r, lead({ Email: 'a@example.com, evil@attacker.com' })));
    expect(err.code).toBe('ERECIPIENT');
    expect(err.address).toBe('evil@attacker.com');
    expect(err.message).toBe('email.to: recipient evil@attacker.com is not allowed by allowRecipients');
    // same guard on cc and bcc
    for (const key of ['cc', 'bcc']) {
      const e = renderError(() =>
        render(
          rule({ allowRecipients: ['*@example.com'] }, { to: 'a@example.com', [key]: '{{Email}}' }),
          lead({ Email: 'x@evil.org' }),
        ),
      );
      expect(e.code).toBe('ERECIPIENT');
      expect(e.keyPath).toBe(`email.${key}`);
    }
  });

  it('without allowRecipients both addresses go out (that is what the guard is for)', () => {
    const m = render(rule({}, { to: '{{Email}}' }), lead({ Email: 'a@example.com; evil@attacker.com' }));
    expect(m.to).toEqual(['a@example.com', 'evil@attacker.com']);
  });

  it('a line break in a recipient field is EADDRESS, never parsed into a new address', () => {
    const err = renderError(() =>
      render(rule({}, { to: '{{Email}}' }), lead({ Email: 'a@example.com\r\nBcc: evil@x.com' })),
    );
    expect(err.code).toBe('EADDRESS');
    expect(err.keyPath).toBe('email.to');
  });

  it('NUL bytes vanish from bodies and become spaces in the subject', () => {
    const m = render(
      rule({}, { subject: 'x{{LastName}}y', text: 'x{{LastName}}y', html: 'x{{LastName}}y' }),
      lead({ LastName: 'a\u0000b' }),
    );
    expect(m.subject).toBe('xa by');
    expect(m.text).toBe('xaby');
    expect(m.html).toBe('xaby');
  });

  it('very long fields: the subject is capped at 998 characters, bodies are kept, MIME stays valid', async () => {
    const long = 'L'.repeat(100_000);
    const m = render(rule({}, { subject: '{{LastName}}', text: '{{LastName}}' }), lead({ LastName: long }));
    expect(Array.from(m.subject)).toHaveLength(998);
    expect(m.subject.endsWith('…')).toBe(true);
    expect(m.text).toBe(long);
    const { raw, parsed } = await roundTrip(m);
    expect(raw.split('\r\n').every((line) => line.length <= 998)).toBe(true);
    expect(parsed.subject).toBe(m.subject);
    expect(parsed.text?.replace(/\n$/, '')).toBe(long);
  });
});

describe('renderMessage: addresses', () => {
  it('dedupes case-insensitively across to, cc and bcc (to wins, then cc)', () => {
    const m = render(
      rule(
        {},
        {
          to: 'A@example.com; a@EXAMPLE.com, b@example.com',
          cc: 'b@example.com; C@example.com',
          bcc: 'c@example.com; d@example.com',
        },
      ),
    );
    expect(m.to).toEqual(['A@example.com', 'b@example.com']);
    expect(m.cc).toEqual(['C@example.com']);
    expect(m.bcc).toEqual(['d@example.com']);
  });

  it('ENORECIPIENTS when to, cc and bcc render empty', () => {
    const err = renderError(() =>
      render(rule({}, { to: '{{Email}}', cc: '{{Owner.Email}}' }), lead({ Email: '', Owner: null })),
    );
    expect(err.code).toBe('ENORECIPIENTS');
  });

  it('EADDRESS for a malformed recipient, naming it', () => {
    const err = renderError(() =>
      render(rule({}, { to: '{{Email}}' }), lead({ Email: 'ada at example dot com' })),
    );
    expect(err.code).toBe('EADDRESS');
    expect(err.message).toContain('ada at example dot com');
  });

  it('from must be exactly one valid address', () => {
    expect(
      renderError(() =>
        render(rule({}, { from: '{{Email}}' }), lead({ Email: 'a@example.com, b@example.com' })),
      ).code,
    ).toBe('EADDRESS');
    expect(renderError(() => render(rule({}, { from: '{{Email}}' }), lead({ Email: '' }))).message).toMatch(
      /email\.from: must be exactly one address/,
    );
    expect(renderError(() => render(rule({}, { from: 'leads@' }))).code).toBe('EADDRESS');
  });

  it('replyTo is optional and validated', () => {
    expect(render(rule()).replyTo).toBeUndefined();
    expect(render(rule({}, { replyTo: '{{Email}}' })).replyTo).toBe('ada@example.com');
    expect(renderError(() => render(rule({}, { replyTo: 'nope' }))).code).toBe('EADDRESS');
  });
});

describe('renderMessage: headers, Message-ID, attachments', () => {
  it('importance high/low/normal sets Importance and X-Priority', () => {
    expect(render(rule({}, { importance: 'high' })).headers).toEqual({
      Importance: 'high',
      'X-Priority': '1 (Highest)',
    });
    expect(render(rule({}, { importance: 'low' })).headers).toEqual({
      Importance: 'low',
      'X-Priority': '5 (Lowest)',
    });
    expect(render(rule({}, { importance: 'normal' })).headers).toEqual({});
  });

  it('user headers are rendered and merged; a user header overrides ours case-insensitively', () => {
    const m = render(rule({}, { importance: 'high', headers: { 'X-Lead-Id': '{{Id}}', 'x-priority': '2' } }));
    expect(m.headers).toEqual({ Importance: 'high', 'X-Lead-Id': '00Q5g00000AbCdEAAV', 'x-priority': '2' });
  });

  it('bad or reserved header names are config errors with the key path', () => {
    expect(templateError(() => compileRule(rule({}, { headers: { 'X Bad': 'v' } }), FIXTURES)).keyPath).toBe(
      'email.headers.X Bad',
    );
    expect(templateError(() => compileRule(rule({}, { headers: { 'X-A:b': 'v' } }), FIXTURES)).keyPath).toBe(
      'email.headers.X-A:b',
    );
    const reserved = templateError(() => compileRule(rule({}, { headers: { BCC: 'evil@x.com' } }), FIXTURES));
    expect(reserved.keyPath).toBe('email.headers.BCC');
    expect(reserved.message).toMatch(/cannot be overridden/);
  });

  it('Message-ID is <rule.recordId@from-domain>, the same on every render', () => {
    const compiled = compileRule(rule({}, { from: 'Desk <Leads@Mail.Example.com>' }), FIXTURES);
    const a = renderMessage(compiled, lead(), { now: new Date('2024-01-01T00:00:00Z') });
    const b = renderMessage(
      compileRule(rule({}, { from: 'Desk <Leads@Mail.Example.com>' }), FIXTURES),
      lead(),
      {
        now: new Date('2025-06-01T00:00:00Z'),
      },
    );
    expect(a.messageId).toBe('<new-web-leads.00Q5g00000AbCdEAAV@mail.example.com>');
    expect(b.messageId).toBe(a.messageId);
    expect(renderMessage(compiled, lead({}, '00Q5g00000AbCdFAAV')).messageId).toBe(
      '<new-web-leads.00Q5g00000AbCdFAAV@mail.example.com>',
    );
  });

  it('attachments: none, base64 and inline cid survive the MIME round trip', async () => {
    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 1, 2, 255]);
    const m = render(
      rule(
        {},
        {
          html: '<img src="cid:logo@lead-notifier">',
          attachments: [
            { fileName: 'lead-{{Id}}.json', contentType: 'application/json', content: '{{json this}}' },
            {
              fileName: 'logo.png',
              contentType: 'image/png',
              content: '{{Logo}}',
              contentTransferEncoding: 'base64',
              contentId: '<logo@lead-notifier>',
            },
            { fileName: 'note.txt', content: 'Note: {{FirstName}}{{Nul}}', contentTransferEncoding: 'none' },
          ],
        },
      ),
      lead({
        Nul: '\u0000',
        Logo: `${png.toString('base64').slice(0, 8)}\r\n${png.toString('base64').slice(8)}`,
      }),
    );
    expect(m.attachments).toEqual([
      {
        filename: 'lead-00Q5g00000AbCdEAAV.json',
        contentType: 'application/json',
        content: expect.stringContaining('"FirstName": "Ada"'),
      },
      {
        filename: 'logo.png',
        contentType: 'image/png',
        content: png.toString('base64'),
        encoding: 'base64',
        cid: 'logo@lead-notifier',
      },
      { filename: 'note.txt', content: 'Note: Ada' },
    ]);
    const { parsed } = await roundTrip(m);
    expect(parsed.attachments).toHaveLength(3);
    // mailparser lists inline (multipart/related) parts first: find them by name
    const byName = (n: string) => parsed.attachments.find((a) => a.filename === n);
    const [jsonAtt, logo, note] = [
      byName('lead-00Q5g00000AbCdEAAV.json'),
      byName('logo.png'),
      byName('note.txt'),
    ];
    expect(JSON.parse(jsonAtt?.content.toString('utf8') ?? '').Id).toBe('00Q5g00000AbCdEAAV');
    expect(jsonAtt?.contentDisposition).toBe('attachment');
    expect(logo?.content.equals(png)).toBe(true);
    expect(logo?.contentId).toBe('<logo@lead-notifier>');
    expect(logo?.contentDisposition).toBe('inline');
    expect(note?.contentId).toBeUndefined();
    expect(note?.content.toString('utf8')).toBe('Note: Ada');
  });

  it('base64 content that is not base64 is a per-record ERENDER', () => {
    const r = rule(
      {},
      { attachments: [{ fileName: 'a.bin', content: '{{Data}}', contentTransferEncoding: 'base64' }] },
    );
    const compiled = compileRule(r, FIXTURES);
    const err = renderError(() => renderMessage(compiled, lead({ Data: 'not base64!' })));
    expect(err.code).toBe('ERENDER');
    expect(err.message).toBe('email.attachments[0].content: not valid base64');
    expect(renderError(() => renderMessage(compiled, lead({ Data: 'abcde' }))).code).toBe('ERENDER');
    expect(renderMessage(compiled, lead({ Data: 'aGk=' })).attachments[0]?.content).toBe('aGk=');
  });

  it('an attachment file name rendered from record data is single-line; empty is an error', () => {
    const r = rule({}, { attachments: [{ fileName: '{{LastName}}.txt', content: 'x' }] });
    expect(render(r, lead({ LastName: 'a\r\nContent-Type: text/html' })).attachments[0]?.filename).toBe(
      'a Content-Type: text/html.txt',
    );
    const empty = rule({}, { attachments: [{ fileName: '{{LastName}}', content: 'x' }] });
    expect(renderError(() => render(empty, lead({ LastName: '' }))).message).toBe(
      'email.attachments[0].fileName: rendered empty',
    );
  });

  it('bad contentType or contentId are config errors', () => {
    expect(
      templateError(() =>
        compileRule(
          rule({}, { attachments: [{ fileName: 'a', content: 'x', contentType: 'text' }] }),
          FIXTURES,
        ),
      ).keyPath,
    ).toBe('email.attachments[0].contentType');
    expect(
      templateError(() =>
        compileRule(rule({}, { attachments: [{ fileName: 'a', content: 'x', contentId: 'a b' }] }), FIXTURES),
      ).keyPath,
    ).toBe('email.attachments[0].contentId');
  });
});

describe('compileRule: files, partials and compile errors', () => {
  it('reads .hbs files relative to baseDir and registers partials by file name', () => {
    const m = render(
      rule({}, { html: 'new-lead.html.hbs', text: 'new-lead.txt.hbs' }),
      lead({ Company: 'A & B' }),
    );
    expect(m.html).toBe(
      '<h1>New lead: Ada Lovelace</h1>\n<p>Company: A &amp; B</p>\n<p>From the web form</p>\n<p class="footer">Sent by new-web-leads for A &amp; B</p>\n',
    );
    expect(m.text).toBe('New lead Ada Lovelace <ada@example.com>\n-- \nnew-web-leads (LEAD)\n');
    // a relative baseDir (as config loaders may pass) resolves files and partials alike
    const relative = path.relative(process.cwd(), FIXTURES);
    expect(
      renderMessage(compileRule(rule({}, { html: 'new-lead.html.hbs' }), relative), lead(), { now: NOW })
        .html,
    ).toContain('<p class="footer">');
    expect(render(rule({}, { html: 'new-lead.html.hbs' }), lead({ LeadSource: 'Phone' })).html).not.toContain(
      'web form',
    );
  });

  it('syntax errors carry the key path and line', () => {
    const inline = templateError(() => compileRule(rule({}, { subject: 'Hi {{FirstName' }), FIXTURES));
    expect(inline.keyPath).toBe('email.subject');
    expect(inline.message).toMatch(/^email\.subject: Parse error on line 1/);

    const file = templateError(() => compileRule(rule({}, { html: 'broken/syntax.hbs' }), FIXTURES));
    expect(file.keyPath).toBe('email.html');

    const att = templateError(() =>
      compileRule(rule({}, { attachments: [{ fileName: 'a.txt', content: '{{#if x}}open' }] }), FIXTURES),
    );
    expect(att.keyPath).toBe('email.attachments[0].content');

    const header = templateError(() => compileRule(rule({}, { headers: { 'X-A': '{{/if}}' } }), FIXTURES));
    expect(header.keyPath).toBe('email.headers.X-A');
  });

  it('a missing file is a TemplateError naming the absolute path', () => {
    const err = templateError(() => compileRule(rule({}, { text: 'templates/nope.txt.hbs' }), FIXTURES));
    expect(err.keyPath).toBe('email.text');
    expect(err.message).toContain(`file not found: ${path.join(FIXTURES, 'templates/nope.txt.hbs')}`);
  });

  it('unknown partials and unknown helpers are caught at compile time', () => {
    const partial = templateError(() =>
      compileRule(rule({}, { html: 'broken/unknown-partial.hbs' }), FIXTURES),
    );
    expect(partial.keyPath).toBe('email.html');
    expect(partial.message).toMatch(/unknown partial "nosuchpartial" \(line 1\)/);

    const helper = templateError(() => compileRule(rule({}, { subject: '{{shout FirstName}}' }), FIXTURES));
    expect(helper.keyPath).toBe('email.subject');
    expect(helper.message).toMatch(/unknown helper "shout"/);
    expect(
      templateError(() => compileRule(rule({}, { subject: '{{#if (nope x)}}y{{/if}}' }), FIXTURES)).message,
    ).toMatch(/unknown helper "nope"/);
  });

  it('a broken partial is a TemplateError naming the partial file', () => {
    const dir = tmpDir();
    fs.mkdirSync(path.join(dir, 'partials'));
    fs.writeFileSync(path.join(dir, 'partials', 'bad.hbs'), '{{#each items}}');
    const err = templateError(() => compileRule(rule(), dir));
    expect(err.keyPath).toBe('partials/bad.hbs');
  });

  it('a bad allowRecipients pattern is a TemplateError at its index', () => {
    const err = templateError(() =>
      compileRule(rule({ allowRecipients: ['*@example.com', '*.example.com'] }), FIXTURES),
    );
    expect(err.keyPath).toBe('allowRecipients[1]');
  });

  it('a runtime error for one record is a ERENDER for that record only', () => {
    // a dynamic partial named by record data: only known at render time
    const compiled = compileRule(rule({}, { html: '{{> (lookup . "Block")}}' }), FIXTURES);
    const err = renderError(() => renderMessage(compiled, lead({ Block: 'nosuch' })));
    expect(err.code).toBe('ERENDER');
    expect(err.keyPath).toBe('email.html');
    expect(err.message).toMatch(/^email\.html: .*nosuch/);
    expect(renderMessage(compiled, lead({ Block: 'footer' }), { now: NOW }).html).toBe(
      '<p class="footer">Sent by new-web-leads for Analytical Engines Ltd</p>\n',
    );
  });

  it('each rule gets its own Handlebars environment (partials do not leak between baseDirs)', () => {
    const dir = tmpDir();
    expect(() => compileRule(rule({}, { html: '{{> footer}}' }), FIXTURES)).not.toThrow();
    expect(templateError(() => compileRule(rule({}, { html: '{{> footer}}' }), dir)).message).toMatch(
      /unknown partial "footer"/,
    );
  });
});

describe('helpers', () => {
  const h = (text: string, fields: Record<string, unknown> = {}) =>
    render(rule({}, { text }), lead(fields)).text;

  it('formatDate: date, time, datetime (default), iso, in UTC or a named zone', () => {
    const when = '2024-05-01T12:34:56.000+0000'; // the Salesforce REST form
    expect(h('{{formatDate When "date"}}', { When: when })).toBe('1 May 2024');
    expect(h('{{formatDate When "time"}}', { When: when })).toBe('12:34 UTC');
    expect(h('{{formatDate When}}', { When: when })).toBe('1 May 2024, 12:34 UTC');
    expect(h('{{formatDate When "datetime" "Europe/Berlin"}}', { When: when })).toBe(
      '1 May 2024, 14:34 CEST',
    );
    expect(h('{{formatDate When "iso"}}', { When: when })).toBe('2024-05-01T12:34:56.000Z');
    expect(h('{{formatDate When "iso" "America/New_York"}}', { When: when })).toBe(
      '2024-05-01T08:34:56-04:00',
    );
    expect(h('{{formatDate When "date" "Pacific/Kiritimati"}}', { When: '2024-05-01T12:00:00Z' })).toBe(
      '2 May 2024',
    );
    expect(h('{{formatDate now "iso"}}')).toBe('2024-05-01T12:34:56.000Z');
    expect(h('{{formatDate When "nonsense"}}', { When: when })).toBe('1 May 2024, 12:34 UTC');
  });

  it('formatDate: bad input or zone renders the input unchanged, never throws', () => {
    expect(h('[{{formatDate When}}]', { When: 'not a date' })).toBe('[not a date]');
    expect(h('[{{formatDate When "date" "Mars/Olympus"}}]', { When: '2024-05-01T00:00:00Z' })).toBe(
      '[2024-05-01T00:00:00Z]',
    );
    expect(h('[{{formatDate Missing}}]')).toBe('[]');
    expect(h('[{{formatDate Owner}}]')).toBe('[]');
    expect(formatDate(Object.create(null))).toBe('');
    expect(formatDate(new Date(Number.NaN))).toBe('');
  });

  it('default', () => {
    expect(h('{{default Missing "n/a"}}')).toBe('n/a');
    expect(h('{{default Company "n/a"}}', { Company: '' })).toBe('n/a');
    expect(h('{{default Company "n/a"}}', { Company: null })).toBe('n/a');
    expect(h('{{default Company "n/a"}}')).toBe('Analytical Engines Ltd');
    expect(h('{{default Count "n/a"}}', { Count: 0 })).toBe('0');
    expect(h('[{{default Missing}}]')).toBe('[]');
    expect(defaultHelper([], 'x')).toBe('x');
  });

  it('json', () => {
    expect(h('{{json Owner}}')).toBe('{\n  "Email": "owner@example.com"\n}');
    expect(h('[{{json Missing}}]')).toBe('[]');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(json(cyclic)).toBe('');
    expect(json(10n)).toBe('');
    // in html it is escaped like any other value
    expect(render(rule({}, { html: '{{json Owner}}' })).html).toBe(
      '{\n  &quot;Email&quot;: &quot;owner@example.com&quot;\n}',
    );
  });

  it('join', () => {
    expect(h('{{join Tags " | "}}', { Tags: ['a', 'b', 3] })).toBe('a | b | 3');
    expect(h('{{join Tags}}', { Tags: ['a', 'b'] })).toBe('a, b');
    expect(h('[{{join Tags}}]', { Tags: 'solo' })).toBe('[solo]');
    expect(h('[{{join Missing}}]')).toBe('[]');
    expect(join([{ a: 1 }, null, Object.create(null), 'x'], '/')).toBe('///x');
  });

  it('eq works as a subexpression in #if', () => {
    const t = '{{#if (eq LeadSource "Web")}}web{{else}}other{{/if}}';
    expect(h(t)).toBe('web');
    expect(h(t, { LeadSource: 'Phone' })).toBe('other');
    expect(h(t, { LeadSource: undefined })).toBe('other');
    expect(eq(1, '1')).toBe(false);
  });

  it('truncate', () => {
    expect(h('{{truncate Company 10}}')).toBe('Analytica…');
    expect(Array.from(h('{{truncate Company 10}}') ?? '')).toHaveLength(10);
    expect(h('{{truncate Company 100}}')).toBe('Analytical Engines Ltd');
    expect(h('{{truncate Company}}')).toBe('Analytical Engines Ltd');
    expect(truncate('😀😀😀😀', 3)).toBe('😀😀…');
    expect(truncate({ a: 1 }, 3)).toBe('');
    expect(truncate(undefined, 3)).toBe('');
  });

  it('lower and upper', () => {
    expect(h('{{lower Email}} {{upper LastName}}', { Email: 'Ada@Example.COM' })).toBe(
      'ada@example.com LOVELACE',
    );
    expect(h('[{{upper Owner}}][{{lower Missing}}]')).toBe('[][]');
    expect(lower(42)).toBe('42');
    expect(upper(Object.create(null))).toBe('');
  });
});

describe('sampleRecord', () => {
  it('fills every selected field plausibly, with a valid Id of the object prefix', () => {
    const r = rule({
      select: [
        'FirstName',
        'LastName',
        'Company',
        'Email',
        'Owner.Email',
        'Owner.Name',
        'OwnerId',
        'CloseDate',
        'Custom__c',
      ],
    });
    const s = sampleRecord(r, NOW);
    expect(s.object).toBe('Lead');
    expect(s.id).toHaveLength(18);
    expect(s.id.startsWith('00Q')).toBe(true);
    expect(isValidId(s.id)).toBe(true);
    expect(s.createdDate).toBe('2024-05-01T12:34:56.000+0000');
    expect(s.fields).toMatchObject({
      Id: s.id,
      FirstName: 'Ada',
      LastName: 'Lovelace',
      Company: 'Analytical Engines Ltd',
      Email: 'ada.lovelace@example.com',
      Owner: { Email: 'owner@example.com', Name: 'Grace Hopper' },
      CloseDate: '2024-05-01',
      Custom__c: 'Sample Custom__c',
    });
    expect(String(s.fields.OwnerId).startsWith('005')).toBe(true);
    expect(isValidId(String(s.fields.OwnerId))).toBe(true);
  });

  it('uses the right key prefix for common objects', () => {
    for (const [object, prefix] of [
      ['Lead', '00Q'],
      ['Contact', '003'],
      ['Account', '001'],
      ['Case', '500'],
      ['Opportunity', '006'],
    ] as const) {
      const s = sampleRecord(rule({ object }));
      expect(s.id.slice(0, 3), object).toBe(prefix);
      expect(isValidId(s.id)).toBe(true);
    }
  });

  it('renders the example rule into a sendable message', () => {
    const r = rule({}, { html: 'new-lead.html.hbs', importance: 'high' });
    const compiled: CompiledRule = compileRule(r, FIXTURES);
    const m = renderMessage(compiled, sampleRecord(r, NOW), { now: NOW });
    expect(m.to).toEqual(['owner@example.com', 'sales@example.com']);
    expect(m.subject).toBe('New lead: Ada Lovelace (Analytical Engines Ltd)');
    expect(m.messageId).toMatch(/^<new-web-leads\.00Q\w{15}@example\.com>$/);
  });
});
