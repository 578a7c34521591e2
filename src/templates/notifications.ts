// Every notification of one record: the email (index.ts) and each other channel of the rule
// (channels.ts), rendered apart, so one channel's template failure leaves the others intact.
import type { ChannelName, OutboxMessage, SourceRecord } from '../types.ts';
import { contextFor } from './compile.ts';
import { httpChannelsOf, renderChannel } from './channels.ts';
import { renderMessage, type CompiledRule, type RenderContext } from './index.ts';

export type RenderedNotification =
  { channel: ChannelName; message: OutboxMessage } | { channel: ChannelName; error: unknown };

/** the channels a compiled rule sends to, email first */
export function channelsOf(compiled: CompiledRule): ChannelName[] {
  return [...(compiled.templates ? (['email'] as const) : []), ...httpChannelsOf(compiled.channels)];
}

export function renderNotifications(
  compiled: CompiledRule,
  record: SourceRecord,
  ctx: RenderContext = {},
): RenderedNotification[] {
  const now = ctx.now ?? new Date();
  const key = ctx.messageKey ?? record.id;
  const out: RenderedNotification[] = [];
  if (compiled.templates) {
    try {
      out.push({ channel: 'email', message: renderMessage(compiled, record, { ...ctx, now }) });
    } catch (error) {
      out.push({ channel: 'email', error });
    }
  }
  const channels = httpChannelsOf(compiled.channels);
  if (channels.length === 0) return out;
  const context = contextFor(compiled.rule, record, now, ctx.extra);
  for (const channel of channels) {
    try {
      out.push({
        channel,
        message: renderChannel(compiled.channels, channel, compiled.rule.name, context, key),
      });
    } catch (error) {
      out.push({ channel, error });
    }
  }
  return out;
}
