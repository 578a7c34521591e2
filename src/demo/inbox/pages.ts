// The demo inbox's pages (no framework, no external assets): the list of captured emails and each
// email rendered. Emails carry Salesforce record data, which is untrusted, so everything taken
// from an email is HTML-escaped, the HTML part is shown only inside a sandboxed iframe from its
// own path under a CSP that forbids scripts, and every page carries a CSP of its own.
import type { CapturedEmail } from '../capture.ts';

export interface InboxOptions {
  host?: string;
  /** 0 = any free port */
  port?: number;
  /** shown in the side panel: where to look next */
  links?: Array<{ label: string; url: string }>;
  /** shown in the side panel, one paragraph each (plain text, escaped) */
  hints?: string[];
}

/** The CSP of the HTML part (spec'd for the demo), plus `sandbox` and `frame-ancestors` for a direct visit. */
export const HTML_PART_CSP =
  "default-src 'none'; img-src data: cid:; style-src 'unsafe-inline'; frame-ancestors 'self'; sandbox";

export const PAGE_CSP = (nonce: string | null): string =>
  [
    "default-src 'none'",
    nonce ? `script-src 'nonce-${nonce}'` : null,
    "style-src 'unsafe-inline'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "frame-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ]
    .filter(Boolean)
    .join('; ');

const HTML_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** HTML-escapes text for element content and quoted attribute values. */
export function esc(value: unknown): string {
  return String(value ?? '').replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]!);
}

/** The rule name from our Message-ID `<rule.recordId@host>`, when it has that shape. */
export function ruleOf(messageId: string | null): string | null {
  const m = /^<?(.+)\.([A-Za-z0-9]{15}|[A-Za-z0-9]{18})@[^>]+>?$/.exec(messageId ?? '');
  return m ? m[1]! : null;
}

export interface MessageSummary {
  id: number;
  receivedAt: string;
  from: string;
  to: string;
  cc: string;
  subject: string;
  date: string | null;
  messageId: string | null;
  rule: string | null;
  importance: string | null;
  envelope: { mailFrom: string; rcptTo: string[] };
  hasHtml: boolean;
  hasText: boolean;
  attachments: Array<{ index: number; filename: string; contentType: string; size: number }>;
}

export function summarize(e: CapturedEmail): MessageSummary {
  return {
    id: e.id,
    receivedAt: e.receivedAt,
    from: e.from,
    to: e.to,
    cc: e.cc,
    subject: e.subject,
    date: e.date,
    messageId: e.messageId,
    rule: ruleOf(e.messageId),
    importance: e.importance,
    envelope: e.envelope,
    hasHtml: e.html !== null,
    hasText: e.text !== null,
    attachments: e.attachments.map((a, index) => ({
      index,
      filename: a.filename,
      contentType: a.contentType,
      size: a.size,
    })),
  };
}

function isHigh(importance: string | null): boolean {
  // Importance: high (RFC 2156) or X-Priority 1/2
  return importance !== null && /^(high|[12]\b)/i.test(importance.trim());
}

function clock(iso: string): string {
  return new Date(iso).toLocaleTimeString('en-GB', { hour12: false });
}

