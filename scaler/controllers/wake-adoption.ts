/**
 * Placement adopting a wake (src/fleet/wake.ts): an agent that held a worker
 * revision's isolate standby started an instance on a gateway's notice and
 * claimed the wake; the scaler, bringing that revision up from nothing,
 * settles the claim (or marks it its own, so nobody claims after it placed)
 * and makes the woken instance the first one it places. Used by the fast
 * activation and the full pass alike.
 */
import type { Redis } from "ioredis";
import type { FleetKeys } from "../../src/fleet/keys.ts";
import type { AgentRecord, DesiredInstance } from "../../src/fleet/types.ts";
import { settleWakes, type WakeClaim } from "../../src/fleet/wake.ts";
import type { PlacedInstance } from "../placement.ts";
import type { RevisionWant } from "../plan.ts";

export interface AdoptedWake {
  desired: DesiredInstance;
  placed: PlacedInstance;
}

/**
 * The instance an agent woke for `ref` (its claim), as a desired instance of
 * that agent and as placed: only when the agent may hold it (live, not
 * draining, runs isolates) and the revision is a worker's; else undefined and
 * placement decides as if nobody had woken it.
 */
export function adoptWake(
  claim: WakeClaim | undefined,
  agents: readonly AgentRecord[],
  ref: string,
  want: Pick<RevisionWant, "namespace" | "revision" | "runtime" | "requests">,
  nowMs: number,
): AdoptedWake | undefined {
  if (!claim || want.runtime !== "isolate") return undefined;
  const agent = agents.find((a) => a.id === claim.agentId);
  if (!agent || agent.draining || !agent.runtimes.includes("isolate")) return undefined;
  return {
    desired: {
      id: claim.instanceId,
      namespace: want.namespace,
      revision: want.revision,
      runtime: "isolate",
    },
    placed: {
      id: claim.instanceId,
      agentId: agent.id,
      revision: ref,
      requests: want.requests,
      ready: false,
      since: nowMs,
    },
  };
}

/** Group adopted wakes by agent (what `withAdopted` adds to a plan). */
export function byAgent(wakes: readonly AdoptedWake[]): Map<string, AdoptedWake[]> {
  const out = new Map<string, AdoptedWake[]>();
  for (const a of wakes) out.set(a.placed.agentId, [...(out.get(a.placed.agentId) ?? []), a]);
  return out;
}

/** A plan's additions with the adopted instances first on their agents. */
export function withAdopted(
  add: Map<string, DesiredInstance[]>,
  adopted: ReadonlyMap<string, readonly AdoptedWake[]>,
): Map<string, DesiredInstance[]> {
  for (const [agentId, list] of adopted) {
    add.set(agentId, [...list.map((a) => a.desired), ...(add.get(agentId) ?? [])]);
  }
  return add;
}

/** Settle the wakes of `wants` ("{ns}/{rev}" -> want) and adopt what placement may: by agent. */
export async function adoptWakes(
  redis: { redis: Redis; keys: FleetKeys },
  wants: readonly [string, RevisionWant][],
  agents: readonly AgentRecord[],
  nowMs: number,
): Promise<Map<string, AdoptedWake[]>> {
  if (wants.length === 0) return new Map();
  const claims = await settleWakes(
    redis.redis,
    redis.keys,
    wants.map(([ref, w]) => ({ ref, namespace: w.namespace, revision: w.revision })),
  );
  return byAgent(
    wants.flatMap(([ref, w]) => adoptWake(claims.get(ref), agents, ref, w, nowMs) ?? []),
  );
}
