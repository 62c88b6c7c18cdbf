/** What every screen is: an element to show, and a way to stop its timers and streams when it goes. */
export interface View {
  el: HTMLElement;
  stop(): void;
}

/**
 * Runs `load` now and every `ms` until stopped; a load still running is not started twice. now() runs
 * it again once the one in flight is done (so it sees what changed meanwhile).
 */
export function every(ms: number, load: () => Promise<void>): { stop(): void; now(): Promise<void> } {
  let running: Promise<void> | null = null;
  let stopped = false;
  const run = () => {
    running ??= load().finally(() => {
      running = null;
    });
    return running;
  };
  const timer = setInterval(() => void (stopped || run()), ms);
  void run();
  return {
    stop: () => {
      stopped = true;
      clearInterval(timer);
    },
    now: async () => {
      await running;
      if (!stopped) await run();
    },
  };
}
