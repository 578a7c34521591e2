// Secret values of a config (for scrubbing logs and messages) and a redacted copy for display.
import { REDACTED, SECRET_KEYS } from '../util/secrets.ts';
import { isRecord } from './issues.ts';
import { readText } from './paths.ts';
import type { Config } from './schema.ts';

const secretKeys = new Set(SECRET_KEYS);

/** values that must never be logged: passwords, secrets, tokens, private keys (resolved values) */
export function secretsOf(config: Config): string[] {
  const out = new Set<string>();
  collectSecretValues(config, out);
  const auth = config.salesforce.auth;
  if (auth.flow === 'password' && auth.securityToken) out.add(auth.password + auth.securityToken);
  const keyFiles = [
    ...(auth.flow === 'jwt' ? [auth.privateKeyFile] : []),
    ...(config.smtp.dkim ? [config.smtp.dkim.privateKeyFile] : []),
  ];
  for (const file of keyFiles) {
    const pem = readText(file);
    if (pem?.trim()) {
      out.add(pem);
      out.add(pem.trim());
    }
  }
  const pw = storePassword(config.store);
  if (pw) {
    out.add(pw);
    out.add(decodeURIComponent(pw));
  }
  channelSecrets(config.rules, out);
  return [...out].filter((s) => s.length > 0);
}

/**
 * Channel values that are credentials though their key says nothing: every webhook header value
 * (Authorization: Bearer ..., X-Api-Key: ...), and a webhook URL's password and query string
 * (tokens are often passed as ?token=...).
 */
function channelSecrets(rules: unknown, out: Set<string>): void {
  if (!Array.isArray(rules)) return;
  for (const rule of rules) {
    const hook = isRecord(rule) ? rule.webhook : undefined;
    if (!isRecord(hook)) continue;
    if (isRecord(hook.headers)) {
      for (const v of Object.values(hook.headers)) if (typeof v === 'string' && v !== '') out.add(v);
    }
    if (typeof hook.url === 'string') {
      try {
        const u = new URL(hook.url);
        if (u.password) out.add(u.password);
        if (u.search.length > 1) out.add(u.search.slice(1));
      } catch {
        // not a URL: the schema reports it
      }
    }
  }
}

/** a deep copy with every secret replaced by '[redacted]', for `status`/`check` output */
export function redactConfig(config: Config): unknown {
  const secrets = secretsOf(config).sort((a, b) => b.length - a.length);
  const scrub = (s: string) => secrets.reduce((acc, secret) => acc.split(secret).join(REDACTED), s);
  const walk = (value: unknown, key?: string): unknown => {
    if (typeof value === 'string') {
      if (key !== undefined && secretKeys.has(key) && value !== '') return REDACTED;
      if (key === 'store') return redactUrlPassword(scrub(value));
      return scrub(value);
    }
    if (Array.isArray(value)) return value.map((v) => walk(v));
    if (isRecord(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v, k)]));
    return value;
  };
  return walk(config);
}

function collectSecretValues(value: unknown, out: Set<string>, key?: string): void {
  if (typeof value === 'string') {
    if (key !== undefined && secretKeys.has(key) && value !== '') out.add(value);
  } else if (Array.isArray(value)) value.forEach((v) => collectSecretValues(v, out));
  else if (isRecord(value)) for (const [k, v] of Object.entries(value)) collectSecretValues(v, out, k);
}

/** secrets of data that may not have passed the schema: for scrubbing error messages */
export function collectSecretsRaw(data: unknown): string[] {
  const out = new Set<string>();
  collectSecretValues(data, out);
  if (isRecord(data)) channelSecrets(data.rules, out);
  if (isRecord(data) && typeof data.store === 'string') {
    const pw = storePassword(data.store);
    if (pw) out.add(pw);
  }
  return [...out];
}

function storePassword(store: string): string | undefined {
  if (!/^postgres(ql)?:/.test(store)) return undefined;
  try {
    return new URL(store).password || undefined;
  } catch {
    return undefined;
  }
}

function redactUrlPassword(store: string): string {
  const pw = storePassword(store);
  if (!pw) return store;
  const url = new URL(store);
  url.password = 'redacted';
  return url.toString().replace(':redacted@', `:${REDACTED}@`);
}
