// Cross-checks the schema cannot express: cron, TLS ports, JWT and DKIM keys, CA file, store URL, where, select.
import { createPrivateKey } from 'node:crypto';
import { resolve } from 'node:path';
import { validateDetailed } from 'node-cron';
import { coerceError } from '../util/errors.ts';
import { parseDuration } from '../util/duration.ts';
import { isRecord } from './issues.ts';
import type { Issue, KeyPath } from './issues.ts';
import { readText, storeLocation } from './paths.ts';
import { triggerChecks } from './trigger-checks.ts';

// cross-checks: run per section, so a mistake in one section does not hide those in another

export function crossChecks(data: unknown, baseDir: string): Issue[] {
  const issues: Issue[] = [];
  if (!isRecord(data)) return issues;
  // These read the raw values with type guards rather than the parsed config, so that a mistake
  // elsewhere in the same section does not hide them: every problem is reported in one go.

  const auth = isRecord(data.salesforce) ? data.salesforce.auth : undefined;
  if (
    isRecord(auth) &&
    auth.flow === 'jwt' &&
    typeof auth.privateKeyFile === 'string' &&
    auth.privateKeyFile
  ) {
    const file = resolve(baseDir, auth.privateKeyFile);
    const path = ['salesforce', 'auth', 'privateKeyFile'];
    const pem = readText(file);
    if (pem === undefined) issues.push({ path, message: `private key file not found: ${file}` });
    else {
      try {
        createPrivateKey({ key: pem, format: 'pem' });
      } catch (err) {
        const why = coerceError(err).message;
        issues.push({ path, message: `is not a PEM private key: ${file} (${why})` });
      }
    }
  }

  if (isRecord(data.smtp)) issues.push(...smtpChecks(data.smtp, baseDir));

  if (typeof data.store === 'string') {
    try {
      storeLocation(data.store, baseDir);
    } catch (err) {
      // the schema's own message says the same about an unknown scheme
      if (/^(sqlite|postgres|postgresql):/.test(data.store)) {
        issues.push({ path: ['store'], message: coerceError(err).message });
      }
    }
  }

  if (isRecord(data.http) && isRecord(data.http.sendApi)) {
    if (data.http.enabled === false)
      issues.push({ path: ['http', 'sendApi'], message: 'needs the HTTP server: http.enabled is false' });
    issues.push(...sendApiChecks(data.http.sendApi));
  }

  if (Array.isArray(data.rules)) {
    const seen = new Map<string, number>();
    data.rules.forEach((rule: unknown, i: number) => {
      if (!isRecord(rule)) return;
      if (typeof rule.name === 'string') {
        const prev = seen.get(rule.name);
        if (prev !== undefined) {
          issues.push({
            path: ['rules', i, 'name'],
            message: `duplicate rule name '${rule.name}' (also rules[${prev}])`,
          });
        } else seen.set(rule.name, i);
      }
      issues.push(...ruleChecks(rule, i), ...triggerChecks(rule, i));
    });
  }
  return issues;
}

function smtpChecks(smtp: Record<string, unknown>, baseDir: string): Issue[] {
  const issues: Issue[] = [];
  const port = smtp.port === undefined ? 587 : smtp.port;
  const secure = smtp.secure === undefined ? false : smtp.secure;
  const secureAt = 'secure' in smtp ? ['smtp', 'secure'] : ['smtp', 'port'];
  // RFC 8314: 465 is "implicit TLS" (TLS from the first byte); RFC 6409 + RFC 3207: 587 is
  // submission, plain text upgraded by STARTTLS. Mixing them hangs or fails the TLS handshake.
  if (secure === true && port === 587) {
    issues.push({
      path: ['smtp', 'secure'],
      at: secureAt,
      message:
        'port 587 is STARTTLS (plain connection, upgraded to TLS): set secure: false, and requireTLS: true to ' +
        'insist on the upgrade; secure: true (implicit TLS) is for port 465',
    });
  }
  if (secure === false && port === 465) {
    issues.push({
      path: ['smtp', 'secure'],
      at: secureAt,
      message:
        'port 465 is implicit TLS (TLS from the first byte): set secure: true; secure: false is for ' +
        'port 587 or 25, where STARTTLS upgrades a plain connection',
    });
  }
  if (smtp.ignoreTLS === true && smtp.requireTLS === true) {
    issues.push({
      path: ['smtp', 'ignoreTLS'],
      message:
        'ignoreTLS and requireTLS contradict each other: requireTLS insists on STARTTLS, ignoreTLS never uses it',
    });
  }
  const dkimKey = isRecord(smtp.dkim) ? smtp.dkim.privateKeyFile : undefined;
  if (typeof dkimKey === 'string' && dkimKey !== '') {
    const file = resolve(baseDir, dkimKey);
    const path = ['smtp', 'dkim', 'privateKeyFile'];
    const pem = readText(file);
    if (pem === undefined) issues.push({ path, message: `private key file not found: ${file}` });
    else {
      try {
        // nodemailer's signer takes RSA (rsa-sha256) and Ed25519 keys; anything else fails every send
        const type = createPrivateKey({ key: pem, format: 'pem' }).asymmetricKeyType;
        if (type !== 'rsa' && type !== 'ed25519')
          issues.push({ path, message: `is a ${type} key, DKIM needs RSA or Ed25519: ${file}` });
      } catch (err) {
        const why = coerceError(err).message;
        issues.push({ path, message: `is not a PEM private key: ${file} (${why})` });
      }
    }
  }
  const ca = isRecord(smtp.tls) ? smtp.tls.ca : undefined;
  if (typeof ca === 'string' && ca !== '') {
    const file = resolve(baseDir, ca);
    const pem = readText(file);
    if (pem === undefined)
      issues.push({ path: ['smtp', 'tls', 'ca'], message: `CA file not found: ${file}` });
    else if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
      issues.push({ path: ['smtp', 'tls', 'ca'], message: `does not contain a PEM certificate: ${file}` });
    }
  }
  return issues;
}

