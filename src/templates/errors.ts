// Error types of the template layer: config-time (TemplateError, exit 2 in `check`/`run`) and
// per-record (RenderError: the caller dead-letters that one row with err.message as reason).
import type { ErrorCode } from '../util/errors.ts';

/** A rule's template could not be compiled: syntax error, missing file or partial, bad header name. */
export class TemplateError extends Error {
  override name = 'TemplateError';
  readonly code = 'ETEMPLATE';
  /** where in the rule, e.g. 'email.subject', 'email.attachments[0].content', 'email.headers.X-Foo' */
  readonly keyPath: string;
  constructor(keyPath: string, message: string, options?: { cause?: unknown }) {
    super(`${keyPath}: ${message}`, options);
    this.keyPath = keyPath;
  }
}

/** codes from util/errors.ts CODES */
export type RenderErrorCode = Extract<
  ErrorCode,
  'ERENDER' | 'ERECIPIENT' | 'ENORECIPIENTS' | 'EADDRESS' | 'EHEADER'
>;

/** One record could not be rendered into a message we are willing to send. */
export class RenderError extends Error {
  override name = 'RenderError';
  readonly code: RenderErrorCode;
  /** the rule key the problem is in, e.g. 'email.to' */
  readonly keyPath: string | undefined;
  /** the offending address, for ERECIPIENT and EADDRESS */
  readonly address: string | undefined;
  constructor(
    code: RenderErrorCode,
    message: string,
    options?: { keyPath?: string; address?: string; cause?: unknown },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.keyPath = options?.keyPath;
    this.address = options?.address;
  }
}
