/**
 * Readiness: a started (or resumed) container is probed every probeIntervalMs
 * until it passes, fails, is stopped or runs out of time; a ready one is then
 * probed on its period and each change is a "readiness" event (the container
 * is left running; the caller withdraws or restores its endpoint).
 */
import { InstanceError } from "../errors.ts";
import type { RuntimeContext } from "./context.ts";
import { execRunner } from "./exec-probe.ts";
import { logSuffix } from "./exits.ts";
import type { Tracked } from "./instances.ts";
import { scheduleLiveness } from "./liveness.ts";
import { tailLogs } from "./logs.ts";
import { describeTarget, type ProbeTarget, probeCheck, probeOnce, probeTarget } from "./probe.ts";
import { declaredPort } from "./spec.ts";

/** Least time between two exec probes of a starting instance. */
const EXEC_MIN_INTERVAL_MS = 100;

export class ReadinessProber {
  readonly #ctx: RuntimeContext;

  constructor(ctx: RuntimeContext) {
    this.#ctx = ctx;
  }

  /** What to probe: the spec's probe (or TCP on its port), inside its netns when the pid is known. */
  target(t: Tracked): ProbeTarget {
    return probeTarget(
      t.spec.container.readinessProbe,
      {
        host: t.host,
        port: t.port,
        containerPort: declaredPort(t.spec.container),
        ...(t.pid ? { pid: t.pid } : {}),
        exec: execRunner(this.#ctx.docker, t.containerId),
      },
      this.#ctx.options.probeSettleMs,
    );
  }

  /** Probe every probeIntervalMs until ready; throws on exit, stop() or the startup deadline. */
  async waitReady(
    t: Tracked,
    target: ProbeTarget,
    startedAt: number,
    limitMs = this.#ctx.options.startupTimeoutMs,
    /** A resumed standby started long ago: its initialDelaySeconds is over. */
    resumed = false,
  ): Promise<void> {
    const o = this.#ctx.options;
    const probe = t.spec.container.readinessProbe;
    const deadline = startedAt + limitMs;
    const timeoutMs = probe?.timeoutSeconds ? probe.timeoutSeconds * 1000 : o.probeTimeoutMs;
    const needed = probe?.successThreshold ?? 1;
    if (probe?.initialDelaySeconds && !resumed) {
      await pauseUnlessInterrupted(t, probe.initialDelaySeconds * 1000);
    }
    let successes = 0;
    let lastCheck = performance.now();
    for (;;) {
      throwIfInterrupted(t);
      const left = deadline - performance.now();
      const ok = await probeOnce(target, Math.max(1, Math.min(timeoutMs, left)));
      throwIfInterrupted(t);
      successes = ok ? successes + 1 : 0;
      if (successes >= needed) return;
      const now = performance.now();
      if (now >= deadline) {
        const logs = await tailLogs(this.#ctx.docker, t.containerId, o.logTailLines);
        throw new InstanceError(
          {
            reason: "ReadinessTimeout",
            message:
              `container did not become ready within ${limitMs / 1000}s: ` +
              `${describeTarget(target)} never succeeded (does the app listen on 0.0.0.0:$PORT? ` +
              "127.0.0.1 inside the container cannot be reached from outside it)" +
              logSuffix(logs),
            logs,
          },
          { instanceId: t.spec.instanceId },
        );
      }
      // Belt and braces next to the events stream: look at the container now and then.
      if (now - lastCheck >= 250) {
        lastCheck = now;
        await this.#ctx.exits.checkAlive(t);
        continue;
      }
      // An exec probe is a process in the container and a call to the engine: not every 10 ms.
      await pauseUnlessInterrupted(
        t,
        target.kind === "exec"
          ? Math.max(o.probeIntervalMs, EXEC_MIN_INTERVAL_MS)
          : o.probeIntervalMs,
      );
    }
  }

  /**
   * Probe a ready instance on its period (the probe's periodSeconds, else
   * readyProbePeriodMs; failureThreshold 3 and successThreshold 1 by default)
   * until it is stopped, exits or is forgotten; its liveness probe, if any,
   * starts too (liveness.ts).
   */
  schedulePeriodic(t: Tracked, target: ProbeTarget): void {
    scheduleLiveness(this.#ctx, t);
    const probe = t.spec.container.readinessProbe;
    const o = this.#ctx.options;
    const period = probe?.periodSeconds ? probe.periodSeconds * 1000 : o.readyProbePeriodMs;
    const timeoutMs = probe?.timeoutSeconds ? probe.timeoutSeconds * 1000 : o.probeTimeoutMs;
    const failureThreshold = probe?.failureThreshold ?? 3;
    const successThreshold = probe?.successThreshold ?? 1;
    let failures = 0;
    let successes = 0;
    const live = () => !t.forgotten && (t.state === "ready" || t.state === "unready");
    const tick = async () => {
      if (!live()) return;
      const { ok, detail } = await probeCheck(target, timeoutMs);
      if (!live()) return;
      if (ok) {
        failures = 0;
        successes++;
        if (t.state === "unready" && successes >= successThreshold) {
          t.state = "ready";
          this.#emit(t, true, `${describeTarget(target)} succeeds again`);
        }
      } else {
        successes = 0;
        failures++;
        if (t.state === "ready" && failures >= failureThreshold) {
          t.state = "unready";
          this.#emit(
            t,
            false,
            `${describeTarget(target)} failed ${failures} times in a row (last: ${detail})`,
          );
        }
      }
      t.probeTimer = setTimeout(tick, period).unref();
    };
    t.probeTimer = setTimeout(tick, period).unref();
  }

  #emit(t: Tracked, ready: boolean, message: string): void {
    this.#ctx.emitter.emit("readiness", {
      instanceId: t.spec.instanceId,
      revision: t.spec.revision,
      ready,
      message,
    });
  }
}

/** A start in progress was stopped, or its container exited: say which, as an InstanceError. */
export function throwIfInterrupted(t: Tracked): void {
  // A stop explains the exit it causes (ExitCode137 after its SIGKILL): say Stopped.
  if (t.state === "stopping") {
    throw new InstanceError(
      { reason: "Stopped", message: "instance was stopped before it became ready" },
      { instanceId: t.spec.instanceId },
    );
  }
  if (t.failure) throw new InstanceError(t.failure, { instanceId: t.spec.instanceId });
}

async function pauseUnlessInterrupted(t: Tracked, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
    t.interrupted,
  ]);
  clearTimeout(timer);
}
