/**
 * Keeps one instance running: start, wait for its exit, restart after an
 * exponential backoff (Kubernetes' CrashLoopBackOff shape: 1 s doubling up to
 * 5 min, reset after a run that lasted long enough). Every change is reported
 * through onStatus so the agent can publish or withdraw the endpoint and put
 * the failure's reason/message on the Revision. Separate from the runtime on
 * purpose: the agent's reconciler may choose its own policy.
 */
import { ValidationError } from "../../src/errors.ts";
import { InstanceError, type InstanceFailure } from "../errors.ts";
import type { ContainerRuntime, ExitEvent, StartedInstance, StopOptions } from "./runtime.ts";
import type { InstanceSpecInput } from "./spec.ts";

export interface SuperviseOptions {
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  factor?: number;
  /** A run at least this long resets the backoff to its initial value. */
  resetAfterMs?: number;
  onStatus?: (status: SupervisorStatus) => void;
}

export type SupervisorStatus =
  | { state: "starting"; attempt: number }
  | { state: "ready"; attempt: number; instance: StartedInstance }
  | { state: "backoff"; attempt: number; failure: InstanceFailure; restartInMs: number }
  /** Terminal: stop() was called, or the spec can never start (failure says why). */
  | { state: "stopped"; failure?: InstanceFailure };

export interface Supervisor {
  readonly instanceId: string;
  readonly status: SupervisorStatus;
  /** Stop restarting, then stop the instance (see ContainerRuntime.stop). */
  stop(options?: StopOptions): Promise<void>;
  /** Settles when supervision has ended. */
  readonly done: Promise<void>;
}

export function supervise(
  runtime: ContainerRuntime,
  spec: InstanceSpecInput,
  options: SuperviseOptions = {},
): Supervisor {
  const initial = options.initialBackoffMs ?? 1_000;
  const max = options.maxBackoffMs ?? 300_000;
  const factor = options.factor ?? 2;
  const resetAfter = options.resetAfterMs ?? 60_000;
  const instanceId = spec.instanceId;
  let status: SupervisorStatus = { state: "starting", attempt: 0 };
  let stopped = false;
  let wake: () => void = () => {};
  const stopSignal = new Promise<void>((resolve) => {
    wake = resolve;
  });
  const set = (s: SupervisorStatus) => {
    status = s;
    options.onStatus?.(s);
  };

  const nextExit = () => {
    let off = () => {};
    const promise = new Promise<ExitEvent>((resolve) => {
      const on = (e: ExitEvent) => {
        if (e.instanceId === instanceId) resolve(e);
      };
      runtime.on("exit", on);
      off = () => runtime.off("exit", on);
    });
    return { promise, off };
  };

  const loop = async () => {
    let backoff = initial;
    for (let attempt = 1; !stopped; attempt++) {
      set({ state: "starting", attempt });
      const began = Date.now();
      const exit = nextExit(); // listen before start() resolves: an exit can follow at once
      let failure: InstanceFailure | undefined;
      try {
        const instance = await runtime.start(spec);
        if (stopped) return;
        set({ state: "ready", attempt, instance });
        failure = await Promise.race([exit.promise, stopSignal.then(() => undefined)]);
      } catch (err) {
        if (stopped) return;
        if (err instanceof ValidationError) {
          set({ state: "stopped", failure: { reason: "StartFailed", message: err.message } });
          return;
        }
        failure =
          err instanceof InstanceError
            ? err.failure
            : { reason: "StartFailed", message: (err as Error)?.message ?? String(err) };
      } finally {
        exit.off();
      }
      if (stopped || !failure) return;
      if (Date.now() - began >= resetAfter) backoff = initial;
      set({ state: "backoff", attempt, failure, restartInMs: backoff });
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, backoff);
        }),
        stopSignal,
      ]);
      clearTimeout(timer);
      backoff = Math.min(backoff * factor, max);
    }
  };
  const done = loop();

  return {
    instanceId,
    get status() {
      return status;
    },
    done,
    async stop(stopOptions?: StopOptions) {
      if (!stopped) {
        stopped = true;
        wake();
      }
      await runtime.stop(instanceId, stopOptions);
      await done;
      if (status.state !== "stopped") set({ state: "stopped" });
    },
  };
}
