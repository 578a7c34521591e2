// How fast the org emulator itself serves query pages, so pipeline benchmarks can tell emulator
// cost from pipeline cost. `node bench/emulator.ts`: inserts 20,000 Leads, then reads them in
// 2,000-record pages through jsforce (autoFetch) and through raw fetch, and prints pages/s and
// records/s for both, plus the jsforce/raw ratio.
import jsforce from 'jsforce';
import { DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, startEmulator } from '../src/emulator/index.ts';

const LEADS = 20_000;
const PAGE = 2_000;
const ROUNDS = 3;
const SOQL =
  'SELECT Id, FirstName, LastName, Company, Email, LeadSource, CreatedDate, SystemModstamp, Owner.Email FROM Lead ORDER BY CreatedDate, Id';

for (const k of ['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY']) delete process.env[k];

const emu = await startEmulator();
try {
  const t0 = performance.now();
  emu.control.insert(
    'Lead',
    Array.from({ length: LEADS }, (_, i) => ({
      FirstName: `First${i}`,
      LastName: `Last${i}`,
      Company: `Company ${i % 500}`,
      Email: `lead${i}@example.com`,
      LeadSource: 'Web',
    })),
  );
  const insertMs = performance.now() - t0;

  const conn = new jsforce.Connection({
    loginUrl: emu.url,
    version: '62.0',
    oauth2: { loginUrl: emu.url, clientId: DEFAULT_CLIENT_ID, clientSecret: DEFAULT_CLIENT_SECRET },
  });
  await conn.authorize({ grant_type: 'client_credentials' });
  // jsforce writes Authorization into the headers object it is given: a fresh one per run
  const queryOptions = () => ({ 'Sforce-Query-Options': `batchSize=${PAGE}` });

  const viaJsforce = async (): Promise<number> => {
    const res = await conn.query(SOQL).run({ autoFetch: true, maxFetch: LEADS, headers: queryOptions() });
    return res.records.length;
  };
  const viaFetch = async (): Promise<number> => {
    const auth = { authorization: `Bearer ${conn.accessToken}`, ...queryOptions() };
    let url: string | undefined = `${emu.url}/services/data/v62.0/query?q=${encodeURIComponent(SOQL)}`;
    let n = 0;
    while (url) {
      const res = await fetch(url, { headers: auth });
      const body = (await res.json()) as { records: unknown[]; nextRecordsUrl?: string };
      if (!res.ok) throw new Error(`raw fetch: HTTP ${res.status} ${JSON.stringify(body)}`);
      n += body.records.length;
      url = body.nextRecordsUrl ? emu.url + body.nextRecordsUrl : undefined;
    }
    return n;
  };

  const measure = async (name: string, run: () => Promise<number>) => {
    await run(); // warm-up
    const start = performance.now();
    let records = 0;
    for (let i = 0; i < ROUNDS; i++) records += await run();
    const s = (performance.now() - start) / 1000;
    if (records !== LEADS * ROUNDS)
      throw new Error(`${name}: read ${records} records, expected ${LEADS * ROUNDS}`);
    const pages = records / PAGE;
    return { name, pagesPerS: pages / s, recordsPerS: records / s, msPerPage: (s * 1000) / pages };
  };

  const js = await measure('jsforce', viaJsforce);
  const raw = await measure('raw fetch', viaFetch);
  console.log(
    `emulator bench: ${LEADS} Leads inserted in ${insertMs.toFixed(0)} ms; pages of ${PAGE}, ${ROUNDS} rounds each`,
  );
  for (const r of [js, raw]) {
    console.log(
      `  ${r.name.padEnd(10)} ${r.pagesPerS.toFixed(1).padStart(7)} pages/s ${r.recordsPerS.toFixed(0).padStart(8)} records/s ${r.msPerPage.toFixed(1).padStart(6)} ms/page`,
    );
  }
  console.log(`  jsforce/raw time ratio: ${(raw.recordsPerS / js.recordsPerS).toFixed(2)}x`);
} finally {
  await emu.close();
}
