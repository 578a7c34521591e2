// One org emulator per test file, with the default credentials, and jsforce connections to it.
//   const h = useEmulator();            // in the file's top level: starts in beforeAll, closes in afterAll
//   const conn = await h.connect();     // a real jsforce Connection (client_credentials)
import { afterAll, beforeAll } from 'vitest';
import jsforce from 'jsforce';
import type { Connection } from 'jsforce';
import {
  DEFAULT_CLIENT_ID,
  DEFAULT_CLIENT_SECRET,
  DEFAULT_PASSWORD,
  DEFAULT_USERNAME,
  startEmulator,
} from '../../src/emulator/index.ts';
import type { Emulator, EmulatorOptions } from '../../src/emulator/index.ts';
import { connectSalesforce, createConnection } from '../../src/sources/salesforce/connection.ts';

export const CREDENTIALS = {
  clientId: DEFAULT_CLIENT_ID,
  clientSecret: DEFAULT_CLIENT_SECRET,
  username: DEFAULT_USERNAME,
  password: DEFAULT_PASSWORD,
} as const;

export const API_VERSION = '62.0';

export interface EmulatorHandle {
  readonly emu: Emulator;
  readonly url: string;
  /** a jsforce Connection authorized with client_credentials (the default connected app) */
  connect(): Promise<Connection>;
  /** a jsforce Connection that knows the OAuth client but is not authorized yet */
  connection(extra?: Record<string, unknown>): Connection;
}

export function useEmulator(opts: EmulatorOptions = {}): EmulatorHandle {
  let emu: Emulator | undefined;
  beforeAll(async () => {
    emu = await startEmulator(opts);
  });
  afterAll(async () => {
    await emu?.close();
  });
  const get = (): Emulator => {
    if (!emu) throw new Error('emulator not started (use useEmulator() at the top level of the test file)');
    return emu;
  };
  const handle: EmulatorHandle = {
    get emu() {
      return get();
    },
    get url() {
      return get().url;
    },
    connection(extra = {}) {
      const url = get().url;
      return new jsforce.Connection({
        loginUrl: url,
        version: API_VERSION,
        oauth2: { loginUrl: url, clientId: CREDENTIALS.clientId, clientSecret: CREDENTIALS.clientSecret },
        ...extra,
      });
    },
    async connect() {
      const conn = handle.connection();
      await conn.authorize({ grant_type: 'client_credentials' });
      return conn;
    },
  };
  return handle;
}

/** The emulator as the pipeline's config names it: client_credentials with the default app. */
export function emulatorSalesforceConfig(url: string) {
  return {
    loginUrl: url,
    apiVersion: API_VERSION,
    requestTimeoutMs: 10_000,
    auth: {
      flow: 'client_credentials' as const,
      clientId: DEFAULT_CLIENT_ID,
      clientSecret: DEFAULT_CLIENT_SECRET,
    },
  };
}

/** The pipeline's own connection (sources/salesforce/connection.ts) to the emulator, authenticated. */
export async function sourceConnection(url: string, dir: string): Promise<Connection> {
  const sf = emulatorSalesforceConfig(url);
  const conn = createConnection(sf, dir);
  await connectSalesforce(conn, sf, dir);
  return conn;
}
