/**
 * The scale controller's side of the agents' desired sets: what is placed
 * now (read from one look at the fleet), a pass's changes written agent by
 * agent (fenced by the lease, in the writer), and the sets of agents that are
 * gone cleared, so a host that comes back starts nothing stale.
 */
import type { DesiredWriter } from "../../src/fleet/desired.ts";
import { parseRevisionRef, revisionRef } from "../../src/fleet/keys.ts";
import type { DesiredInstance } from "../../src/fleet/types.ts";
import type { Logger } from "../../src/logging.ts";
import type { RedisStore } from "../../src/store/index.ts";
import type { FleetView } from "../fleet-view.ts";
import type { ScalerMetrics } from "../metrics.ts";
import type { PlacedInstance, ResourceRequests } from "../placement.ts";

export interface Placed {
  placed: PlacedInstance[];
  /** Instances per known revision on agents that are not draining. */
  placedByRev: Map<string, number>;
  /** Revisions placed but not in the cache. */
  unknown: Set<string>;
}

/** What the desired sets of live agents hold; `requestsOf` is what an instance is assumed to take. */
export function readPlaced(
  view: FleetView,
  known: (ref: string) => boolean,
  requestsOf: (ref: string, d: DesiredInstance) => ResourceRequests,
): Placed {
  const placedByRev = new Map<string, number>();
  const placed: PlacedInstance[] = [];
  const unknown = new Set<string>();
  for (const [agentId, list] of view.desired) {
    const agent = view.byId.get(agentId);
    for (const d of list) {
      const ref = revisionRef(d.namespace, d.revision);
      const status = view.statuses.get(d.id);
      placed.push({
        id: d.id,
        agentId,
        revision: ref,
        requests: requestsOf(ref, d),
        ready: status?.phase === "ready",
        ...(status ? { since: status.since } : {}),
      });
      if (!known(ref)) unknown.add(ref);
      else if (agent && !agent.draining) placedByRev.set(ref, (placedByRev.get(ref) ?? 0) + 1);
    }
  }
  return { placed, placedByRev, unknown };
}

/** Of revisions placed but unknown to the cache, the deleted ones (checked in the store, not just the cache). */
export async function deletedRevisions(
  unknown: Iterable<string>,
  store: Pick<RedisStore, "get">,
): Promise<Set<string>> {
  const remove = new Set<string>();
  for (const ref of unknown) {
    const r = parseRevisionRef(ref)!;
    if (!(await store.get("revisions", r.namespace, r.revision))) remove.add(ref);
  }
  return remove;
}

export class DesiredSets {
  readonly #writer: DesiredWriter;
  readonly #metrics: ScalerMetrics;
  readonly #log: Logger;
  /** Live agents of the last pass (an agent missing now died: its desired set is cleared). */
  #lastAgents = new Set<string>();
  #scanDesired = true;

  constructor(writer: DesiredWriter, metrics: ScalerMetrics, log: Logger) {
    this.#writer = writer;
    this.#metrics = metrics;
    this.#log = log;
  }

  /** The next pass also looks for desired sets of agents it never saw (after a cache resync). */
  rescan(): void {
    this.#scanDesired = true;
  }

  async apply(add: Map<string, DesiredInstance[]>, remove: Map<string, string[]>): Promise<void> {
    const agents = new Set([...add.keys(), ...remove.keys()]);
    for (const agentId of agents) {
      const adding = add.get(agentId) ?? [];
      const removing = remove.get(agentId) ?? [];
      await this.#writer.write(agentId, { add: adding, remove: removing });
      if (adding.length) this.#metrics.scaleChanges.inc({ change: "added" }, adding.length);
      if (removing.length) this.#metrics.scaleChanges.inc({ change: "removed" }, removing.length);
      this.#log.info(
        { agent: agentId, added: adding.map((d) => d.id), removed: removing },
        "desired instances changed",
      );
    }
  }

  /** Desired sets of agents that are gone: cleared, so a host that comes back starts nothing stale. */
  async clearDeadAgents(view: FleetView): Promise<void> {
    const candidates = new Set([...this.#lastAgents].filter((id) => !view.byId.has(id)));
    if (this.#scanDesired) {
      this.#scanDesired = false;
      for (const id of await this.#writer.agentsWithDesired()) {
        if (!view.byId.has(id)) candidates.add(id);
      }
    }
    for (const id of candidates) {
      await this.#writer.write(id, { clear: true });
      this.#log.info({ agent: id }, "agent gone: its desired instances are placed elsewhere");
    }
    this.#lastAgents = new Set(view.byId.keys());
  }
}
