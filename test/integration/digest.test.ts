// Digest rules through the enqueue step and a real SQLite store: records collected once, each in
// exactly one digest, maxRecords listed and the rest counted, since/until, the sample templates.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Enqueuer } from '../../src/app/enqueue.ts';
import { ruleSchema } from '../../src/config/schema.ts';
import { openStore } from '../../src/store/index.ts';
import type { Store } from '../../src/store/index.ts';
import { compileRule } from '../../src/templates/index.ts';
import { asEmail, type SourceRecord } from '../../src/types.ts';

const CONFIG_DIR = fileURLToPath(new URL('../../config/', import.meta.url));
const silent = pino({ level: 'silent' });
let dir: string;
let store: Store;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ln-digest-'));
  store = await openStore(`sqlite:${join(dir, 'n.db')}`, { exclusive: true });
  await store.migrate();
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const FLOOR = '2026-03-01T00:00:00.000Z';

function lead(i: number): SourceRecord {
  const id = `00Q5g${String(i).padStart(10, '0')}AAA`;
  return {
    object: 'Lead',
    id,
    createdDate: '2026-03-01T08:00:00.000Z',
    systemModstamp: '2026-03-01T08:00:00.000Z',
    fields: { Id: id, FirstName: `F${i}`, LastName: `L${i}`, Company: `C${i}`, Email: `l${i}@example.org` },
  };
}

function enqueuer(over: Record<string, unknown> = {}) {
  const rule = ruleSchema.parse({
    name: 'web-digest',
    object: 'Lead',
    startFrom: FLOOR,
    digest: { schedule: '0 0 8 * * *', maxRecords: 3 },
    email: {
      from: 'desk@example.com',
      to: 'managers@example.com',
      subject: '{{count}} new leads since {{formatDate since "iso"}}',
      text: 'templates/digest.text.hbs',
      html: 'templates/digest.html.hbs',
    },
    ...over,
  });
  return new Enqueuer({ rule, compiled: compileRule(rule, CONFIG_DIR), store, logger: silent });
}

const cp = { floor: FLOOR, watermark: FLOOR };

describe('digest rules', () => {
  it('collects instead of emailing; one digest lists maxRecords and counts the rest; the next starts after it', async () => {
    const e = enqueuer();
    const ack = await e.commit({ records: [1, 2, 3, 4, 5].map(lead), checkpoint: cp });
    expect(ack.inserted).toBe(5);
    // a re-read collects nothing twice
    expect((await e.commit({ records: [lead(1), lead(2)], checkpoint: cp })).inserted).toBe(0);
    expect((await store.counts()).total.pending).toBe(0);

    const first = await e.digest(new Date('2026-03-02T08:00:00Z'));
    expect(first.count).toBe(5);
    const [row] = await store.list({ rule: 'web-digest' });
    expect(row!.recordId).toBe('digest.20260302T080000Z');
    const m = asEmail(row!.message);
    expect(m.messageId).toBe('<web-digest.digest.20260302T080000Z@example.com>');
    expect(m.subject).toBe('5 new leads since 2026-03-01T00:00:00.000Z');
    expect(m.text).toContain('5 leads from 1 Mar 2026, 00:00 UTC to 2 Mar 2026, 08:00 UTC (web-digest)');
    expect(m.text).toContain('- F1 L1, C1 <l1@example.org> (00Q5g0000000001AAA');
    expect(m.text).toContain('- F3 L3');
    expect(m.text).not.toContain('F4 L4');
    expect(m.text).toContain('... and 2 more, not listed here.');
    expect(m.html).toContain('<td>F2 L2</td>');
    expect(m.html).toContain('and 2 more');

    // a later record goes in the next digest, whose period starts where this one ended
    await e.commit({ records: [lead(1), lead(6)], checkpoint: cp });
    const second = await e.digest(new Date('2026-03-03T08:00:00Z'));
    expect(second.count).toBe(1);
    const rows = await store.list({ rule: 'web-digest' });
    expect(asEmail(rows[0]!.message).subject).toBe('1 new leads since 2026-03-02T08:00:00.000Z');
    expect(asEmail(rows[0]!.message).text).toContain('F6 L6');
    expect(asEmail(rows[0]!.message).text).not.toContain('more');

    // nothing new and sendEmpty false: no email
    expect(await e.digest(new Date('2026-03-04T08:00:00Z'))).toEqual({ outboxId: null, count: 0 });
    expect(await store.list({ rule: 'web-digest' })).toHaveLength(2);
  });

  it('sendEmpty sends an empty digest; a render failure dead-letters the digest with the reason', async () => {
    const empty = enqueuer({ digest: { schedule: '* * * * *', sendEmpty: true } });
    expect((await empty.digest(new Date('2026-03-02T08:00:00Z'))).count).toBe(0);
    const [row] = await store.list({ rule: 'web-digest' });
    expect(asEmail(row!.message).text).toContain('0 leads from');
    expect(row!.state).toBe('pending');

    const broken = enqueuer({
      name: 'broken',
      email: { from: 'desk@example.com', to: '{{records.0.LastName}}', subject: 's', text: 't' },
    });
    await broken.commit({ records: [lead(1)], checkpoint: cp });
    await broken.digest(new Date('2026-03-02T08:00:00Z'));
    const [dead] = await store.list({ rule: 'broken' });
    expect(dead!.state).toBe('dead');
    expect(dead!.lastError).toMatch(/^render: /);
  });
});
