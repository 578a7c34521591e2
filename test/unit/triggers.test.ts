import { describe, expect, it } from 'vitest';
import {
  changeVersion,
  decideUpdate,
  STATE_RETENTION_MS,
  updateLedgerKey,
  valueAt,
  watchedFields,
} from '../../src/rules/triggers.ts';
import type { MatchState } from '../../src/store/index.ts';
import type { SourceRecord } from '../../src/types.ts';

const FLOOR = '2026-01-01T00:00:00.000Z';
const NOW = new Date('2026-01-10T00:00:00.000Z');
const ctx = { floor: FLOOR };

function rec(
  fields: Record<string, unknown>,
  modstamp: string,
  created = '2025-12-01T00:00:00.000Z',
): SourceRecord {
  return { object: 'Lead', id: '00Q000000000001AAA', createdDate: created, systemModstamp: modstamp, fields };
}

function state(matched: boolean, watched: Record<string, unknown> | null, modstamp: string): MatchState {
  return { recordId: '00Q000000000001AAA', matched, watched, systemModstamp: modstamp };
}

const whereRule = { select: ['Status'], changed: undefined };
const changedRule = { select: ['Status'], changed: ['OwnerId'] };

describe('on: updated with where only (updated TO meet the condition)', () => {
  it('fires when a change makes the record match, not while it keeps matching, and again after it stopped', () => {
    const s0 = state(false, { Status: 'Open' }, '2026-01-02T00:00:00.000Z');
    const d1 = decideUpdate(
      whereRule,
      s0,
      { record: rec({ Status: 'Qualified' }, '2026-01-03T00:00:00.000Z'), matches: true },
      ctx,
    )!;
    expect(d1).toMatchObject({ fire: true, previous: { Status: 'Open' }, changedFields: ['Status'] });
    expect(d1.next).toMatchObject({ matched: true, watched: { Status: 'Qualified' } });
    // still matches after an unrelated change: nothing
    const d2 = decideUpdate(
      whereRule,
      d1.next,
      { record: rec({ Status: 'Qualified' }, '2026-01-04T00:00:00.000Z'), matches: true },
      ctx,
    )!;
    expect(d2.fire).toBe(false);
    // stops matching: nothing, but remembered
    const d3 = decideUpdate(
      whereRule,
      d2.next,
      { record: rec({ Status: 'Open' }, '2026-01-05T00:00:00.000Z'), matches: false },
      ctx,
    )!;
    expect(d3.fire).toBe(false);
    expect(d3.next.matched).toBe(false);
    // matches again: fires again
    const d4 = decideUpdate(
      whereRule,
      d3.next,
      { record: rec({ Status: 'Qualified' }, '2026-01-06T00:00:00.000Z'), matches: true },
      ctx,
    )!;
    expect(d4.fire).toBe(true);
  });

  it('a re-read of the same (or an older) version decides nothing', () => {
    const s = state(false, { Status: 'Open' }, '2026-01-03T00:00:00.000Z');
    const same = { record: rec({ Status: 'Open' }, '2026-01-03T00:00:00.000Z'), matches: false };
    expect(decideUpdate(whereRule, s, same, ctx)).toBeNull();
    const older = { record: rec({ Status: 'Qualified' }, '2026-01-02T00:00:00.000Z'), matches: true };
    expect(decideUpdate(whereRule, s, older, ctx)).toBeNull();
  });

  it('a second change within the same second (same SystemModstamp, another observation) is judged', () => {
    // first change at 10:00:00 (Rating: not watched, not matching), then Status qualifies in the
    // same second: the poll reads the later version with the same stamp
    const s = state(false, { Status: 'Open' }, '2026-01-03T10:00:00.000Z');
    const later = { record: rec({ Status: 'Qualified' }, '2026-01-03T10:00:00.000Z'), matches: true };
    const d = decideUpdate(whereRule, s, later, ctx)!;
    expect(d).toMatchObject({ fire: true, previous: { Status: 'Open' }, changedFields: ['Status'] });
    // and that state read again is a re-read
    expect(decideUpdate(whereRule, d.next, later, ctx)).toBeNull();
    // a changed: rule sees a watched value move within the second
    const c = state(true, { OwnerId: '005A' }, '2026-01-03T10:00:00.000Z');
    const moved = { record: rec({ OwnerId: '005B' }, '2026-01-03T10:00:00.000Z'), matches: true };
    expect(decideUpdate(changedRule, c, moved, ctx)).toMatchObject({
      fire: true,
      changedFields: ['OwnerId'],
    });
  });

  it('first sight is the baseline: a record already matching sends nothing', () => {
    const d = decideUpdate(
      whereRule,
      undefined,
      { record: rec({ Status: 'Qualified' }, '2026-01-03T00:00:00.000Z'), matches: true },
      ctx,
    )!;
    expect(d.fire).toBe(false);
    expect(d.next).toMatchObject({ matched: true, watched: { Status: 'Qualified' } });
  });

  it('a record created after the floor and already modified takes "did not match" as its baseline', () => {
    const created = '2026-01-05T00:00:00.000Z';
    const modified = {
      record: rec({ Status: 'Qualified' }, '2026-01-05T00:00:07.000Z', created),
      matches: true,
    };
    expect(decideUpdate(whereRule, undefined, modified, ctx)).toMatchObject({
      fire: true,
      previous: {},
      changedFields: [],
    });
    // unmodified since creation: it matched from the start, no change made it match
    const fresh = { record: rec({ Status: 'Qualified' }, created, created), matches: true };
    expect(decideUpdate(whereRule, undefined, fresh, ctx)!.fire).toBe(false);
    // created before the floor: baseline
    const old = {
      record: rec({ Status: 'Qualified' }, '2026-01-05T00:00:00.000Z', '2025-12-31T23:59:59.000Z'),
      matches: true,
    };
    expect(decideUpdate(whereRule, undefined, old, ctx)!.fire).toBe(false);
    // created after the floor but longer ago than the state retention: its state may have been pruned
    const longAgo = new Date(NOW.getTime() - STATE_RETENTION_MS - 1000).toISOString();
    const pruned = { record: rec({ Status: 'Qualified' }, NOW.toISOString(), longAgo), matches: true };
    expect(decideUpdate(whereRule, undefined, pruned, { floor: '2020-01-01T00:00:00.000Z' })!.fire).toBe(
      false,
    );
    // the changed rule cannot tell which fields that change touched
    expect(decideUpdate(changedRule, undefined, modified, ctx)!.fire).toBe(false);
  });
});

