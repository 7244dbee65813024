/**
 * Where a revision's instances run, and which ones go on scale-down. Pure and
 * deterministic: the same inputs give the same answer (ties break on ids), so
 * two scalers, or one scaler before and after a restart, agree.
 *
 * Placing: an agent qualifies when it is in the list (the caller passes live
 * agents), is not draining, offers the runtime and has room for the request
 * (CPU and memory requests summed over its instances against its capacity,
 * and its instance count against maxInstances). Among those, each instance
 * goes to the agent with the fewest instances of this revision (spread across
 * hosts), then one that reports a paused standby of the revision (a start
 * there resumes it instead of creating a container; one placement per
 * reported standby), then, for a container revision, one that reports ready
 * network sandboxes (a cold start there skips Docker's network setup; one
 * placement per sandbox), then the least loaded one (largest share of CPU, memory or instance
 * slots in use), then the smallest id. Re-placing after an agent died is just
 * placing the missing count again without that agent.
 */
import { z } from "zod";
import { ValidationError } from "../src/errors.ts";
import type { AgentRecord, RuntimeKind } from "../src/fleet/types.ts";
import { MIB } from "../src/model/limits.ts";
import { parseCpu, parseMemory } from "../src/model/quantity.ts";
import type { RevisionSpec } from "../src/model/types.ts";

export interface ResourceRequests {
  cpuMillis: number;
  memoryBytes: number;
}

const requestsSchema = (cpuMillis: number, memoryBytes: number) =>
  z
    .object({
      cpuMillis: z.number().int().positive().default(cpuMillis),
      memoryBytes: z.number().int().positive().default(memoryBytes),
    })
    .prefault({});

/** What an instance is assumed to need when its revision does not say. */
export const placementOptionsSchema = z.object({
  container: requestsSchema(100, 128 * MIB),
  isolate: requestsSchema(10, 16 * MIB),
});
export type PlacementOptions = z.output<typeof placementOptionsSchema>;
export const defaultPlacementOptions: PlacementOptions = placementOptionsSchema.parse({});

export interface RevisionNeeds {
  runtime: RuntimeKind;
  requests: ResourceRequests;
}

/**
 * The runtime and per-instance requests of a revision: a container's
 * resources.requests (else its limits, as Kubernetes defaults requests to
 * limits), a worker's resources.limits, else the defaults. A stored revision
 * was validated, so a bad quantity here is reported against its field.
 */
export function revisionNeeds(
  spec: Pick<RevisionSpec, "containers" | "worker">,
  options: PlacementOptions = defaultPlacementOptions,
): RevisionNeeds {
  const quantity = (
    text: string | undefined,
    parse: (q: string) => number,
    fallback: number,
    field: string,
  ) => {
    if (text === undefined) return fallback;
    try {
      return parse(text);
    } catch (err) {
      throw ValidationError.of([{ field, message: (err as Error).message }]);
    }
  };
  const container = spec.containers?.[0];
  if (container !== undefined) {
    const r = container.resources;
    const d = options.container;
    const cpuFrom = r?.requests?.cpu !== undefined ? "requests" : "limits";
    const memFrom = r?.requests?.memory !== undefined ? "requests" : "limits";
    const at = (from: string, what: string) => `spec.containers[0].resources.${from}.${what}`;
    return {
      runtime: "container",
      requests: {
        cpuMillis: quantity(r?.[cpuFrom]?.cpu, parseCpu, d.cpuMillis, at(cpuFrom, "cpu")),
        memoryBytes: quantity(
          r?.[memFrom]?.memory,
          parseMemory,
          d.memoryBytes,
          at(memFrom, "memory"),
        ),
      },
    };
  }
  const limits = spec.worker?.resources?.limits;
  const d = options.isolate;
  return {
    runtime: "isolate",
    requests: {
      cpuMillis: quantity(limits?.cpu, parseCpu, d.cpuMillis, "spec.worker.resources.limits.cpu"),
      memoryBytes: quantity(
        limits?.memory,
        parseMemory,
        d.memoryBytes,
        "spec.worker.resources.limits.memory",
      ),
    },
  };
}

