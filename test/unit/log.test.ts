// Secret keys in logged objects: censored at the object's own level and one or two levels down
// (errors included, once serialized), without touching the caller's objects.
import { describe, expect, it } from 'vitest';
import { censorSecretKeys, createLogger } from '../../src/util/log.ts';

function capture(): { lines: () => Record<string, unknown>[]; write: (l: string) => boolean } {
  const out: string[] = [];
  return {
    write: (l: string) => out.push(l) > 0,
    lines: () =>
      out
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

describe('log redaction of secret keys', () => {
  it('censors secret keys at depth 0, 1 and 2, in arrays too, and leaves other fields and the input alone', () => {
    const dest = capture();
    const log = createLogger({ level: 'info', format: 'json', destination: dest });
    const input = {
      password: 'p0',
      outboxId: 7,
      smtp: { host: 'mail.example.com', pass: 'p1', auth: { accessToken: 't2', user: 'u' } },
      list: [{ clientSecret: 's1' }],
      req: { headers: { authorization: 'Bearer abc', accept: '*/*' } },
      deep: { a: { b: { password: 'depth-3 is beyond the redaction depth' } } },
    };
    const before = structuredClone(input);
    log.info(input, 'line');
    const [line] = dest.lines();
    expect(line).toMatchObject({
      password: '[redacted]',
      outboxId: 7,
      smtp: { host: 'mail.example.com', pass: '[redacted]', auth: { accessToken: '[redacted]', user: 'u' } },
      list: [{ clientSecret: '[redacted]' }],
      req: { headers: { authorization: '[redacted]', accept: '*/*' } },
      deep: { a: { b: { password: 'depth-3 is beyond the redaction depth' } } },
      msg: 'line',
    });
    expect(input).toEqual(before);
  });

  it('an error keeps its message and stack, and loses secret keys of its own and one level down', () => {
    const dest = capture();
    const log = createLogger({ level: 'info', format: 'json', destination: dest });
    const err = Object.assign(new Error('login refused'), {
      password: 'e1',
      config: { refreshToken: 'e2', url: 'x' },
    });
    log.error({ err }, 'failed');
    const [line] = dest.lines() as [{ err: Record<string, unknown> }];
    expect(line.err).toMatchObject({
      message: 'login refused',
      password: '[redacted]',
      config: { refreshToken: '[redacted]', url: 'x' },
    });
    expect(String(line.err.stack)).toContain('login refused');
    expect(err.password).toBe('e1');
  });

  it("child bindings' secret keys are censored too", () => {
    const dest = capture();
    const log = createLogger({ level: 'info', format: 'json', destination: dest }).child({
      component: 'x',
      privateKey: 'k',
    });
    log.info('hello');
    expect(dest.lines()[0]).toMatchObject({ component: 'x', privateKey: '[redacted]' });
  });

  it('returns the very same object when there is nothing to censor', () => {
    const o = { a: 1, b: { c: [1, 2, { d: 'x' }] } };
    expect(censorSecretKeys(o)).toBe(o);
  });
});
