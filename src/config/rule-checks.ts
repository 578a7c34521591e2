// Per-rule load-time checks: template files must exist, then the caller's hook (e.g. compileRule) runs.
import { existsSync } from 'node:fs';
import { ConfigError, coerceError } from '../util/errors.ts';
import { formatIssues, parseKeyPath } from './issues.ts';
import type { Issue, KeyPath, Source } from './issues.ts';
import { channelTemplates, isTemplateFile, TEMPLATE_KEYS } from './paths.ts';
import type { LoadedConfig, RuleConfig } from './schema.ts';
import { secretsOf } from './secrets.ts';

/**
 * A check the caller runs on each rule whose template files exist (the CLI passes compileRule).
 * It throws to report a problem; a string `keyPath` on the error (as TemplateError has) such as
 * 'email.subject' says where in the rule. Passed in so that src/config does not depend on src/templates.
 */
export type RuleCheck = (rule: RuleConfig, baseDir: string) => void;

/** throws ConfigError listing missing template files and whatever `ruleCheck` reports */
export function checkRules(config: LoadedConfig, source: Source, ruleCheck?: RuleCheck): void {
  const { file, doc, lines } = source;
  const issues: Issue[] = [];
  const compilable: number[] = [];
  config.rules.forEach((rule, i) => {
    let ok = true;
    const check = (value: string | undefined, path: KeyPath) => {
      if (isTemplateFile(value) && !existsSync(value)) {
        issues.push({ path, message: `template file not found: ${value}` });
        ok = false;
      }
    };
    for (const t of channelTemplates(rule)) check(t.value, ['rules', i, t.channel, t.key]);
    if (rule.email) {
      for (const key of TEMPLATE_KEYS) check(rule.email[key], ['rules', i, 'email', key]);
      rule.email.attachments.forEach((a, j) =>
        check(a.content, ['rules', i, 'email', 'attachments', j, 'content']),
      );
    }
    if (ok) compilable.push(i);
  });
  if (ruleCheck) {
    for (const i of compilable) {
      try {
        ruleCheck(config.rules[i]!, config.baseDir);
      } catch (err) {
        const e = coerceError(err) as Error & { keyPath?: unknown };
        const keyPath = typeof e.keyPath === 'string' ? e.keyPath : '';
        // TemplateError's message starts with its keyPath; we show the full path in front instead
        const message =
          keyPath && e.message.startsWith(`${keyPath}: `) ? e.message.slice(keyPath.length + 2) : e.message;
        if (/^(email|webhook|slack|teams)\b/.test(keyPath))
          issues.push({ path: ['rules', i, ...parseKeyPath(keyPath)], message });
        else issues.push({ path: ['rules', i], message: keyPath ? `${keyPath}: ${message}` : message });
      }
    }
  }
  if (issues.length > 0) throw new ConfigError(formatIssues(issues, file, doc, lines, secretsOf(config)));
}