/** An instance the scaler has placed (wanted on an agent), with what it reserves there. */
export interface PlacedInstance {
  id: string;
  agentId: string;
  /** The revision it runs, as the caller keys revisions (e.g. "{ns}/{rev}"). */
  revision: string;
  requests: ResourceRequests;
  /** Passes readiness. Scale-down removes instances that do not first. */
  ready?: boolean;
  /** ms since epoch it was placed; scale-down removes newer ones first. */
  since?: number;
}

export interface PlaceInput {
  /** Live agents (heartbeat not expired). Draining ones are skipped here. */
  agents: readonly AgentRecord[];
  /** Every instance placed on those agents, of any revision. */
  current: readonly PlacedInstance[];
  revision: { key: string; runtime: RuntimeKind; requests: ResourceRequests };
  /** How many more instances to place. */
  count: number;
}

export type PlacementProblem = "NoAgents" | "RuntimeUnavailable" | "InsufficientCapacity";

export interface Placement {
  /** One agent id per placed instance (an id repeats when it takes several). */
  agentIds: string[];
  /** count - agentIds.length. */
  unplaced: number;
  /** Set when unplaced > 0. */
  problem?: { reason: PlacementProblem; message: string };
}

interface Usage {
  agent: AgentRecord;
  cpuMillis: number;
  memoryBytes: number;
  instances: number;
  /** Instances of the revision being placed or trimmed. */
  mine: number;
}

function usageByAgent(
  agents: readonly AgentRecord[],
  current: readonly PlacedInstance[],
  revision: string,
): Map<string, Usage> {
  const out = new Map<string, Usage>();
  for (const agent of agents) {
    out.set(agent.id, { agent, cpuMillis: 0, memoryBytes: 0, instances: 0, mine: 0 });
  }
  for (const inst of current) {
    const u = out.get(inst.agentId);
    if (u === undefined) continue; // on an agent that is gone: reserves nothing
    u.cpuMillis += inst.requests.cpuMillis;
    u.memoryBytes += inst.requests.memoryBytes;
    u.instances++;
    if (inst.revision === revision) u.mine++;
  }
  return out;
}

/** The largest share of any resource in use (0..1+). */
function load(u: Usage): number {
  const c = u.agent.capacity;
  const share = (used: number, cap: number) => (cap > 0 ? used / cap : used > 0 ? 1 : 0);
  return Math.max(
    share(u.cpuMillis, c.cpuMillis),
    share(u.memoryBytes, c.memoryBytes),
    share(u.instances, c.maxInstances),
  );
}

/** Why `u` cannot take one more instance needing `r`, or undefined when it can. */
function lacks(u: Usage, r: ResourceRequests): string | undefined {
  const c = u.agent.capacity;
  if (u.instances + 1 > c.maxInstances) return `${u.instances}/${c.maxInstances} instances`;
  if (u.cpuMillis + r.cpuMillis > c.cpuMillis) {
    return `cpu ${u.cpuMillis}m of ${c.cpuMillis}m requested, needs ${r.cpuMillis}m more`;
  }
  if (u.memoryBytes + r.memoryBytes > c.memoryBytes) {
    const mib = (b: number) => `${Math.round((b / MIB) * 10) / 10}Mi`;
    return `memory ${mib(u.memoryBytes)} of ${mib(c.memoryBytes)} requested, needs ${mib(r.memoryBytes)} more`;
  }
  return undefined;
}

