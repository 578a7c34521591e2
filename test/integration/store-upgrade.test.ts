// A store written by an earlier release must open and keep working after an upgrade. SQLite: a
// real file written by the code of main at 3f782d3 (schema version 2; test/fixtures/store/).
// PostgreSQL: a schema built from migrations 1 and 2 with rows in that release's shape.
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/store/index.ts';
import {
  randomSchema,
  startTestPostgres,
  withPgClient,
  withSchema,
  type TestPostgres,
} from '../helpers/postgres.ts';

const FIXTURE = new URL('../fixtures/store/v2-3f782d3.db', import.meta.url);
const migration = (dialect: string, file: string) =>
  readFileSync(new URL(`../../src/store/migrations/${dialect}/${file}`, import.meta.url), 'utf8');

/** what every upgraded store must show: rows and checkpoint intact, codes where known, work goes on */
async function checkUpgraded(store: Store, expectSending: boolean): Promise<void> {
  const cp = await store.getCheckpoint('old-rule');
  expect(cp).toMatchObject({ floor: '2026-11-30T00:00:00.000Z', watermark: '2026-11-30T10:00:01.000Z' });
  const rows = (await store.list({ rule: 'old-rule' })).sort((a, b) => a.id - b.id);
  expect(rows.map((r) => r.state)).toEqual([
    'sent',
    expectSending ? 'sending' : 'pending',
    'pending',
    'dead',
  ]);
  expect(rows[0]!.result?.response).toBe('250 OK');
  // the migration names the code of rows whose text says it
  expect(rows[3]).toMatchObject({ lastError: 'render: email.to: no recipients', lastErrorCode: 'ERENDER' });
  expect(rows[0]!.lastErrorCode).toBeNull();
  // the ledger still holds: the same record is not enqueued twice
  const again = await store.commitBatch(
    'old-rule',
    [
      {
        rule: 'old-rule',
        object: 'Lead',
        recordId: rows[2]!.recordId,
        recordCreatedDate: '2026-11-30T10:00:00.000Z',
        message: rows[2]!.message,
        state: 'pending',
      },
    ],
    { floor: cp!.floor, watermark: cp!.watermark },
  );
  expect(again.inserted).toBe(0);
  // every old row is an email row; the same record on another channel is a new key (migration 009)
  expect(rows.every((r) => r.channel === 'email')).toBe(true);
  const slack = await store.commitBatch(
    'old-rule',
    [
      {
        rule: 'old-rule',
        object: 'Lead',
        recordId: rows[2]!.recordId,
        recordCreatedDate: '2026-11-30T10:00:00.000Z',
        channel: 'slack',
        message: {
          channel: 'slack',
          rule: 'old-rule',
          idempotencyKey: `old-rule.${rows[2]!.recordId}`,
          contentType: 'application/json',
          body: '{"text":"x"}',
        },
        state: 'pending',
      },
    ],
    { floor: cp!.floor, watermark: cp!.watermark },
  );
  expect(slack.inserted).toBe(1);
  const newRow = (await store.list({ channel: 'slack' }))[0]!;
  // ids are never reused: the new row comes after every old one
  expect(newRow.id).toBeGreaterThan(Math.max(...rows.map((r) => r.id)));
  // and delivery goes on, keeping the failure's code in its own column
  const claimed = await store.claimDue({ owner: 'new-owner', limit: 10, leaseMs: 60_000 });
  expect(claimed.length).toBeGreaterThanOrEqual(1);
  await store.recordOutcomes(
    'new-owner',
    claimed.map((r) => ({
      id: r.id,
      kind: 'dead' as const,
      error: 'dead EENVELOPE at RCPT TO: 550',
      code: 'EENVELOPE',
    })),
  );
  const after = await store.get(claimed[0]!.id);
  expect(after).toMatchObject({ state: 'dead', lastErrorCode: 'EENVELOPE' });
}

