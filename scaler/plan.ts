/**
 * From "how many instances each revision should have" and "what is placed
 * now" to the desired-set changes per agent. Pure: placement.ts chooses the
 * agents and the victims, this module does the bookkeeping between revisions
 * (an instance placed for one revision takes room another cannot use).
 *
 * - Only instances on live agents that are not draining count: a draining
 *   agent stops its instances on its own, so they are replaced elsewhere at
 *   once; a dead agent's are simply gone.
 * - Revisions absent from `wants` are left alone, except `remove` ones
 *   (deleted revisions), whose instances all go.
 * - An instance on an agent that does not offer its runtime (any more) is
 *   removed and placed again elsewhere.
 */
import type { AgentRecord, DesiredInstance, RuntimeKind } from "../src/fleet/types.ts";
import {
  chooseVictims,
  type PlacedInstance,
  type PlacementProblem,
  place,
  type ResourceRequests,
} from "./placement.ts";

export interface RevisionWant {
  namespace: string;
  revision: string;
  /** Instances to run. */
  desired: number;
  runtime: RuntimeKind;
  requests: ResourceRequests;
}

export interface PlanInput {
  agents: readonly AgentRecord[];
  /** Every desired instance on a live agent (keyed by "{ns}/{rev}" in `revision`). */
  placed: readonly (PlacedInstance & { runtime?: RuntimeKind })[];
  /** By "{ns}/{rev}". */
  wants: ReadonlyMap<string, RevisionWant>;
  /** Revisions ("{ns}/{rev}") whose every instance goes (deleted). */
  remove?: ReadonlySet<string>;
  /** Makes a fresh, unique instance id for a revision. */
  newId(revision: string): string;
  nowMs: number;
}

export interface ScalePlan {
  /** agent id -> instances to add. */
  add: Map<string, DesiredInstance[]>;
  /** agent id -> instance ids to remove. */
  remove: Map<string, string[]>;
  /** Revisions that could not get all their instances, with why. */
  problems: Map<string, { reason: PlacementProblem; message: string; unplaced: number }>;
  /** "{ns}/{rev}" -> instances wanted on usable agents after the plan. */
  scale: Map<string, number>;
}

function push<T>(m: Map<string, T[]>, key: string, value: T): void {
  const list = m.get(key);
  if (list) list.push(value);
  else m.set(key, [value]);
}

export function planScale(input: PlanInput): ScalePlan {
  const usable = new Set(input.agents.filter((a) => !a.draining).map((a) => a.id));
  const plan: ScalePlan = {
    add: new Map(),
    remove: new Map(),
    problems: new Map(),
    scale: new Map(),
  };
  let working: PlacedInstance[] = [...input.placed];

  for (const ref of input.remove ?? []) {
    for (const inst of working.filter((i) => i.revision === ref)) {
      push(plan.remove, inst.agentId, inst.id);
    }
    working = working.filter((i) => i.revision !== ref);
  }

  // Deterministic order: the same inputs always give the same plan.
  const refs = [...input.wants.keys()].sort();
  const offers = new Map(input.agents.map((a) => [a.id, new Set(a.runtimes)]));
  for (const ref of refs) {
    const want = input.wants.get(ref)!;
    // On an agent that no longer offers the runtime (restarted without Docker) it can never run.
    const stranded = working.filter(
      (i) =>
        i.revision === ref && usable.has(i.agentId) && !offers.get(i.agentId)?.has(want.runtime),
    );
    for (const inst of stranded) push(plan.remove, inst.agentId, inst.id);
    working = working.filter((i) => !stranded.includes(i));
    const active = working.filter((i) => i.revision === ref && usable.has(i.agentId));
    const diff = want.desired - active.length;
    if (diff > 0) {
      const placed = place({
        agents: input.agents,
        current: working,
        revision: { key: ref, runtime: want.runtime, requests: want.requests },
        count: diff,
      });
      for (const agentId of placed.agentIds) {
        const id = input.newId(want.revision);
        push(plan.add, agentId, {
          id,
          namespace: want.namespace,
          revision: want.revision,
          runtime: want.runtime,
        });
        working.push({
          id,
          agentId,
          revision: ref,
          requests: want.requests,
          ready: false,
          since: input.nowMs,
        });
      }
      if (placed.problem) plan.problems.set(ref, { ...placed.problem, unplaced: placed.unplaced });
      plan.scale.set(ref, active.length + placed.agentIds.length);
    } else if (diff < 0) {
      // Instances on draining agents are not candidates: they are not counted either.
      const candidates = working.filter((i) => i.revision !== ref || usable.has(i.agentId));
      const victims = new Set(
        chooseVictims({ agents: input.agents, current: candidates, revision: ref, count: -diff }),
      );
      for (const inst of working)
        if (victims.has(inst.id)) push(plan.remove, inst.agentId, inst.id);
      working = working.filter((i) => !victims.has(i.id));
      plan.scale.set(ref, active.length - victims.size);
    } else plan.scale.set(ref, active.length);
  }
  return plan;
}
