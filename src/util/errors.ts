// The one error vocabulary, in the manner of nodemailer's lib/errors.js: every error the program
// raises on purpose carries a stable string `code` from CODES. Callers decide from the code (exit
// status, retry, which outbox column to fill), never from `err.name` or the message text.

/** code -> what it means. SMTP transport codes are nodemailer's own, passed through unchanged. */
export const CODES = {
  // the user's input: exit 2
  ECONFIG: 'the configuration is invalid',
  EUSAGE: 'the command line is invalid',
  ETEMPLATE: 'a template does not compile',
  // start-up
  ESTARTUP: 'a part could not start (busy port, unreachable dependency)',
  // one record's notification (the row is dead-lettered, nothing else stops)
  ERENDER: 'a template failed for this record',
  EADDRESS: 'an address is not valid',
  ERECIPIENT: "a recipient is outside the rule's allowRecipients",
  ENORECIPIENTS: 'the message would have no recipient',
  EHEADER: 'a value would have injected a header',
  // the store
  ESTORELOCKED: 'another process holds the store',
  ESTOREMISSING: 'the store does not exist yet',
  ESTORECLOSED: 'the store was used after close()',
  ESTOREUNAVAILABLE: 'the store cannot be reached or its connection died (retried later)',
  ESTORECORRUPT: 'the store file cannot be read as a database',
  ELEASELOST: "this replica no longer holds the rule's lease: the write was refused",
  // Salesforce
  ESALESFORCE: 'Salesforce refused or failed a request',
  EMALFORMED: 'Salesforce sent a reply that cannot be read',
  // the org emulator
  EBODYTOOLARGE: 'a request body is over the size limit (413)',
  // delivery (the outbox keeps the code of a row's last failure in last_error_code)
  ESEND: 'a channel failed to deliver (no transport code)',
  EWORKER: 'the SMTP worker thread failed',
  EABANDONED: 'the process stopped while the row was being sent',
  EPACED: 'the send pacer held the row back (smtp.rateLimit, smtp.dailyLimit); not an attempt',
  ECONNECTION: 'SMTP: connection closed or refused (nodemailer)',
  ETIMEDOUT: 'SMTP: timed out (nodemailer)',
  ESOCKET: 'SMTP: socket error (nodemailer)',
  EDNS: 'SMTP: host name did not resolve (nodemailer)',
  EAUTH: 'SMTP: authentication failed (nodemailer)',
  ENOAUTH: 'SMTP: no credentials for a server that requires them (nodemailer)',
  ETLS: 'SMTP: TLS or STARTTLS failed (nodemailer)',
  EREQUIRETLS: 'SMTP: STARTTLS required but not offered (nodemailer)',
  EENVELOPE: 'SMTP: sender or recipients refused (nodemailer)',
  EMESSAGE: 'SMTP: message refused (nodemailer)',
  EPROTOCOL: 'SMTP: unexpected server reply (nodemailer)',
  EABORT: 'SMTP: send aborted at its deadline (nodemailer)',
  EHTTP: 'webhook, Slack or Teams: the receiver answered with a failure status (kept with the reply)',
  EREDIRECT: 'webhook, Slack or Teams: the receiver answered with a redirect, which is not followed',
  EHTTPTIMEOUT: 'webhook, Slack or Teams: no connection, or no reply before the request was written, in time',
  EHTTPCONNECTION:
    'webhook, Slack or Teams: connection refused, reset or not resolved before the request was written',
  EUNCERTAIN:
    'webhook, Slack or Teams: the deadline passed or the connection broke after the request was written',
} as const;

export type ErrorCode = keyof typeof CODES;

/** Exit codes of every command. */
export const EXIT = { OK: 0, FAILURE: 1, INVALID: 2, UNREACHABLE: 3 } as const;

/** Every catch boundary turns what it caught into an Error (with the original as cause). */
export function coerceError(err: unknown): Error & { code?: string } {
  if (err instanceof Error) return err;
  if (typeof err === 'string') return new Error(err);
  try {
    return new Error(JSON.stringify(err), { cause: err });
  } catch {
    return new Error(String(err), { cause: err });
  }
}

/** The code of anything caught: ours, a library's (nodemailer, Node's ERR_*), or undefined. */
export function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** The exit status for an error that ends a command: from its code alone. */
export function exitCodeOf(err: unknown): number {
  const code = codeOf(err);
  if (code === 'ECONFIG' || code === 'EUSAGE' || code === 'ETEMPLATE') return EXIT.INVALID;
  if (code?.startsWith('ERR_PARSE_ARGS')) return EXIT.INVALID; // node:util parseArgs
  return EXIT.FAILURE;
}

/** A problem with the user's config (or templates): exit 2, each issue one line. */
export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly code = 'ECONFIG';
  readonly issues: string[];
  constructor(issues: string[]) {
    super(issues.join('\n'));
    this.issues = issues;
  }
}

/** A bad command line (unknown option value, missing flag, no such row): exit 2 with the usage. */
export class UsageError extends Error {
  override name = 'UsageError';
  readonly code = 'EUSAGE';
}

/** A part could not start (a busy port, an unreachable dependency): the message is for the user as it is. */
export class StartupError extends Error {
  override name = 'StartupError';
  readonly code = 'ESTARTUP';
}
