// The one way the program runs a SOQL query over REST: the first request, then `nextRecordsUrl`
// page by page until `done`. Pages are yielded one at a time, so a caller that commits each page
// before asking for the next never holds more than one page, and never reads past a failure.
import type { Connection } from 'jsforce';
import { asQueryPage, type QueryPage } from './records.ts';

export interface QueryOptions {
  /** extra request headers, e.g. Sforce-Query-Options: batchSize=2000 */
  headers?: Record<string, string>;
  /** per-request options for jsforce: `timeout` (ms), `retry` (jsforce retries GETs on 5xx) */
  http?: { timeout?: number; retry?: { maxRetries?: number; minTimeout?: number } };
  /** called after every request (API usage, call counts) */
  onRequest?: () => void;
}

export function queryUrl(apiVersion: string, soql: string): string {
  return `/services/data/v${apiVersion}/query?q=${encodeURIComponent(soql)}`;
}

/** Every page of the query's result, each parsed (a malformed reply throws MalformedReplyError). */
export async function* queryPages(
  conn: Connection,
  apiVersion: string,
  soql: string,
  opts: QueryOptions = {},
): AsyncGenerator<QueryPage> {
  let url: string | undefined = queryUrl(apiVersion, soql);
  while (url) {
    const body: unknown = await conn.request(
      { method: 'GET', url, ...(opts.headers ? { headers: opts.headers } : {}) },
      opts.http ?? {},
    );
    opts.onRequest?.();
    const page = asQueryPage(body);
    yield page;
    url = page.done ? undefined : page.nextRecordsUrl;
  }
}

/** The first page only (LIMIT queries, one-record look-ups). */
export async function queryFirstPage(
  conn: Connection,
  apiVersion: string,
  soql: string,
  opts: QueryOptions = {},
): Promise<QueryPage> {
  for await (const page of queryPages(conn, apiVersion, soql, opts)) return page;
  throw new Error('query returned no page');
}
