/**
 * Placing an activated revision before the full pass. A request waits at a
 * gateway for a revision with nothing placed; a full pass first reads the
 * whole fleet from Redis (agents, desired sets, reports, endpoints,
 * activation keys: several round trips, longer with more revisions). What the
 * last pass left placed, with the agents' records read again (liveness,
 * draining, standbys: placement weighs them), is enough to place the first
 * instances at once; the next full pass reads everything again and corrects
 * whatever that missed. An agent that claimed the wake of its isolate
 * standby (src/fleet/wake.ts) has started the instance already: placement
 * adopts it when the agent may hold it (live, not draining, runs isolates).
 * Pure: the controller holds the view and writes the plan.
 */
import type { AgentRecord } from "../../src/fleet/types.ts";
import type { WakeClaim } from "../../src/fleet/wake.ts";
import type { PlacedInstance, ResourceRequests } from "../placement.ts";
import { planScale, type RevisionWant, type ScalePlan } from "../plan.ts";
import type { RevisionScaling } from "./revision-autoscalers.ts";
import { type AdoptedWake, adoptWake, byAgent, withAdopted } from "./wake-adoption.ts";

/** What the last pass left placed (plus what was placed at activations since). */
export interface LastView {
  placed: readonly PlacedInstance[];
  /** Date.now() of the pass. */
  atMs: number;
}

/** The view after a plan was applied: its removals gone, its additions placed. */
export function viewAfter(
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
  return { placed: after, atMs: nowMs };
}

/**
 * The signalled revisions ("{ns}/{rev}") the last view has nothing placed of:
 * the ones to place now. Undefined when there is no view, or it is older
 * than `maxAgeMs` (the full pass places then).
 */
export function unplacedSignals(
  last: LastView | undefined,
  signalled: ReadonlySet<string>,
  nowMs: number,
  maxAgeMs: number,
): string[] | undefined {
  if (!last || nowMs - last.atMs > maxAgeMs) return undefined;
  const placed = new Set(last.placed.map((i) => i.revision));
  return [...signalled].filter((ref) => !placed.has(ref));
}

export interface ActivationInput {
  /** The agents as they are now (liveness, draining, standbys). */
  agents: readonly AgentRecord[];
  last: LastView;
  /** Revisions to place (unplacedSignals). */
  refs: readonly string[];
  /** A revision's scaling, once a pass built its autoscaler (else undefined: the pass places it). */
  scaling(ref: string): { namespace: string; revision: string; s: RevisionScaling } | undefined;
  nowMs: number;
  newId(revision: string): string;
  /** Wakes agents claimed (settleWakes), by ref. */
  claims?: ReadonlyMap<string, WakeClaim>;
}

/**
 * Instances to add for `refs`: max(1, activation-scale, min-scale), within
 * max-scale; `handled` when every one of them got its instances' placement.
 */
export function planActivation(input: ActivationInput): {
  add: ScalePlan["add"];
  handled: boolean;
} {
  const wants = new Map<string, RevisionWant>();
  const adopted: AdoptedWake[] = [];
  const placed = [...input.last.placed];
  for (const ref of input.refs) {
    const known = input.scaling(ref);
    if (!known) continue;
    const { settings, needs } = known.s;
    const woken = adoptWake(
      input.claims?.get(ref),
      input.agents,
      ref,
      {
        namespace: known.namespace,
        revision: known.revision,
        runtime: needs.runtime,
        requests: needs.requests,
      },
      input.nowMs,
    );
    if (woken) {
      adopted.push(woken);
      placed.push(woken.placed);
    }
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
  const add: ScalePlan["add"] =
    wants.size === 0
      ? new Map()
      : planScale({ agents: input.agents, placed, wants, newId: input.newId, nowMs: input.nowMs })
          .add;
  withAdopted(add, byAgent(adopted));
  const got = new Set([...add.values()].flat().map((d) => `${d.namespace}/${d.revision}`));
  return { add, handled: input.refs.every((ref) => got.has(ref)) };
}