describe('on: updated with changed (every change of the fields while where holds)', () => {
  it('fires on each change of a watched field while matching, with previous and changedFields', () => {
    const s0 = state(true, { OwnerId: '005A' }, '2026-01-02T00:00:00.000Z');
    const d1 = decideUpdate(
      changedRule,
      s0,
      { record: rec({ OwnerId: '005B' }, '2026-01-03T00:00:00.000Z'), matches: true },
      ctx,
    )!;
    expect(d1).toMatchObject({ fire: true, previous: { OwnerId: '005A' }, changedFields: ['OwnerId'] });
    // another field changed: no
    const d2 = decideUpdate(
      changedRule,
      d1.next,
      { record: rec({ OwnerId: '005B', Status: 'x' }, '2026-01-04T00:00:00.000Z'), matches: true },
      ctx,
    )!;
    expect(d2.fire).toBe(false);
    // the field changed but where does not hold: no, and the new value is remembered
    const d3 = decideUpdate(
      changedRule,
      d2.next,
      { record: rec({ OwnerId: '005C' }, '2026-01-05T00:00:00.000Z'), matches: false },
      ctx,
    )!;
    expect(d3.fire).toBe(false);
    expect(d3.next.watched).toEqual({ OwnerId: '005C' });
    // changed back while matching: fires again, a second qualifying change of the same record
    const d4 = decideUpdate(
      changedRule,
      d3.next,
      { record: rec({ OwnerId: '005A' }, '2026-01-06T00:00:00.000Z'), matches: true },
      ctx,
    )!;
    expect(d4).toMatchObject({ fire: true, previous: { OwnerId: '005C' } });
  });

  it('watches relationship paths and compares nested values', () => {
    const rule = { select: [], changed: ['Owner.Manager.Email'] };
    const s0 = state(true, { 'Owner.Manager.Email': 'a@x.test' }, '2026-01-02T00:00:00.000Z');
    const r = rec({ Owner: { Manager: { Email: 'b@x.test' } } }, '2026-01-03T00:00:00.000Z');
    expect(decideUpdate(rule, s0, { record: r, matches: true }, ctx)).toMatchObject({
      fire: true,
      changedFields: ['Owner.Manager.Email'],
      previous: { 'Owner.Manager.Email': 'a@x.test' },
    });
  });
});

describe('helpers', () => {
  it('reads nested paths case-insensitively and null for missing parents', () => {
    expect(valueAt({ Owner: { Email: 'a@b.c' } }, 'owner.email')).toBe('a@b.c');
    expect(valueAt({ Owner: null }, 'Owner.Email')).toBeNull();
    expect(valueAt({}, 'Status')).toBeNull();
    expect(watchedFields({ select: ['A', 'B'], changed: undefined })).toEqual(['A', 'B']);
    expect(watchedFields({ select: ['A'], changed: ['C'] })).toEqual(['C']);
  });

  it('the ledger key is the record and its change version', () => {
    expect(changeVersion('2026-01-03T04:05:06.000Z')).toBe('20260103T040506Z');
    expect(changeVersion('2026-01-03T04:05:06.000+0000'.replace('+0000', 'Z'))).toBe('20260103T040506Z');
    expect(updateLedgerKey('00Q000000000001AAA', '2026-01-03T04:05:06.000Z')).toBe(
      '00Q000000000001AAA.20260103T040506Z',
    );
  });
});