const STYLE = `
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1f2933;background:#f4f5f7}
header{background:#032d60;color:#fff;padding:12px 24px;display:flex;align-items:baseline;gap:16px}
header h1{font-size:18px;margin:0;font-weight:600}
header a{color:#cfe3ff}
header .sub{color:#b8c7d9;font-size:13px}
main{display:flex;gap:24px;padding:20px 24px;align-items:flex-start}
.panel{background:#fff;border:1px solid #dde1e6;border-radius:6px}
.list{flex:1;min-width:0;overflow:hidden}
aside{width:340px;flex:none;padding:14px 16px;font-size:13px}
aside h2{font-size:14px;margin:0 0 8px}
aside p{margin:0 0 10px;color:#3e4c59;overflow-wrap:anywhere}
aside code{background:#f0f2f5;padding:1px 4px;border-radius:3px;font-size:12px}
table{border-collapse:collapse;width:100%}
th{text-align:left;font-weight:600;color:#5a6872;font-size:12px;text-transform:uppercase;letter-spacing:.04em;padding:8px 12px;border-bottom:1px solid #dde1e6;background:#fafbfc}
td{padding:9px 12px;border-bottom:1px solid #eef0f3;vertical-align:top;overflow-wrap:break-word}
td.subject{overflow-wrap:anywhere}
tr.msg{cursor:pointer}
tr.msg:hover td{background:#f0f6ff}
td.time{white-space:nowrap;color:#5a6872;font-variant-numeric:tabular-nums;width:80px}
td.subject a{color:#0b5cab;text-decoration:none;font-weight:600}
td.subject a:hover{text-decoration:underline}
.badge{display:inline-block;font-size:11px;padding:0 6px;border-radius:9px;background:#e3ecf7;color:#0b5cab;margin-right:4px;font-weight:600;vertical-align:1px}
.badge.high{background:#fde2e1;color:#b3261e}
.badge.att{background:#eef0f3;color:#3e4c59}
.empty{padding:32px;text-align:center;color:#5a6872}
.meta th{width:120px;text-transform:none;letter-spacing:0;font-size:13px;background:none;border-bottom:1px solid #eef0f3;vertical-align:top}
.msgview{flex:1;min-width:0;padding:16px 20px}
.msgview h1{font-size:20px;margin:0 0 12px;overflow-wrap:anywhere}
.msgview h2{font-size:14px;margin:20px 0 8px;color:#3e4c59}
iframe.htmlpart{width:100%;height:560px;border:1px solid #dde1e6;border-radius:4px;background:#fff}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#fafbfc;border:1px solid #dde1e6;border-radius:4px;padding:12px;margin:0;font:12.5px/1.5 ui-monospace,Consolas,monospace}
details summary{cursor:pointer;color:#0b5cab;margin:20px 0 8px;font-weight:600}
.headers td:first-child{white-space:nowrap;color:#5a6872;font-family:ui-monospace,Consolas,monospace;font-size:12px;width:1%}
.headers td{font-family:ui-monospace,Consolas,monospace;font-size:12px;padding:4px 12px}
ul.att{margin:0;padding-left:18px}
a{color:#0b5cab}
`;

