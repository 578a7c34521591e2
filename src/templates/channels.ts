// Rendering of the channels beside email: the webhook body, the Slack incoming-webhook message and
// the Teams Adaptive Card, each rendered once at enqueue time into the request body every attempt
// posts (HttpRequestMessage). URLs, headers and secrets are not rendered: they are config only and
// the channel reads them at send time.
//
// Escaping: record data is untrusted, and each channel has its own markup. Handlebars' own
// escaping is HTML's and is global to the runtime, so instead every string of the template
// context is escaped for the channel before rendering (templates run with noEscape):
// - webhook body: JSON string content (so `{"name": "{{LastName}}"}` cannot break out of the string)
// - Slack text: mrkdwn control characters &, <, > (so a Lead named `<!channel>` pings nobody)
// - Slack blocks: mrkdwn, then JSON string content (blocks is a JSON template)
// - Teams: the Markdown subset Adaptive Card TextBlocks render (backslash escapes)
// Literal text in the template is the author's and is not escaped. `{{json x}}` serialises the
// value as it was read (not escaped twice), then escapes that text the channel's way, except in
// the webhook body, where it is JSON structure. A value passed through a string helper (upper,
// truncate) is transformed after escaping: truncate may cut an escape short, never remove one.
import type { RuleConfig } from '../config/index.ts';
import type { HttpChannelName, HttpRequestMessage } from '../types.ts';
import { compileValue, createEnv, run, type Template } from './compile.ts';
import { RenderError } from './errors.ts';
import { json as jsonHelper, ROOT_FIELDS } from './helpers.ts';

interface Escaper {
  escape(s: string): string;
  /** exact inverse of escape, for `json` of an escaped value */
  unescape(s: string): string;
}

const jsonString: Escaper = {
  escape: (s) => JSON.stringify(s).slice(1, -1),
  unescape: (s) => JSON.parse(`"${s}"`) as string,
};

/** Slack mrkdwn: "you must escape &, <, >" (Slack API docs, Formatting text for app surfaces) */
export const slackEscaper: Escaper = {
  escape: (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;'),
  unescape: (s) => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&'),
};

/**
 * Adaptive Card TextBlock Markdown (bold, italic, lists, links): each character that could start
 * markup is backslash-escaped, and so is the backslash itself.
 */
const MD_SPECIAL = /[\\`*_{}[\]()#+\-.!|~<>&]/g;
export const teamsEscaper: Escaper = {
  escape: (s) => s.replace(MD_SPECIAL, (c) => `\\${c}`),
  unescape: (s) => s.replace(/\\([\\`*_{}[\]()#+\-.!|~<>&])/g, '$1'),
};

const compose = (first: Escaper, then: Escaper): Escaper => ({
  escape: (s) => then.escape(first.escape(s)),
  unescape: (s) => first.unescape(then.unescape(s)),
});
const slackJson = compose(slackEscaper, jsonString);

/** escaped copies of context objects -> the values as read (for `json`) */
const rawOf = new WeakMap<object, unknown>();

/** A deep copy of the context with every string escaped; shared objects stay shared. */
function escapeContext(value: unknown, esc: Escaper, seen = new Map<object, unknown>()): unknown {
  if (typeof value === 'string') return esc.escape(value);
  if (value === null || typeof value !== 'object') return value;
  const done = seen.get(value);
  if (done !== undefined) return done;
  const copy: Record<string | symbol, unknown> | unknown[] = Array.isArray(value) ? [] : {};
  seen.set(value, copy);
  rawOf.set(copy, value);
  for (const [k, v] of Object.entries(value))
    (copy as Record<string, unknown>)[k] = escapeContext(v, esc, seen);
  const root = (value as Record<symbol, unknown>)[ROOT_FIELDS];
  if (root !== undefined) {
    Object.defineProperty(copy, ROOT_FIELDS, { value: escapeContext(root, esc, seen), enumerable: false });
  }
  return copy;
}

/** `json` for a channel's templates: the value as read, serialised, then escaped (or not: structure). */
function channelJson(esc: Escaper, asStructure: boolean) {
  return (...all: unknown[]): string => {
    const options = all[all.length - 1];
    const args = all.slice(0, -1);
    const [value] = args;
    let raw: unknown = value;
    if (typeof value === 'string') raw = esc.unescape(value);
    else if (value !== null && typeof value === 'object') raw = rawOf.get(value) ?? value;
    const text = jsonHelper(raw, options);
    return asStructure ? text : esc.escape(text);
  };
}

interface CompiledWebhook {
  body: Template;
}
interface CompiledSlack {
  text: Template;
  blocks: Template | undefined;
}
interface CompiledTeams {
  title: Template;
  text: Template | undefined;
  fields: [label: Template, value: Template][];
}

export interface CompiledChannels {
  webhook?: CompiledWebhook;
  slack?: CompiledSlack;
  teams?: CompiledTeams;
}

/** Compiles the rule's webhook, Slack and Teams templates (TemplateError on a bad one). */
export function compileChannels(rule: RuleConfig, baseDir: string): CompiledChannels {
  const out: CompiledChannels = {};
  const envFor = (esc: Escaper, asStructure: boolean) => {
    const env = createEnv(baseDir);
    env.registerHelper('json', channelJson(esc, asStructure));
    return env;
  };
  if (rule.webhook) {
    const env = envFor(jsonString, true);
    out.webhook = {
      body: compileValue(env, 'webhook.body', rule.webhook.body ?? '{{json this}}', baseDir, false),
    };
  }
  if (rule.slack) {
    const s = rule.slack;
    const textEnv = envFor(slackEscaper, false);
    out.slack = {
      text: compileValue(textEnv, 'slack.text', s.text, baseDir, false),
      blocks:
        s.blocks === undefined
          ? undefined
          : compileValue(envFor(slackJson, false), 'slack.blocks', s.blocks, baseDir, false),
    };
  }
  if (rule.teams) {
    const t = rule.teams;
    const env = envFor(teamsEscaper, false);
    out.teams = {
      title: compileValue(env, 'teams.title', t.title, baseDir, false),
      text: t.text === undefined ? undefined : compileValue(env, 'teams.text', t.text, baseDir, false),
      fields: Object.entries(t.fields ?? {}).map(([label, value]) => [
        compileValue(env, `teams.fields.${label}`, label, baseDir, false),
        compileValue(env, `teams.fields.${label}`, value, baseDir, false),
      ]),
    };
  }
  return out;
}

/** the channels the rule sends to besides email, in a fixed order */
export function httpChannelsOf(compiled: CompiledChannels): HttpChannelName[] {
  return (['webhook', 'slack', 'teams'] as const).filter((c) => compiled[c] !== undefined);
}

function parseJson(text: string, keyPath: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new RenderError('ERENDER', `${keyPath}: did not render valid JSON (${(err as Error).message})`, {
      keyPath,
      cause: err,
    });
  }
}

