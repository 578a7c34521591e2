// `outbox list | retry | resolve`: inspect and act on dead and uncertain (state unknown) rows.
// Works beside a running daemon: SQLite in WAL mode lets this process write while the daemon
// holds its lock; the daemon's dispatcher picks retried rows up on its next tick.
import { existsSync } from 'node:fs';
import { storeLocation, type LoadedConfig } from '../config/index.ts';
import { OUTBOX_STATES, openStore, StoreMissingError } from '../store/index.ts';
import type { OutboxRow, OutboxState, Store } from '../store/index.ts';
import { EXIT, UsageError } from '../util/errors.ts';
import { isHttpMessage } from '../types.ts';
import { configOption, str, type Command } from './options.ts';

export const outbox: Command = {
  name: 'outbox',
  usage:
    'lead-notifier outbox list [--state dead|uncertain|pending|failed|sent] [--rule NAME] [--limit N] [--json] [-c FILE]\n' +
    '       lead-notifier outbox retry <id> | --all-dead [-c FILE]\n' +
    '       lead-notifier outbox resolve <id> --as sent|dead [--note TEXT] [-c FILE]',
  options: {
    ...configOption,
    state: { type: 'string' },
    rule: { type: 'string' },
    limit: { type: 'string' },
    json: { type: 'boolean' },
    'all-dead': { type: 'boolean' },
    as: { type: 'string' },
    note: { type: 'string' },
  },
  async run(values, positionals, ctx) {
    const config = await ctx.load(values, { templates: false });
    const opt = (k: string) => {
      const v = str(values, k);
      return v ? { [k]: v } : {};
    };
    return outboxCommand(config, {
      action: positionals[0],
      args: positionals.slice(1),
      ...opt('state'),
      ...opt('rule'),
      ...opt('limit'),
      ...opt('as'),
      ...opt('note'),
      json: Boolean(values.json),
      allDead: Boolean(values['all-dead']),
      out: ctx.out,
    });
  },
};

/** `uncertain` is what operators call the `unknown` state */
export function parseState(text: string): OutboxState {
  const s = text === 'uncertain' ? 'unknown' : text;
  if (!(OUTBOX_STATES as readonly string[]).includes(s)) {
    throw new UsageError(`--state must be one of ${[...OUTBOX_STATES, 'uncertain'].join(', ')}`);
  }
  return s as OutboxState;
}

async function open(config: LoadedConfig, readOnly: boolean): Promise<Store> {
  const loc = storeLocation(config.store, config.baseDir);
  // A writable open would create an empty store: say plainly that there is none yet.
  if (loc.kind === 'sqlite' && loc.path !== ':memory:' && !existsSync(loc.path))
    throw new StoreMissingError(loc.path);
  return openStore(config.store, { baseDir: config.baseDir, ...(readOnly ? { readOnly: true } : {}) });
}

function parseId(text: string | undefined): number {
  const id = Number(text);
  if (!text || !Number.isInteger(id) || id < 1)
    throw new UsageError(`an outbox row id is a positive integer, not '${text ?? ''}'`);
  return id;
}

/** the email's subject, or for another channel its name (its body may be long and is not shown) */
function subjectOf(r: OutboxRow): string | null {
  if (r.message === null) return null;
  return isHttpMessage(r.message) ? null : r.message.subject;
}

function summary(r: OutboxRow): Record<string, unknown> {
  return {
    id: r.id,
    rule: r.rule,
    recordId: r.recordId,
    channel: r.channel,
    state: r.state,
    attempts: r.attempts,
    subject: subjectOf(r),
    to: r.message && !isHttpMessage(r.message) ? r.message.to : [],
    lastError: r.lastError,
    lastErrorCode: r.lastErrorCode,
    nextAttemptAt: r.nextAttemptAt,
    result: r.result,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
  };
}

export interface OutboxCommandOptions {
  action: string | undefined;
  args: string[];
  state?: string;
  rule?: string;
  limit?: string;
  json: boolean;
  allDead: boolean;
  as?: string;
  note?: string;
  out: (line: string) => void;
}

export async function outboxCommand(config: LoadedConfig, o: OutboxCommandOptions): Promise<number> {
  switch (o.action) {
    case 'list': {
      const limit = o.limit === undefined ? 50 : Number(o.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 10_000)
        throw new UsageError('--limit must be 1..10000');
      const store = await open(config, true);
      try {
        const rows = await store.list({
          ...(o.state ? { state: parseState(o.state) } : {}),
          ...(o.rule ? { rule: o.rule } : {}),
          limit,
        });
        if (o.json) {
          o.out(JSON.stringify(rows.map(summary), null, 2));
          return EXIT.OK;
        }
        if (rows.length === 0) {
          o.out('no rows');
          return EXIT.OK;
        }
        o.out(
          `${'id'.padStart(7)}  ${'state'.padEnd(8)} ${'rule'.padEnd(20)} ${'record'.padEnd(18)}  subject / last error`,
        );
        for (const r of rows) {
          const text = r.state === 'sent' ? (subjectOf(r) ?? '') : (r.lastError ?? subjectOf(r) ?? '');
          const detail = r.channel === 'email' ? text : `[${r.channel}] ${text}`;
          o.out(
            `${String(r.id).padStart(7)}  ${r.state.padEnd(8)} ${r.rule.padEnd(20)} ${r.recordId.padEnd(18)}  ${detail.slice(0, 100)}`,
          );
        }
        return EXIT.OK;
      } finally {
        await store.close();
      }
    }
    case 'retry': {
      if (o.allDead === (o.args[0] !== undefined))
        throw new UsageError('give either one row id or --all-dead');
      const store = await open(config, false);
      try {
        if (o.allDead) {
          const n = await store.retryAllDead();
          o.out(`${n} dead row(s) set to pending; the running daemon sends them on its next tick`);
          return EXIT.OK;
        }
        const id = parseId(o.args[0]);
        const row = await store.get(id);
        if (!row) throw new UsageError(`no outbox row ${id}`);
        if (!(await store.retry(id))) {
          throw new UsageError(
            row.message === null
              ? `row ${id} has no rendered message (its template failed): fix the rule; it cannot be retried`
              : `row ${id} is ${row.state}: only dead, failed and unknown rows can be retried`,
          );
        }
        o.out(`row ${id} (${row.rule} ${row.recordId}) set to pending`);
        return EXIT.OK;
      } finally {
        await store.close();
      }
    }
    case 'resolve': {
      const id = parseId(o.args[0]);
      if (o.as !== 'sent' && o.as !== 'dead') throw new UsageError('--as must be sent or dead');
      const store = await open(config, false);
      try {
        const row = await store.get(id);
        if (!row) throw new UsageError(`no outbox row ${id}`);
        if (!(await store.resolve(id, o.as, o.note))) {
          throw new UsageError(`row ${id} is ${row.state}: only unknown (uncertain) rows can be resolved`);
        }
        o.out(`row ${id} (${row.rule} ${row.recordId}) resolved as ${o.as}`);
        return EXIT.OK;
      } finally {
        await store.close();
      }
    }
    default:
      throw new UsageError(`unknown outbox action '${o.action ?? ''}': use list, retry or resolve`);
  }
}
