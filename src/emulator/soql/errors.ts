// The error every emulator component raises: a Salesforce errorCode, the HTTP status the REST API
// answers with, and the fields involved (REST error body: [{ message, errorCode, fields }]).

const STATUS: Record<string, number> = { NOT_FOUND: 404, ENTITY_IS_DELETED: 404 };

export class SalesforceError extends Error {
  /** the program's code (util/errors.ts CODES); `errorCode` is Salesforce's own, e.g. INVALID_FIELD */
  readonly code = 'ESALESFORCE';
  readonly errorCode: string;
  readonly status: number;
  readonly fields?: string[];
  constructor(errorCode: string, message: string, opts: { status?: number; fields?: string[] } = {}) {
    super(message);
    this.name = 'SalesforceError';
    this.errorCode = errorCode;
    this.status = opts.status ?? STATUS[errorCode] ?? 400;
    if (opts.fields) this.fields = opts.fields;
  }

  /** one element of the REST API error body */
  toJSON(): { message: string; errorCode: string; fields?: string[] } {
    const body: { message: string; errorCode: string; fields?: string[] } = {
      message: this.message,
      errorCode: this.errorCode,
    };
    if (this.fields) body.fields = this.fields;
    return body;
  }
}

/** 0-based offset into the query text */
export type Pos = number;

/**
 * A query error in Salesforce's format: the offending line, a caret, "ERROR at Row:r:Column:c",
 * then the reason (as the REST API returns for MALFORMED_QUERY / INVALID_FIELD / INVALID_TYPE).
 */
export function queryError(code: string, soql: string, pos: Pos, reason: string): SalesforceError {
  const before = soql.slice(0, Math.max(0, Math.min(pos, soql.length)));
  const row = before.split('\n').length;
  const lineStart = before.lastIndexOf('\n') + 1;
  const col = before.length - lineStart + 1;
  const lineEnd = soql.indexOf('\n', lineStart);
  const line = soql.slice(lineStart, lineEnd === -1 ? undefined : lineEnd);
  const message = `\n${line}\n${' '.repeat(col - 1)}^\nERROR at Row:${row}:Column:${col}\n${reason}`;
  return new SalesforceError(code, message);
}
