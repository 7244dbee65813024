/**
 * Liveness probes (the container's livenessProbe: httpGet, tcpSocket or
 * exec), as the kubelet runs them: every periodSeconds (default 10), and
 * failureThreshold failures in a row (default 3) kill the container. Its exit
 * is then reported as LivenessProbeFailed with what the probe saw, and the
 * supervisor restarts it with its usual backoff, as Kubernetes restarts a
 * container that fails its liveness probe.
 */
import type { RuntimeContext } from "./context.ts";
import { dockerStatus } from "./docker-errors.ts";
import { execRunner } from "./exec-probe.ts";
import type { Tracked } from "./instances.ts";
import { describeTarget, probeCheck, probeTarget } from "./probe.ts";
import { declaredPort } from "./spec.ts";

/** Kubernetes' defaults for a liveness probe. */
const DEFAULT_PERIOD_S = 10;
const DEFAULT_FAILURES = 3;

/** Probe a running instance's liveness until it is forgotten, stopped or killed for failing. */
export function scheduleLiveness(ctx: RuntimeContext, t: Tracked): void {
  const probe = t.spec.container.livenessProbe;
  if (!probe) return;
  const target = probeTarget(
    probe,
    {
      host: t.host,
      port: t.port,
      containerPort: declaredPort(t.spec.container),
      ...(t.pid ? { pid: t.pid } : {}),
      exec: execRunner(ctx.docker, t.containerId),
    },
    ctx.options.probeSettleMs,
  );
  const period = (probe.periodSeconds || DEFAULT_PERIOD_S) * 1000;
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
  const threshold = probe.failureThreshold ?? DEFAULT_FAILURES;
  const live = () => !t.forgotten && (t.state === "ready" || t.state === "unready");
  let failures = 0;
  const tick = async () => {
    if (!live()) return;
    const { ok, detail } = await probeCheck(target, timeoutMs);
    if (!live()) return;
    failures = ok ? 0 : failures + 1;
    if (failures >= threshold) {
      t.livenessFailure = `liveness probe failed ${failures} times in a row (${describeTarget(target)}: ${detail}); the container was killed and restarted`;
      try {
        await ctx.docker.getContainer(t.containerId).kill();
      } catch (err) {
        // Gone already: its exit is being reported anyway.
        if (dockerStatus(err) !== 404 && dockerStatus(err) !== 409) {
          ctx.emitter.emit("warning", err as Error);
        }
      }
      return;
    }
    t.livenessTimer = setTimeout(tick, period).unref();
  };
  t.livenessTimer = setTimeout(tick, Math.max(period, (probe.initialDelaySeconds ?? 0) * 1000));
  t.livenessTimer.unref();
}
