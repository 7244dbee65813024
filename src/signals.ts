/**
 * Graceful stop on SIGTERM/SIGINT for every Skiff server. A repeated SIGTERM
 * (timeout(1), a supervisor signalling the whole process group) must not cut
 * a drain short, so only a second Ctrl-C (SIGINT) exits at once.
 */

export interface ShutdownSignals {
  /** Stop listening (for a programmatic stop); a no-op once a signal started the stop. */
  detach(): void;
}

export function handleShutdownSignals(
  stop: () => Promise<void>,
  log: (message: string) => void = (m) => process.stderr.write(`skiff: ${m}\n`),
): ShutdownSignals {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      if (signal === "SIGINT") {
        log("second SIGINT, exiting without finishing the stop");
        process.exit(130);
      }
      return;
    }
    stopping = true;
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
