/**
 * Graceful stop on SIGTERM/SIGINT for every Skiff server. A repeated SIGTERM
 * (timeout(1), a supervisor signalling the whole process group) must not cut
 * a drain short, so only a second Ctrl-C (SIGINT) exits at once.
 *
 * One Ctrl-C can arrive twice: the terminal signals the whole foreground
 * process group, and a parent such as `npm start` forwards the same signal to
 * its child (us: `exec` all the way down, so that a SIGTERM to npm reaches
 * Skiff instead of orphaning it). A SIGINT within DUPLICATE_MS of the first
 * is that same Ctrl-C, not a second one.
 */

/** Far below a person's double Ctrl-C, far above npm's forwarding delay. */
export const DUPLICATE_MS = 250;

export interface ShutdownSignals {
  /** Stop listening (for a programmatic stop); a no-op once a signal started the stop. */
  detach(): void;
}

export function handleShutdownSignals(
  stop: () => Promise<void>,
  log: (message: string) => void = (m) => process.stderr.write(`skiff: ${m}\n`),
): ShutdownSignals {
  let stopping = false;
  let firstAt = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      if (signal === "SIGINT" && performance.now() - firstAt > DUPLICATE_MS) {
        log("second SIGINT, exiting without finishing the stop");
        process.exit(130);
      }
      return;
    }
    stopping = true;
    firstAt = performance.now();
    log(`${signal}, shutting down`);
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log(`error while stopping: ${(err as Error).message}`);
        process.exit(1);
      },
    );
  };
  // `on`, not `once`: a second signal must reach us too, or Node's default
  // action would kill the process mid-drain.
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return {
    detach() {
      if (stopping) return;
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    },
  };
}
