// The HTTP channels' runtime: for each channel some enabled rule uses (webhook, slack, teams), one
// HTTP channel (sinks/http.ts) and one Dispatcher claiming only that channel's rows, with its own
// connection limit, circuit and probe. The same Dispatcher class as email's: retries, leases,
// circuit and states stay one mechanism, and a Slack outage cannot delay or repeat an email.
import { createRequire } from 'node:module';
import type { Logger } from 'pino';
import type { DeliveryConfig, RuleConfig } from '../config/index.ts';
import { DEFAULT_CHANNEL_CONCURRENCY } from '../config/channels.ts';
import { Dispatcher, type DispatchEvent } from '../delivery/dispatcher.ts';
import { createHttpChannel, type HttpChannel, type HttpTarget } from '../sinks/http.ts';
import type { Store } from '../store/index.ts';
import type { HttpChannelName } from '../types.ts';

export const HTTP_CHANNELS: readonly HttpChannelName[] = ['webhook', 'slack', 'teams'];

/** `lead-notifier/<package version>` */
export const USER_AGENT = `lead-notifier/${(createRequire(import.meta.url)('../../package.json') as { version: string }).version}`;

export interface ChannelState {
  state: 'unknown' | 'ok' | 'error';
  lastError: string | null;
  checkedAt: string | null;
}

export interface ChannelRuntime {
  channel: HttpChannelName;
  sink: HttpChannel;
  dispatcher: Dispatcher;
  /** as last seen: updated by every outcome and the circuit */
  status: ChannelState;
  /** rules that use it */
  rules: string[];
}

export interface ChannelRuntimeOptions {
  rules: RuleConfig[];
  store: Store;
  delivery: DeliveryConfig;
  owner: string;
  logger: Logger;
  resendRules: string[];
  recoverEveryMs: number;
  onEvent: (e: DispatchEvent) => void;
}

function targetOf(
  rule: RuleConfig,
  channel: HttpChannelName,
): (HttpTarget & { concurrency?: number }) | undefined {
  if (channel === 'webhook' && rule.webhook) {
    const w = rule.webhook;
    return {
      url: w.url,
      headers: w.headers,
      timeoutMs: w.timeoutMs,
      ...(w.secret ? { secret: w.secret } : {}),
      ...(w.concurrency ? { concurrency: w.concurrency } : {}),
    };
  }
  const c = channel === 'slack' ? rule.slack : channel === 'teams' ? rule.teams : undefined;
  if (!c) return undefined;
  return {
    url: c.webhookUrl,
    headers: {},
    timeoutMs: c.timeoutMs,
    ...(c.concurrency ? { concurrency: c.concurrency } : {}),
  };
}

/** The HTTP channel of each channel the rules use, with the rules, connection limit and longest deadline. */
export function createHttpChannels(
  rules: RuleConfig[],
  resendRules: string[] = [],
): Map<HttpChannelName, { sink: HttpChannel; rules: string[]; concurrency: number; maxTimeoutMs: number }> {
  const out = new Map<
    HttpChannelName,
    { sink: HttpChannel; rules: string[]; concurrency: number; maxTimeoutMs: number }
  >();
  const resend = new Set(resendRules);
  for (const channel of HTTP_CHANNELS) {
    const targets = new Map<string, HttpTarget>();
    let concurrency = 0;
    for (const rule of rules) {
      const t = targetOf(rule, channel);
      if (!t) continue;
      const { concurrency: c, ...target } = t;
      targets.set(rule.name, target);
      concurrency = Math.max(concurrency, c ?? 0);
    }
    if (targets.size === 0) continue;
    concurrency ||= DEFAULT_CHANNEL_CONCURRENCY;
    const sink = createHttpChannel({
      channel,
      targets,
      concurrency,
      userAgent: USER_AGENT,
      resendRules: resend,
    });
    const maxTimeoutMs = Math.max(...[...targets.values()].map((t) => t.timeoutMs));
    out.set(channel, { sink, rules: [...targets.keys()], concurrency, maxTimeoutMs });
  }
  return out;
}

/** One HTTP channel and its dispatcher per channel in use, not started. */
export function createChannelRuntimes(o: ChannelRuntimeOptions): Map<HttpChannelName, ChannelRuntime> {
  const out = new Map<HttpChannelName, ChannelRuntime>();
  for (const [channel, { sink, rules, concurrency, maxTimeoutMs }] of createHttpChannels(
    o.rules,
    o.resendRules,
  )) {
    const leaseMs = o.delivery.leaseMs ?? maxTimeoutMs + 30_000;
    const runtime: ChannelRuntime = {
      channel,
      sink,
      rules,
      status: { state: 'unknown', lastError: null, checkedAt: null },
      dispatcher: new Dispatcher({
        store: o.store,
        sink,
        channel,
        delivery: o.delivery,
        concurrency,
        leaseMs,
        owner: o.owner,
        logger: o.logger.child({ component: 'dispatcher', channel }),
        resendRules: o.resendRules,
        recoverEveryMs: Math.min(leaseMs, o.recoverEveryMs),
        onEvent: (e) => {
          track(runtime.status, e);
          o.onEvent(e);
        },
      }),
    };
    out.set(channel, runtime);
  }
  return out;
}

/** A channel's state from its dispatcher's events (as app.ts tracks SMTP's). */
function track(s: ChannelState, e: DispatchEvent): void {
  const at = new Date().toISOString();
  if (e.type === 'circuit') {
    Object.assign(
      s,
      e.state === 'open'
        ? { state: 'error', lastError: e.reason ?? 'circuit open', checkedAt: at }
        : { state: 'ok', lastError: null, checkedAt: at },
    );
  } else if (e.type === 'outcome') {
    if (e.outcome === 'sent') Object.assign(s, { state: 'ok', lastError: null, checkedAt: at });
    else if (e.failure === 'auth' || (e.failure === 'retry' && e.responseCode === undefined))
      Object.assign(s, {
        state: 'error',
        lastError: `send failed (${e.responseCode ?? e.code ?? 'no connection'})`,
        checkedAt: at,
      });
  }
}