function layout(title: string, body: string, nonce: string | null, script = ''): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${esc(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<header><h1><a href="/" style="color:#fff;text-decoration:none">lead-notifier demo inbox</a></h1><span class="sub">every email the worker sent, captured locally; nothing leaves this machine</span></header>
${body}
${nonce && script ? `<script nonce="${nonce}">${script}</script>` : ''}
</body>
</html>
`;
}

function sidePanel(opts: InboxOptions): string {
  const links = (opts.links ?? [])
    .map((l) => `<p>${esc(l.label)}<br><a href="${esc(safeHref(l.url))}">${esc(l.url)}</a></p>`)
    .join('');
  const hints = (opts.hints ?? []).map((h) => `<p>${esc(h)}</p>`).join('');
  if (!links && !hints) return '';
  return `<aside class="panel"><h2>What you are looking at</h2>${hints}${links}</aside>`;
}

/** Only http(s) links in the side panel; anything else is shown but not linked. */
function safeHref(url: string): string {
  return /^https?:\/\//i.test(url) ? url : '#';
}

function rowHtml(s: MessageSummary): string {
  const badges = [
    s.rule ? `<span class="badge">${esc(s.rule)}</span>` : '',
    isHigh(s.importance) ? '<span class="badge high">high</span>' : '',
    s.attachments.length ? `<span class="badge att">${s.attachments.length} att.</span>` : '',
  ].join('');
  return (
    `<tr class="msg" data-id="${s.id}">` +
    `<td class="time"><time datetime="${esc(s.receivedAt)}">${esc(clock(s.receivedAt))}</time></td>` +
    `<td class="from">${esc(s.from)}</td>` +
    `<td class="to">${esc(s.to)}</td>` +
    `<td class="subject">${badges}<a href="/messages/${s.id}">${esc(s.subject || '(no subject)')}</a></td>` +
    `</tr>`
  );
}

const EMPTY_TEXT =
  'No emails yet. New Leads appear in the org every few seconds; the worker polls every 2 s.';

/** The list page: newest first, refreshed every 2 s by a small inline script. */
export function renderListPage(
  emails: CapturedEmail[],
  opts: InboxOptions = {},
  nonce: string | null = null,
): string {
  const summaries = emails.map(summarize);
  const latest = summaries[0]?.id ?? 0;
  const body = `<main>
<section class="panel list">
<table>
<thead><tr><th>Time</th><th>From</th><th>To</th><th>Subject</th></tr></thead>
<tbody id="rows" data-latest="${latest}">${summaries.map(rowHtml).join('\n')}</tbody>
</table>
<div id="empty" class="empty"${summaries.length ? ' hidden' : ''}>${esc(EMPTY_TEXT)}</div>
</section>
${sidePanel(opts)}
</main>`;
  return layout(`Inbox (${summaries.length})`, body, nonce, LIST_SCRIPT);
}

// Rebuilds the rows from /api/messages with DOM APIs (textContent, never innerHTML), so email
// data stays text in the browser too.
const LIST_SCRIPT = `
(() => {
  const rows = document.getElementById('rows');
  const empty = document.getElementById('empty');
  let latest = rows.dataset.latest;
  const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; };
  const row = (m) => {
    const tr = el('tr', 'msg'); tr.dataset.id = String(m.id);
    const td = el('td', 'time'); const t = el('time', '', new Date(m.receivedAt).toLocaleTimeString('en-GB', { hour12: false })); t.dateTime = m.receivedAt; td.append(t); tr.append(td);
    tr.append(el('td', 'from', m.from), el('td', 'to', m.to));
    const s = el('td', 'subject');
    if (m.rule) s.append(el('span', 'badge', m.rule));
    if (m.importance && /^(high|[12]\\b)/i.test(m.importance.trim())) s.append(el('span', 'badge high', 'high'));
    if (m.attachments.length) s.append(el('span', 'badge att', m.attachments.length + ' att.'));
    const a = el('a', '', m.subject || '(no subject)'); a.href = '/messages/' + m.id; s.append(a); tr.append(s);
    return tr;
  };
  rows.addEventListener('click', (ev) => {
    const tr = ev.target.closest('tr.msg');
    if (tr && !ev.target.closest('a')) location.href = '/messages/' + tr.dataset.id;
  });
  const tick = async () => {
    try {
      const res = await fetch('/api/messages', { cache: 'no-store' });
      const { messages } = await res.json();
      const top = String(messages.length ? messages[0].id : 0);
      if (top === latest) return;
      latest = top;
      rows.replaceChildren(...messages.map(row));
      empty.hidden = messages.length > 0;
      document.title = 'Inbox (' + messages.length + ')';
    } catch { /* the demo stopped, or a blip: try again */ }
  };
  setInterval(tick, 2000);
})();
`;

function metaRow(label: string, value: string | null | undefined): string {
  if (!value) return '';
  return `<tr><th>${esc(label)}</th><td>${esc(value)}</td></tr>`;
}

function formatSize(n: number): string {
  return n < 1024
    ? `${n} B`
    : n < 1024 * 1024
      ? `${(n / 1024).toFixed(1)} KB`
      : `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** One email: metadata, the HTML part in a sandboxed iframe, the text part, attachments, headers. */
export function renderMessagePage(e: CapturedEmail): string {
  const s = summarize(e);
  const html =
    e.html !== null
      ? `<h2>HTML part</h2>
<iframe class="htmlpart" sandbox="" referrerpolicy="no-referrer" title="HTML part of the email" src="/messages/${e.id}/html"></iframe>`
      : '';
  const text = e.text !== null ? `<h2>Text part</h2><pre>${esc(e.text)}</pre>` : '';
  const atts = e.attachments.length
    ? `<h2>Attachments</h2><ul class="att">${e.attachments
        .map(
          (a, i) =>
            `<li><a href="/messages/${e.id}/attachments/${i}" download="${esc(a.filename)}">${esc(a.filename)}</a> ` +
            `<span style="color:#5a6872">${esc(a.contentType)}, ${esc(formatSize(a.size))}${a.contentId ? `, inline ${esc(a.contentId)}` : ''}</span></li>`,
        )
        .join('')}</ul>`
    : '';
  const headers = `<details><summary>All headers (${e.headers.length})</summary>
<table class="headers">${e.headers.map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`).join('')}</table>
<p><a href="/messages/${e.id}/raw">Download the raw message (.eml)</a></p></details>`;
  const body = `<main>
<section class="panel msgview">
<p><a href="/">&larr; Inbox</a></p>
<h1>${s.rule ? `<span class="badge">${esc(s.rule)}</span>` : ''}${isHigh(s.importance) ? '<span class="badge high">high</span>' : ''}${esc(e.subject || '(no subject)')}</h1>
<table class="meta">
${metaRow('From', e.from)}${metaRow('To', e.to)}${metaRow('Cc', e.cc)}${metaRow('Reply-To', e.replyTo)}
${metaRow('Date', e.date)}${metaRow('Received', e.receivedAt)}${metaRow('Message-ID', e.messageId)}${metaRow('Importance', e.importance)}
${metaRow('Envelope', `MAIL FROM:<${e.envelope.mailFrom}> RCPT TO:${e.envelope.rcptTo.map((r) => `<${r}>`).join(' ')}`)}
</table>
${html}
${text}
${atts}
${headers}
</section>
</main>`;
  return layout(e.subject || '(no subject)', body, null);
}
