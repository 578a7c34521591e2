// Two-signal shutdown, shared by `run`, `demo` and `emulator`: the first SIGTERM/SIGINT starts a
// graceful stop (its result is the exit code); a second one exits 1 at once, for an operator who
// does not want to wait for the drain.
export interface Shutdown {
  /** settles with the exit code once the graceful stop has finished */
  readonly done: Promise<number>;
  /** signals received so far */
  readonly signals: number;
  /** stop listening (the process is ending another way) */
  dispose(): void;
}

export function onShutdown(
  stop: (signal: NodeJS.Signals) => Promise<number>,
  hooks: { onFirst?: (signal: NodeJS.Signals) => void; onSecond?: (signal: NodeJS.Signals) => void } = {},
): Shutdown {
  let count = 0;
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));
  const onSignal = (signal: NodeJS.Signals): void => {
    count++;
    if (count > 1) {
      hooks.onSecond?.(signal);
      process.exit(1);
    }
    hooks.onFirst?.(signal);
    stop(signal).then(resolveDone, () => resolveDone(1));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return {
    done,
    get signals() {
      return count;
    },
    dispose() {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    },
  };
}