describe('store upgrade from schema version 2', () => {
  it('SQLite: a file written by the earlier release opens, migrates, and keeps its rows and ledger', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ln-upgrade-'));
    try {
      const path = join(dir, 'notifier.db');
      copyFileSync(FIXTURE, path);
      const dump = (db: DatabaseSync, cols: string) =>
        db.prepare(`SELECT ${cols} FROM outbox ORDER BY id`).all();
      const OLD_COLS =
        'id, rule, object, record_id, record_created_date, state, message, attempts, next_attempt_at, lease_owner, lease_until, last_error, result, created_at, updated_at, sent_at';
      const old = new DatabaseSync(path, { readOnly: true });
      const before = dump(old, OLD_COLS);
      const oldSeq = old.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").get();
      old.close();
      expect(before.length).toBe(4);
      const store = await openStore(`sqlite:${path}`, { exclusive: true });
      try {
        await store.migrate();
        {
          const db = new DatabaseSync(path, { readOnly: true });
          // the rebuilt table holds the same rows, column for column, and the same id counter
          expect(dump(db, OLD_COLS)).toEqual(before);
          expect(db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").get()).toEqual(oldSeq);
          // every index migrations 001-008 made on outbox, 009's own, and 011's partial ones
          const indexes = db
            .prepare(
              "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outbox' AND sql IS NOT NULL",
            )
            .all()
            .map((r) => String(r.name))
            .sort();
          expect(indexes).toEqual([
            'outbox_channel_claimable',
            'outbox_claimable',
            'outbox_due',
            'outbox_errors',
            'outbox_record_id',
            'outbox_rule_id',
            'outbox_sending_lease',
          ]);
          expect(
            db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = 'outbox_new'").get(),
          ).toEqual({
            n: 0,
          });
          expect(db.prepare('PRAGMA integrity_check').get()).toEqual({ integrity_check: 'ok' });
          db.close();
        }
        await checkUpgraded(store, true);
        // the crashed process's row: found at start-up, reported with its code
        const recovered = await store.recoverAbandoned({ all: true });
        expect(recovered).toHaveLength(1);
        expect(await store.get(recovered[0]!)).toMatchObject({
          state: 'unknown',
          lastErrorCode: 'EABANDONED',
        });
      } finally {
        await store.close();
      }
      // a reader (status) opens the upgraded file read-only
      const reader = await openStore(`sqlite:${path}`, { readOnly: true });
      expect((await reader.counts()).total.dead).toBeGreaterThanOrEqual(2);
      await reader.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('PostgreSQL', () => {
    let pgsql: TestPostgres;
    beforeAll(async () => {
      pgsql = await startTestPostgres();
    }, 120_000);
    afterAll(async () => {
      await pgsql?.stop();
    });

    it('a schema at version 2 with rows in that shape migrates and keeps working', async () => {
      const schema = randomSchema('t_upgrade');
      await withPgClient(pgsql.url, async (c) => {
        await c.query(`CREATE SCHEMA ${schema}; SET search_path = ${schema}`);
        await c.query(`CREATE TABLE lead_notifier_migrations (
           version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
        await c.query(migration('postgres', '001_init.sql'));
        await c.query(migration('postgres', '002_checkpoint_swept_at.sql'));
        await c.query(
          `INSERT INTO lead_notifier_migrations (version, name) VALUES (1, 'init'), (2, 'checkpoint_swept_at')`,
        );
        await c.query(`INSERT INTO checkpoints (rule, floor, watermark, swept_at)
           VALUES ('old-rule', '2026-11-30T00:00:00Z', '2026-11-30T10:00:01Z', '2026-11-30T10:00:00Z')`);
        const msg = (id: string) =>
          JSON.stringify({
            messageId: `<old-rule.${id}@example.com>`,
            from: 'desk@example.com',
            to: ['sales@example.com'],
            cc: [],
            bcc: [],
            subject: id,
            text: 'hello',
            headers: {},
            attachments: [],
          });
        await c.query(
          `INSERT INTO outbox (rule, object, record_id, record_created_date, state, message, last_error, result, sent_at) VALUES
             ('old-rule', 'Lead', '00Q5g00000AAAA1AAA', '2026-11-30T10:00:00Z', 'sent', $1, NULL, '{"response":"250 OK","accepted":["sales@example.com"],"rejected":[]}', now()),
             ('old-rule', 'Lead', '00Q5g00000AAAA2AAA', '2026-11-30T10:00:00Z', 'pending', $2, NULL, NULL, NULL),
             ('old-rule', 'Lead', '00Q5g00000AAAA3AAA', '2026-11-30T10:00:00Z', 'pending', $3, NULL, NULL, NULL),
             ('old-rule', 'Lead', '00Q5g00000AAAA4AAA', '2026-11-30T10:00:01Z', 'dead', NULL, 'render: email.to: no recipients', NULL, NULL)`,
          [msg('1'), msg('2'), msg('3')],
        );
      });
      const store = await openStore(withSchema(pgsql.url, schema));
      try {
        await checkUpgraded(store, false);
      } finally {
        await store.close();
        await withPgClient(pgsql.url, (c) => c.query(`DROP SCHEMA ${schema} CASCADE`));
      }
    });
  });
});
