/**
 * Placing an activated revision before the full pass. A request waits at a
 * gateway for a revision with nothing placed; a full pass first reads the
 * whole fleet from Redis (agents, desired sets, reports, endpoints,
 * activation keys: several round trips, longer with more revisions). What the
 * last pass left placed, with the agents' records read again (liveness,
 * draining, standbys: placement weighs them), is enough to place the first
 * instances at once; the next full pass reads everything again and corrects
 * whatever that missed. Pure: the controller holds the view and writes the plan.
 */
import type { AgentRecord } from "../../src/fleet/types.ts";
import type { PlacedInstance, ResourceRequests } from "../placement.ts";
import { planScale, type RevisionWant, type ScalePlan } from "../plan.ts";
import type { RevisionScaling } from "./revision-autoscalers.ts";

/** What the last pass saw and left placed. */
export interface LastView {
  agents: readonly AgentRecord[];
  placed: readonly PlacedInstance[];
  /** Date.now() of the pass. */
  atMs: number;
}

/** The view after a pass applied its plan: its removals gone, its additions placed. */
export function viewAfter(
  agents: readonly AgentRecord[],
  placed: readonly PlacedInstance[],
  plan: Pick<ScalePlan, "add" | "remove">,
  requestsOf: (ref: string) => ResourceRequests | undefined,
  nowMs: number,
): LastView {
  const removed = new Set([...plan.remove.values()].flat());
  const after = placed.filter((i) => !removed.has(i.id));
  for (const [agentId, list] of plan.add) {
    for (const d of list) {
      const ref = `${d.namespace}/${d.revision}`;
      const requests = requestsOf(ref);
      if (requests)
        after.push({ id: d.id, agentId, revision: ref, requests, ready: false, since: nowMs });
    }
  }
  return { agents, placed: after, atMs: nowMs };
}

export interface ActivationInput {
  last: LastView | undefined;
  /** Revisions ("{ns}/{rev}") gateways asked for since the last pass. */
  signalled: ReadonlySet<string>;
  /** A revision's scaling, once a pass built its autoscaler (else undefined: the pass places it). */
  scaling(ref: string): { namespace: string; revision: string; s: RevisionScaling } | undefined;
  /** A view older than this is not trusted: the full pass places. */
  maxAgeMs: number;
  nowMs: number;
  newId(revision: string): string;
}

/**
 * Instances to add for signalled revisions that had nothing placed in the
 * last view: max(1, activation-scale, min-scale), within max-scale.
 */
export function planActivation(input: ActivationInput): ScalePlan["add"] {
  const { last } = input;
  const none = new Map<string, never[]>();
  if (!last || input.nowMs - last.atMs > input.maxAgeMs) return none;
  const placedRefs = new Set(last.placed.map((i) => i.revision));
  const wants = new Map<string, RevisionWant>();
  for (const ref of input.signalled) {
    if (placedRefs.has(ref)) continue;
    const known = input.scaling(ref);
    if (!known) continue;
    const { settings, needs } = known.s;
    let desired = Math.max(1, settings.activationScale, settings.minScale);
    if (settings.maxScale > 0) desired = Math.min(desired, settings.maxScale);
    wants.set(ref, {
      namespace: known.namespace,
      revision: known.revision,
      desired,
      runtime: needs.runtime,
      requests: needs.requests,
    });
  }
  if (wants.size === 0) return none;
  return planScale({
    agents: last.agents,
    placed: last.placed,
    wants,
    newId: input.newId,
    nowMs: input.nowMs,
  }).add;
}
