/**
 * The agent's side of a wake (src/fleet/wake.ts): a gateway asked for a
 * revision at zero whose isolate standby this agent holds. The agent claims
 * the wake and starts the instance at once, without the scaler's round trip
 * (its placement would pick this agent for the standby anyway). The instance
 * is held: kept though no desired set names it, until the scaler adopts it
 * or the hold ends (then the next pass stops it, back to a standby).
 */
import type { Fleet } from "../src/fleet/fleet.ts";
import { newInstanceId, parseRevisionRef } from "../src/fleet/keys.ts";
import type { DesiredInstance } from "../src/fleet/types.ts";
import { claimWake, WAKE_TTL_MS } from "../src/fleet/wake.ts";
import type { Logger } from "../src/logging.ts";
import type { Revision } from "../src/model/types.ts";
import type { IsolateDriver } from "./isolates.ts";
import type { AgentMetrics } from "./metrics.ts";

export interface AgentWakesDeps {
  fleet: Fleet;
  agentId: string;
  isolates: IsolateDriver;
  /** Running (not starting or draining) with room for one more instance. */
  canStart(): boolean;
  startHeld(desired: DesiredInstance, heldUntil: number, revision?: Revision): void;
  /** The revision from the store (read alongside the claim: one round trip less before the start). */
  readRevision(namespace: string, name: string): Promise<Revision | undefined>;
  /** A hold ended: a pass decides whether the instance stays. */
  onHoldEnded(): void;
  metrics: AgentMetrics;
  log: Logger;
}

/** Subscribes to the wake notices; resolves once the subscription is live; returns its end. */
export function watchWakes(d: AgentWakesDeps): Promise<() => Promise<void>> {
  return d.fleet.subscribe("wake", (ref) => {
    const parsed = parseRevisionRef(ref);
    if (!parsed || !d.isolates.hasStandby(ref) || !d.canStart()) return;
    void wake(d, parsed).catch((err: unknown) =>
      // The scaler's placement still comes: nothing is lost but the head start.
      d.log.warn({ err, revision: ref }, "claiming a wake failed"),
    );
  });
}

async function wake(d: AgentWakesDeps, ref: { namespace: string; revision: string }) {
  const instanceId = newInstanceId(ref.revision);
  const [claimed, revision] = await Promise.all([
    claimWake(d.fleet.redis, d.fleet.keys, ref, { agentId: d.agentId, instanceId }),
    // A failed read only costs the head start: the launch reads it again.
    d.readRevision(ref.namespace, ref.revision).catch(() => undefined),
  ]);
  if (!claimed) {
    d.metrics.wakes.inc({ outcome: "claimed-elsewhere" });
    return;
  }
  const heldUntil = Date.now() + WAKE_TTL_MS;
  d.startHeld({ id: instanceId, ...ref, runtime: "isolate" }, heldUntil, revision);
  d.metrics.wakes.inc({ outcome: "started" });
  d.log.debug({ instance: instanceId, revision: ref.revision }, "woke a standby");
  setTimeout(d.onHoldEnded, WAKE_TTL_MS + 50).unref();
}