/**
 * Renders one channel's request for a record. `context` is the email's template context
 * (compile.ts contextFor); `key` the row's ledger key (`<Id>` or `<Id>.<version>`). Throws
 * RenderError: the caller dead-letters this channel's row only.
 */
export function renderChannel(
  compiled: CompiledChannels,
  channel: HttpChannelName,
  rule: string,
  context: Record<string | symbol, unknown>,
  key: string,
): HttpRequestMessage {
  const base = { channel, rule, idempotencyKey: `${rule}.${key}`, contentType: 'application/json' };
  switch (channel) {
    case 'webhook': {
      const c = compiled.webhook!;
      const body = run(c.body, escapeContext(context, jsonString), 'webhook.body');
      parseJson(body, 'webhook.body');
      return { ...base, body };
    }
    case 'slack': {
      const c = compiled.slack!;
      const text = run(c.text, escapeContext(context, slackEscaper), 'slack.text');
      const payload: { text: string; blocks?: unknown } = { text };
      if (c.blocks) {
        const blocks = parseJson(
          run(c.blocks, escapeContext(context, slackJson), 'slack.blocks'),
          'slack.blocks',
        );
        if (!Array.isArray(blocks)) {
          throw new RenderError('ERENDER', 'slack.blocks: must render a JSON array of blocks', {
            keyPath: 'slack.blocks',
          });
        }
        payload.blocks = blocks;
      }
      return { ...base, body: JSON.stringify(payload) };
    }
    case 'teams': {
      const c = compiled.teams!;
      const ctx = escapeContext(context, teamsEscaper);
      const body: unknown[] = [
        {
          type: 'TextBlock',
          text: run(c.title, ctx, 'teams.title'),
          size: 'Large',
          weight: 'Bolder',
          wrap: true,
        },
      ];
      if (c.text) body.push({ type: 'TextBlock', text: run(c.text, ctx, 'teams.text'), wrap: true });
      if (c.fields.length > 0) {
        body.push({
          type: 'FactSet',
          facts: c.fields.map(([label, value], i) => ({
            title: run(label, ctx, `teams.fields[${i}]`),
            value: run(value, ctx, `teams.fields[${i}]`),
          })),
        });
      }
      // the Workflows "When a Teams webhook request is received" trigger takes a message whose
      // attachments are Adaptive Cards
      const payload = {
        type: 'message',
        attachments: [
          {
            contentType: 'application/vnd.microsoft.card.adaptive',
            contentUrl: null,
            content: {
              $schema: 'http://adaptivecards.io/schemas/adaptive-card.json',
              type: 'AdaptiveCard',
              version: '1.4',
              body,
            },
          },
        ],
      };
      return { ...base, body: JSON.stringify(payload) };
    }
  }
}