const byId = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Choose agents for `count` more instances of a revision. */
export function place(input: PlaceInput): Placement {
  const { revision, count } = input;
  const agentIds: string[] = [];
  if (count <= 0) return { agentIds, unplaced: 0 };
  const live = input.agents.filter((a) => !a.draining);
  const offering = live.filter((a) => a.runtimes.includes(revision.runtime));
  const usage = usageByAgent(offering, input.current, revision.key);
  const candidates = [...usage.values()];
  // Agents holding a standby of this revision, each good for one resume.
  const standby = new Set(
    offering.filter((a) => a.standbys?.includes(revision.key)).map((a) => a.id),
  );
  const hasStandby = (u: Usage) => (standby.has(u.agent.id) ? 1 : 0);
  // Ready network sandboxes by agent, each good for one container start.
  const sandboxes = new Map(
    revision.runtime === "container" ? offering.map((a) => [a.id, a.sandboxes ?? 0]) : [],
  );
  const hasSandbox = (u: Usage) => ((sandboxes.get(u.agent.id) ?? 0) > 0 ? 1 : 0);

  let blocked: Usage[] = [];
  while (agentIds.length < count) {
    const fits = candidates.filter((u) => lacks(u, revision.requests) === undefined);
    if (fits.length === 0) {
      blocked = candidates;
      break;
    }
    fits.sort(
      (a, b) =>
        a.mine - b.mine ||
        hasStandby(b) - hasStandby(a) ||
        hasSandbox(b) - hasSandbox(a) ||
        load(a) - load(b) ||
        byId(a.agent.id, b.agent.id),
    );
    const best = fits[0]!;
    // A resume uses no sandbox; a cold start uses one, if it has one left.
    if (!standby.delete(best.agent.id) && hasSandbox(best)) {
      sandboxes.set(best.agent.id, (sandboxes.get(best.agent.id) ?? 0) - 1);
    }
    best.cpuMillis += revision.requests.cpuMillis;
    best.memoryBytes += revision.requests.memoryBytes;
    best.instances++;
    best.mine++;
    agentIds.push(best.agent.id);
  }

  const unplaced = count - agentIds.length;
  if (unplaced === 0) return { agentIds, unplaced };
  let problem: Placement["problem"];
  if (live.length === 0) {
    problem = {
      reason: "NoAgents",
      message:
        input.agents.length === 0
          ? "no live agent: start `skiff agent` on a host"
          : "every live agent is draining",
    };
  } else if (offering.length === 0) {
    problem = {
      reason: "RuntimeUnavailable",
      message: `no live agent offers the ${revision.runtime} runtime (agents: ${live
        .map((a) => `${a.id} [${a.runtimes.join(", ") || "none"}]`)
        .join("; ")})`,
    };
  } else {
    const why = blocked
      .sort((a, b) => byId(a.agent.id, b.agent.id))
      .map((u) => `${u.agent.id}: ${lacks(u, revision.requests)}`)
      .join("; ");
    problem = {
      reason: "InsufficientCapacity",
      message: `${unplaced} of ${count} instance(s) could not be placed: no agent has room (${why})`,
    };
  }
  return { agentIds, unplaced, problem };
}

export interface VictimInput {
  /** Live agents; instances on agents not listed, or draining, go first. */
  agents: readonly AgentRecord[];
  /** Every placed instance, of any revision (for each agent's load). */
  current: readonly PlacedInstance[];
  /** The revision to trim. */
  revision: string;
  count: number;
}

/**
 * Instance ids to remove when a revision scales down by `count`: first those
 * on agents that are gone or draining, then those not ready yet, then from
 * the agent with the most instances of this revision (keeping the spread),
 * then the most loaded agent, then the newest instance, then the largest id.
 */
export function chooseVictims(input: VictimInput): string[] {
  const mine = input.current.filter((i) => i.revision === input.revision);
  const usage = usageByAgent(
    input.agents.filter((a) => !a.draining),
    input.current,
    input.revision,
  );
  const pool = [...mine];
  const out: string[] = [];
  while (out.length < input.count && pool.length > 0) {
    const rank = (i: PlacedInstance) => {
      const u = usage.get(i.agentId);
      return {
        gone: u === undefined ? 0 : 1,
        ready: i.ready ? 1 : 0,
        mine: u?.mine ?? 0,
        load: u ? load(u) : 0,
        since: i.since ?? 0,
      };
    };
    pool.sort((x, y) => {
      const a = rank(x);
      const b = rank(y);
      return (
        a.gone - b.gone ||
        a.ready - b.ready ||
        b.mine - a.mine ||
        b.load - a.load ||
        b.since - a.since ||
        byId(y.id, x.id)
      );
    });
    const victim = pool.shift()!;
    out.push(victim.id);
    const u = usage.get(victim.agentId);
    if (u !== undefined) {
      u.cpuMillis -= victim.requests.cpuMillis;
      u.memoryBytes -= victim.requests.memoryBytes;
      u.instances--;
      u.mine--;
    }
  }
  return out;
}
