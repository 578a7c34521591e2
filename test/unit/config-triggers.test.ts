// Config keys of the triggers beyond created: on, changed (and their cross-checks).
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/index.ts';
import { ConfigError } from '../../src/util/errors.ts';

function config(ruleExtra: string): string {
  return `salesforce:
  auth: { flow: client_credentials, clientId: abc, clientSecret: s3cret }
smtp: { host: smtp.example.com, port: 587 }
rules:
  - name: r
${ruleExtra}
    email: { from: a@example.com, to: b@example.com, subject: s, text: t }
`;
}

function issues(text: string): string[] {
  try {
    parseConfigText(text, 'notifier.yaml', { env: {} });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues;
  }
  throw new Error('config parsed without error');
}

describe('on / changed', () => {
  it('on defaults to created; updated takes where and changed, relationship paths up to five levels', () => {
    const plain = parseConfigText(config('    where: "Status = \'x\'"'), 'notifier.yaml', { env: {} });
    expect(plain.rules[0]!.on).toBe('created');
    expect(plain.rules[0]!.changed).toBeUndefined();
    const upd = parseConfigText(
      config(
        '    on: updated\n    where: "LeadSource = \'Web\'"\n    changed: [OwnerId, Owner.Manager.Email]\n    select: [Owner.Manager.Manager.Manager.Email]',
      ),
      'notifier.yaml',
      { env: {} },
    );
    expect(upd.rules[0]).toMatchObject({ on: 'updated', changed: ['OwnerId', 'Owner.Manager.Email'] });
  });

  it('refuses changed without on: updated, an updated rule with neither where nor changed, and bad fields', () => {
    expect(issues(config('    changed: [OwnerId]'))).toEqual([
      'notifier.yaml:6 rules[0].changed: needs on: updated (a created rule fires once per new record, not on changes)',
    ]);
    expect(issues(config('    on: updated'))[0]).toContain(
      'rules[0].on: on: updated needs `where` (fire when a change makes the record match it) or `changed`',
    );
    const bad = issues(
      config('    on: updated\n    changed: [OwnerId, ownerid, SystemModstamp, A.B.C.D.E.F]'),
    );
    expect(bad.some((i) => i.includes("rules[0].changed[1]: repeats 'ownerid'"))).toBe(true);
    expect(bad.some((i) => i.includes("rules[0].changed[2]: 'SystemModstamp' changes with every save"))).toBe(
      true,
    );
    expect(bad.some((i) => i.includes('rules[0].changed[3]: must be a field API name'))).toBe(true);
    expect(issues(config('    on: deleted\n    where: "x = 1"'))[0]).toContain('rules[0].on');
    expect(issues(config('    on: updated\n    changed: []'))[0]).toContain('list at least one field');
  });

  it('digest: schedule is checked, maxRecords defaults to 500, sendEmpty to false', () => {
    const ok = parseConfigText(config('    digest: { schedule: "0 0 8 * * 1-5" }'), 'notifier.yaml', {
      env: {},
    });
    expect(ok.rules[0]!.digest).toEqual({ schedule: '0 0 8 * * 1-5', maxRecords: 500, sendEmpty: false });
    expect(issues(config('    digest: { schedule: "every morning" }'))[0]).toContain(
      'rules[0].digest.schedule: invalid cron expression "every morning"',
    );
    expect(issues(config('    digest: { schedule: "* * * * *", maxRecords: 0 }'))[0]).toContain(
      'rules[0].digest.maxRecords',
    );
  });
});
