// One record's outbox rows: one per channel of the rule, each pending with its rendered message
// or dead with the reason its own template failed (the other channels are not affected).
import type { Logger } from 'pino';
import type { NewOutboxRow } from '../store/index.ts';
import type { RenderContext, CompiledRule } from '../templates/index.ts';
import { renderNotifications } from '../templates/notifications.ts';
import type { SourceRecord } from '../types.ts';
import { codeOf, coerceError } from '../util/errors.ts';

export function notificationRows(
  compiled: CompiledRule,
  record: SourceRecord,
  base: Pick<NewOutboxRow, 'rule' | 'object' | 'recordId' | 'recordCreatedDate'>,
  ctx: RenderContext,
  logger: Logger,
): NewOutboxRow[] {
  return renderNotifications(compiled, record, ctx).map((n): NewOutboxRow => {
    if ('message' in n) return { ...base, channel: n.channel, message: n.message, state: 'pending' };
    // a template or recipient problem (a queue owner without an email) dead-letters this row only
    const e = coerceError(n.error);
    logger.warn(
      { recordId: record.id, channel: n.channel, err: e },
      'render failed; notification dead-lettered',
    );
    return {
      ...base,
      channel: n.channel,
      message: null,
      state: 'dead',
      lastError: `render: ${e.message}`,
      lastErrorCode: codeOf(e) ?? 'ERENDER',
    };
  });
}
