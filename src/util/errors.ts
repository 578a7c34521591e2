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

/** A problem with the user's input (config, templates, CLI args): exit 2. */
export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly issues: string[];
  constructor(issues: string[]) {
    super(issues.join('\n'));
    this.issues = issues;
  }
}
