// `status`: the store's view, read-only (works while the daemon runs).
import { sendLimits, type LoadedConfig } from '../config/index.ts';
import { currentRate, dailyCount } from '../delivery/pacer.ts';
import { OUTBOX_STATES, openStore, type PaceState } from '../store/index.ts';
import { EXIT } from '../util/errors.ts';
import { configOption, type Command } from './options.ts';

export const status: Command = {
  name: 'status',
  usage: 'lead-notifier status [-c FILE] [--json]',
  options: { ...configOption, json: { type: 'boolean' } },
  async run(values, _positionals, ctx) {
    const config = await ctx.load(values, { templates: false });
    return printStatus(config, { json: Boolean(values.json), out: ctx.out });
  },
};

export async function printStatus(
  config: LoadedConfig,
  o: { json: boolean; out: (line: string) => void },
): Promise<number> {
  const store = await openStore(config.store, { baseDir: config.baseDir, readOnly: true });
  try {
    const [checkpoints, counts, errors, unknown, leases, replicas, paceState] = await Promise.all([
      store.listCheckpoints(),
      store.counts(),
      store.lastErrors(10),
      store.list({ state: 'unknown', limit: 100 }),
      store.listLeases(),
      store.listReplicas(),
      store.readSendPace('smtp'),
    ]);
    const pace = paceOf(config, paceState);
    const now = Date.now();
    const leaders = leases.map((l) => ({
      rule: l.rule,
      leader: Date.parse(l.expiresAt) > now ? l.holder : null,
      holder: l.holder,
      epoch: l.epoch,
      expiresAt: l.expiresAt,
    }));
    const seen = replicas.map((r) => ({ ...r, alive: Date.parse(r.expiresAt) > now }));
    if (o.json) {
      o.out(
        JSON.stringify(
          {
            checkpoints,
            leases: leaders,
            replicas: seen,
            outbox: counts,
            ...(pace ? { pace } : {}),
            uncertain: unknown.map((r) => ({
              id: r.id,
              rule: r.rule,
              recordId: r.recordId,
              lastError: r.lastError,
              lastErrorCode: r.lastErrorCode,
            })),
            lastErrors: errors.map((r) => ({
              id: r.id,
              rule: r.rule,
              recordId: r.recordId,
              state: r.state,
              lastError: r.lastError,
              lastErrorCode: r.lastErrorCode,
              updatedAt: r.updatedAt,
            })),
          },
          null,
          2,
        ),
      );
      return EXIT.OK;
    }
    o.out('Checkpoints');
    for (const c of checkpoints)
      o.out(`  ${c.rule}: watermark ${c.watermark} (floor ${c.floor}, updated ${c.updatedAt})`);
    if (checkpoints.length === 0) o.out('  (none yet)');
    if (leaders.length > 0) {
      o.out('Leaders');
      for (const l of leaders)
        o.out(
          `  ${l.rule}: ${l.leader ?? `none (last ${l.holder})`} epoch ${l.epoch}, lease ${l.leader ? 'until' : 'expired'} ${l.expiresAt}`,
        );
    }
    if (seen.length > 0) {
      o.out('Replicas (seen in the last day)');
      for (const r of seen)
        o.out(`  ${r.id} (${r.host} pid ${r.pid}) ${r.alive ? 'alive' : 'gone'}, last seen ${r.seenAt}`);
    }
    o.out('Outbox');
    const row = (label: string, n: (s: (typeof OUTBOX_STATES)[number]) => number) =>
      `  ${label.padEnd(24)} ${OUTBOX_STATES.map((s) => String(n(s)).padStart(8)).join(' ')}`;
    o.out(`  ${'rule'.padEnd(24)} ${OUTBOX_STATES.map((s) => s.padStart(8)).join(' ')}`);
    for (const [rule, byState] of Object.entries(counts.byRule)) o.out(row(rule, (s) => byState[s] ?? 0));
    o.out(row('total', (s) => counts.total[s]));
    // by channel, once any row goes somewhere other than email
    const channels = Object.entries(counts.byChannel);
    if (channels.some(([c]) => c !== 'email')) {
      o.out(`  ${'channel'.padEnd(24)} ${OUTBOX_STATES.map((s) => s.padStart(8)).join(' ')}`);
      for (const [channel, byState] of channels) o.out(row(channel, (s) => byState?.[s] ?? 0));
    }
    if (pace) {
      o.out('Sending pace');
      o.out(
        `  limit ${pace.limit}; ${pace.dailyLimit === null ? `${pace.dailyCount} sent` : `${pace.dailyCount} of ${pace.dailyLimit} sent`} in the last 24 h` +
          (pace.pausedUntil ? `; paused until ${pace.pausedUntil} (the relay throttled us)` : ''),
      );
    }
    if (unknown.length > 0) {
      o.out(`Uncertain (state unknown: may or may not have been delivered; resolve with 'outbox resolve')`);
      for (const r of unknown) o.out(`  #${r.id} ${r.rule} ${r.recordId}: ${r.lastError ?? ''}`);
    }
    if (errors.length > 0) {
      o.out('Last errors');
      for (const r of errors)
        o.out(`  #${r.id} ${r.rule} ${r.recordId} [${r.state}] ${r.updatedAt}: ${r.lastError}`);
    }
    return EXIT.OK;
  } finally {
    await store.close();
  }
}

/** smtp.rateLimit / dailyLimit and the pacer's stored state, when a limit is configured */
function paceOf(
  config: LoadedConfig,
  state: PaceState | null,
): { limit: string; dailyCount: number; dailyLimit: number | null; pausedUntil: string | null } | null {
  const limits = sendLimits(config.smtp);
  if (limits.ratePerMs === undefined && limits.dailyLimit === undefined) return null;
  const now = Date.now();
  const paused = state !== null && currentRate(state, limits, now) === 0;
  return {
    limit: limits.describe,
    dailyCount: state ? dailyCount(state, now) : 0,
    dailyLimit: limits.dailyLimit ?? null,
    pausedUntil: paused && state ? new Date(state.pausedUntil).toISOString() : null,
  };
}