function ruleChecks(rule: Record<string, unknown>, i: number): Issue[] {
  const issues: Issue[] = [];
  const at = (...p: KeyPath): KeyPath => ['rules', i, ...p];

  const channels = ['email', 'webhook', 'slack', 'teams'].filter((k) => rule[k] !== undefined);
  if (channels.length === 0) {
    issues.push({ path: at('email'), message: 'needs at least one channel: email, webhook, slack or teams' });
  } else if (rule.digest !== undefined && channels.join() !== 'email') {
    const other = channels.find((c) => c !== 'email')!;
    issues.push({ path: at(other), message: 'a digest rule sends email only: remove it, or the digest' });
  }

  if (typeof rule.schedule === 'string') {
    const schedule = rule.schedule.trim();
    const cron = validateDetailed(schedule);
    if (!cron.valid) {
      const first = cron.errors[0];
      let why: string;
      if (!first || first.field === 'expression') {
        const n = schedule.split(/\s+/).filter(Boolean).length;
        why =
          `has ${n} field(s); node-cron takes 6 (second minute hour day-of-month month day-of-week) ` +
          'or 5 (without seconds)';
      } else {
        why = cron.errors.map((e) => `the ${e.field} field '${e.value ?? ''}' is invalid`).join('; ');
      }
      issues.push({ path: at('schedule'), message: `invalid cron expression "${rule.schedule}": ${why}` });
    }
  }

  // the schema checks the format; this catches what the format allows but no calendar has
  if (typeof rule.startFrom === 'string' && rule.startFrom !== 'now' && /^\d{4}-/.test(rule.startFrom)) {
    if (Number.isNaN(Date.parse(rule.startFrom))) {
      issues.push({ path: at('startFrom'), message: 'is not a valid instant' });
    }
  }
  if (typeof rule.lookback === 'string' && /^\d+(ms|s|m|h)$/.test(rule.lookback)) {
    try {
      parseDuration(rule.lookback);
    } catch (err) {
      issues.push({ path: at('lookback'), message: coerceError(err).message });
    }
  }

  if (Array.isArray(rule.select)) {
    // SOQL field names are case-insensitive
    const firstIndex = new Map<string, number>();
    rule.select.forEach((field: unknown, j: number) => {
      if (typeof field !== 'string') return;
      const k = field.toLowerCase();
      const prev = firstIndex.get(k);
      if (prev !== undefined) {
        issues.push({ path: at('select', j), message: `repeats '${field}' (already select[${prev}])` });
      } else firstIndex.set(k, j);
    });
  }

  if (typeof rule.where === 'string') {
    // look at keywords outside string literals only (quotes escaped with \', per the SOQL reference)
    const bare = rule.where.replace(/'(?:\\.|[^'\\])*'/g, "''");
    if (bare.trim() === '')
      issues.push({ path: at('where'), message: 'must not be empty (omit it instead)' });
    if (/^\s*WHERE\b/i.test(bare)) {
      issues.push({ path: at('where'), message: 'write the condition only, without the WHERE keyword' });
    }
    const clause = /\b(ORDER\s+BY|LIMIT|OFFSET|GROUP\s+BY|FOR\s+UPDATE)\b/i.exec(bare);
    if (clause) {
      const word = clause[1]!.toUpperCase().replace(/\s+/g, ' ');
      issues.push({
        path: at('where'),
        message: `must be a condition only: remove ${word} (the worker orders and pages itself)`,
      });
    }
  }
  return issues;
}

/** http.sendApi: token names and values each used once (a shared value would make the name a guess) */
function sendApiChecks(api: Record<string, unknown>): Issue[] {
  const issues: Issue[] = [];
  if (!Array.isArray(api.tokens)) return issues;
  const names = new Map<string, number>();
  const values = new Map<string, number>();
  api.tokens.forEach((t: unknown, i: number) => {
    if (!isRecord(t)) return;
    if (typeof t.name === 'string') {
      const prev = names.get(t.name);
      if (prev !== undefined)
        issues.push({
          path: ['http', 'sendApi', 'tokens', i, 'name'],
          message: `duplicate token name '${t.name}' (also tokens[${prev}])`,
        });
      else names.set(t.name, i);
    }
    if (typeof t.token === 'string' && t.token !== '') {
      const prev = values.get(t.token);
      // the value itself is never quoted: it is a secret
      if (prev !== undefined)
        issues.push({
          path: ['http', 'sendApi', 'tokens', i, 'token'],
          message: `the same token value as tokens[${prev}]; each token needs its own`,
        });
      else values.set(t.token, i);
    }
  });
  return issues;
}
