/**
 * One consistent-enough look at the fleet for a scaling pass: the live
 * agents (dead ones are pruned on the way, their endpoints withdrawn, unless
 * the caller holds off declaring anyone dead: then they are `missing`), what
 * the scaler wants on each (desired sets), what each agent reports, and the
 * ready endpoints of every revision, keyed "{ns}/{rev}".
 */
import type { Fleet } from "../src/fleet/fleet.ts";
import type { AgentRecord, DesiredInstance, Endpoint, InstanceStatus } from "../src/fleet/types.ts";

export interface FleetView {
  /** Live agents (heartbeat within its TTL), draining ones included. */
  agents: AgentRecord[];
  byId: Map<string, AgentRecord>;
  /** Members without a heartbeat record that were not pruned (`prune: false`). */
  missing: string[];
  /** agent id -> the instances the scaler wants there. */
  desired: Map<string, DesiredInstance[]>;
  /** instance id -> the agent's report on it. */
  statuses: Map<string, InstanceStatus>;
  /** "{ns}/{rev}" -> ready endpoints on live agents. */
  endpoints: Map<string, Endpoint[]>;
}

export async function readFleetView(
  fleet: Fleet,
  options: { prune?: () => boolean } = {},
): Promise<FleetView> {
  // Read without pruning first; whether the missing are dead is decided after
  // the read returned (see ScalerLoop: a reconnect is only known by then).
  let { live: agents, missing } = await fleet.listAgents();
  if (missing.length > 0 && (options.prune?.() ?? true)) {
    agents = await fleet.listLiveAgents();
    missing = [];
  }
  const byId = new Map(agents.map((a) => [a.id, a]));
  const [desiredLists, statusLists, allEndpoints] = await Promise.all([
    Promise.all(agents.map((a) => fleet.readDesired(a.id))),
    Promise.all(agents.map((a) => fleet.readInstanceStatuses(a.id))),
    fleet.readAllEndpoints(),
  ]);
  const desired = new Map<string, DesiredInstance[]>();
  agents.forEach((a, i) => {
    desired.set(a.id, desiredLists[i] ?? []);
  });
  const statuses = new Map<string, InstanceStatus>();
  for (const list of statusLists) for (const s of list) statuses.set(s.id, s);
  const endpoints = new Map<string, Endpoint[]>();
  for (const [ref, list] of allEndpoints) {
    // An endpoint counts only while its agent is alive (gateways apply the same rule).
    const live = list.filter((e) => byId.has(e.agentId));
    if (live.length > 0) endpoints.set(ref, live);
  }
  return { agents, byId, missing, desired, statuses, endpoints };
}

/** Ready instances of a revision: its endpoints on live agents. */
export function readyCount(view: FleetView, ref: string): number {
  return view.endpoints.get(ref)?.length ?? 0;
}
