// The error a call throws, for assertions on its fields (code, status, message).
import { SalesforceError } from '../../src/emulator/org.ts';

export function errorOf(fn: () => unknown): SalesforceError {
  try {
    fn();
  } catch (e) {
    if (e instanceof SalesforceError) return e;
    throw new Error(`expected a SalesforceError, got ${String(e)}`, { cause: e });
  }
  throw new Error('expected an error, got none');
}
