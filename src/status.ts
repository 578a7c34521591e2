// `status`: the store's view, read-only (works while the daemon runs).
import type { LoadedConfig } from './config/schema.ts';
import { sendLimits } from './config/index.ts';
import { currentRate, dailyCount } from './delivery/pacer.ts';
import type { PaceState } from './store/index.ts';
import { openStore } from './store/index.ts';
import { OUTBOX_STATES } from './store/index.ts';

export async function printStatus(
  config: LoadedConfig,
  o: { json: boolean; out: (line: string) => void },
): Promise<number> {
  const store = await openStore(config.store, { baseDir: config.baseDir, readOnly: true });
  try {
    const [checkpoints, counts, errors, unknown, paceState] = await Promise.all([
      store.listCheckpoints(),
      store.counts(),
      store.lastErrors(10),
      store.list({ state: 'unknown', limit: 100 }),
      store.readSendPace('smtp'),
    ]);
    const pace = paceOf(config, paceState);
    if (o.json) {
      o.out(
        JSON.stringify(
          {
            checkpoints,
            outbox: counts,
            ...(pace ? { pace } : {}),
            uncertain: unknown.map((r) => ({
              id: r.id,
              rule: r.rule,
              recordId: r.recordId,
              lastError: r.lastError,
            })),
            lastErrors: errors.map((r) => ({
              id: r.id,
              rule: r.rule,
              recordId: r.recordId,
              state: r.state,
              lastError: r.lastError,
              updatedAt: r.updatedAt,
            })),
          },
          null,
          2,
        ),
      );
      return 0;
    }
    o.out('Checkpoints');
    for (const c of checkpoints)
      o.out(`  ${c.rule}: watermark ${c.watermark} (floor ${c.floor}, updated ${c.updatedAt})`);
    if (checkpoints.length === 0) o.out('  (none yet)');
    o.out('Outbox');
    o.out(`  ${'rule'.padEnd(24)} ${OUTBOX_STATES.map((s) => s.padStart(8)).join(' ')}`);
    for (const [rule, byState] of Object.entries(counts.byRule)) {
      o.out(
        `  ${rule.padEnd(24)} ${OUTBOX_STATES.map((s) => String(byState[s] ?? 0).padStart(8)).join(' ')}`,
      );
    }
    o.out(
      `  ${'total'.padEnd(24)} ${OUTBOX_STATES.map((s) => String(counts.total[s]).padStart(8)).join(' ')}`,
    );
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
    return 0;
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
