/**
 * The revision-status controller: the one writer of what a Revision's
 * instances say about it (ResourcesAvailable, ContainerHealthy, Ready,
 * imageDigest), propagated to its Configuration, Route and Service
 * (src/control/refresh.ts).
 *
 * Agents only observe: each writes its instances' reports (phase, when it
 * last passed readiness, its last failure that is the revision's own, the
 * image digest) into `{p}fleet:instances:{agentId}`. This controller keeps
 * the reports of every live agent, reacts at once to the fleet's `instances`
 * and `agents` channels, re-reads everything every `resyncIntervalMs`, and
 * derives each affected revision's health (deriveRevisionHealth: the
 * revision's instances as a whole, failures held visible `holdFailureMs`),
 * then writes it only when the revision would say something new
 * (withRevisionHealth). Revision changes in the cache and the end of a hold
 * make it look again.
 *
 * Everything runs through one queue (the resync loop's): fleet messages,
 * revision changes and hold timers are fed in as notices, so two derivations
 * never overlap.
 */
import { isRevisionReady } from "../../src/control/objects.ts";
import {
  deriveRevisionHealth,
  reportRevisionHealth,
  withRevisionHealth,
} from "../../src/control/revision-health.ts";
import type { Fleet } from "../../src/fleet/fleet.ts";
import { parseRevisionRef, revisionRef } from "../../src/fleet/keys.ts";
import type { InstanceStatus } from "../../src/fleet/types.ts";
import { type Logger, silentLogger } from "../../src/logging.ts";
import { Labels } from "../../src/model/types.ts";
import { inParallel } from "../../src/parallel.ts";
import { startResyncLoop, type WatchAndResync } from "../../src/redis/resync.ts";
import type { Store } from "../../src/store/store.ts";
import { ObjectCache } from "../cache.ts";
import type { ScalerMetrics } from "../metrics.ts";
import { isNotLeader } from "./guard.ts";

export interface RevisionStatusDeps {
  cache: ObjectCache;
  store: Pick<Store, "transact">;
  fleet: Pick<
    Fleet,
    "subscribe" | "onResubscribe" | "listAgents" | "getAgent" | "readInstanceStatuses"
  >;
  domain: string;
  scheme: string;
  /** A failure on a serving revision stays visible at least this long. */
  holdFailureMs: number;
  /** Level-triggered re-read of every live agent's reports. */
  resyncIntervalMs: number;
  /** Checked before every write: false once this scaler is not the leader. */
  canWrite(): boolean;
  metrics?: Pick<ScalerMetrics, "errors">;
  logger?: Logger;
}

/** Configurations whose revisions are derived (and written) at once. */
const DERIVE_IN_FLIGHT = 16;

type Notice = { type: "instances" | "agents"; agentId: string } | { type: "revision"; ref: string };

export class RevisionStatusController {
  readonly #d: RevisionStatusDeps;
  readonly #log: Logger;
  /** Live agent id -> revision ref -> its instances' reports from that agent. */
  readonly #reports = new Map<string, Map<string, InstanceStatus[]>>();
  readonly #timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  #loop: WatchAndResync | undefined;
  #notify: ((n: Notice) => void) | undefined;
  /** Agent notices queued and not yet read: a burst of them is one re-read. */
  readonly #queued = new Set<string>();
  #stopped = false;

  constructor(deps: RevisionStatusDeps) {
    this.#d = deps;
    this.#log = deps.logger ?? silentLogger;
    deps.cache.listen({
      onChange: (c) => {
        if (c.kind === "revisions" && c.after) this.#notify?.({ type: "revision", ref: c.ref });
      },
    });
  }

  /** Subscribes, reads every live agent's reports and derives; resolves after that. */
  async start(): Promise<void> {
    const { fleet } = this.#d;
    this.#loop = await startResyncLoop<Notice>({
      subscribe: async (handler) => {
        this.#notify = handler;
        this.#queued.clear();
        const offs = await Promise.all(
          (["instances", "agents"] as const).map((type) =>
            fleet.subscribe(type, (agentId) => {
              const key = `${type}:${agentId}`;
              if (this.#queued.has(key)) return;
              this.#queued.add(key);
              handler({ type, agentId });
            }),
          ),
        );
        return async () => {
          this.#notify = undefined;
          await Promise.all(offs.map((off) => off()));
        };
      },
      onResubscribe: (l) => fleet.onResubscribe(l),
      onMessage: (n) => this.#guard(() => this.#onNotice(n)),
      resync: () => this.#guard(() => this.#resync()),
      intervalMs: this.#d.resyncIntervalMs,
      logger: this.#log,
      name: "RevisionStatus",
    });
  }

  /** Re-read every live agent's reports and derive every revision now; waits for it. */
  async resyncNow(): Promise<void> {
    await this.#loop?.resyncNow();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const t of this.#timers.values()) clearTimeout(t.timer);
    this.#timers.clear();
    const loop = this.#loop;
    this.#loop = undefined;
    await loop?.stop();
  }

  async #guard(fn: () => Promise<void>): Promise<void> {
    if (this.#stopped) return;
    try {
      await fn();
    } catch (err) {
      if (this.#stopped) return;
      if (isNotLeader(err)) return;
      this.#d.metrics?.errors.inc({ stage: "status" });
      this.#log.warn({ err }, "deriving revision status failed");
    }
  }

  async #onNotice(n: Notice): Promise<void> {
    if (n.type === "revision") return this.#derive(n.ref);
    // Cleared before the read: a notice arriving during it queues another.
    this.#queued.delete(`${n.type}:${n.agentId}`);
    const refs = await this.#reread(n.agentId, n.type === "agents");
    await this.#deriveAll(refs);
  }

  /**
   * Derive many revisions, DERIVE_IN_FLIGHT configurations at once: a status
   * write is a store round trip or two, and a thousand revisions turning
   * Ready together must not wait for each other's. Revisions of one
   * Configuration go one after another (their writes meet in its status).
   * The first failure is rethrown once every group has ended.
   */
  async #deriveAll(refs: Iterable<string>): Promise<void> {
    const groups = new Map<string, string[]>();
    for (const ref of refs) {
      const rev = this.#d.cache.revisions.get(ref);
      const configuration = rev?.metadata.labels?.[Labels.configuration];
      const key = configuration ? `${rev.metadata.namespace}/${configuration}` : ref;
      const group = groups.get(key);
      if (group) group.push(ref);
      else groups.set(key, [ref]);
    }
    let failure: unknown;
    await inParallel(groups.values(), DERIVE_IN_FLIGHT, async (group) => {
      for (const ref of group) {
        if (failure !== undefined) return;
        try {
          await this.#derive(ref);
        } catch (err) {
          failure ??= err;
        }
      }
    });
    if (failure !== undefined) throw failure;
  }

  /**
   * Re-read one agent's reports; returns the revisions whose reports from it
   * changed (not all it reports on: one instance changing on an agent that
   * runs a thousand must not re-derive the thousand; the resync does that).
   */
  async #reread(agentId: string, checkAlive: boolean): Promise<Set<string>> {
    const { fleet } = this.#d;
    const before = this.#reports.get(agentId) ?? new Map<string, InstanceStatus[]>();
    const alive =
      (!checkAlive && this.#reports.has(agentId)) || (await fleet.getAgent(agentId)) !== undefined;
    if (!alive) {
      this.#reports.delete(agentId);
      return new Set(before.keys());
    }
    const after = byRevision(await fleet.readInstanceStatuses(agentId));
    this.#reports.set(agentId, after);
    const changed = new Set<string>();
    for (const ref of new Set([...before.keys(), ...after.keys()])) {
      if (JSON.stringify(before.get(ref)) !== JSON.stringify(after.get(ref))) changed.add(ref);
    }
    return changed;
  }

  async #resync(): Promise<void> {
    const { fleet } = this.#d;
    // Reads everything: whatever was queued is covered (and a queued notice a
    // lost subscription dropped can never hold an agent's key forever).
    this.#queued.clear();
    const { live } = await fleet.listAgents();
    const refs = new Set([...this.#d.cache.revisions.keys()]);
    for (const byRef of this.#reports.values()) for (const ref of byRef.keys()) refs.add(ref);
    const next = new Map<string, Map<string, InstanceStatus[]>>();
    for (const agent of live) {
      next.set(agent.id, byRevision(await fleet.readInstanceStatuses(agent.id)));
    }
    this.#reports.clear();
    for (const [id, list] of next) this.#reports.set(id, list);
    await this.#deriveAll(refs);
  }

  /** Derive one revision's health from its reports and write it if it says something new. */
  async #derive(ref: string): Promise<void> {
    const d = this.#d;
    const r = parseRevisionRef(ref);
    const rev = d.cache.revisions.get(ref);
    if (!r || !rev || this.#stopped) return;
    const reports: InstanceStatus[] = [];
    for (const byRef of this.#reports.values()) reports.push(...(byRef.get(ref) ?? []));
    const now = new Date();
    const { health, recheckInMs } = deriveRevisionHealth(reports, {
      serving: isRevisionReady(rev),
      nowMs: now.getTime(),
      holdFailureMs: d.holdFailureMs,
    });
    if (recheckInMs !== undefined) this.#recheck(ref, recheckInMs);
    if (!health) return;
    const planned = withRevisionHealth(rev, health, { now, holdFailureMs: d.holdFailureMs });
    if (planned.outcome === "held") return this.#recheck(ref, planned.retryInMs);
    if (planned.outcome !== "changed" || !d.canWrite()) return;
    const out = await reportRevisionHealth(d.store, r.namespace, r.revision, health, {
      domain: d.domain,
      scheme: d.scheme,
      holdFailureMs: d.holdFailureMs,
    });
    if (out.outcome === "held") this.#recheck(ref, out.retryInMs);
    if (out.outcome === "changed") {
      this.#log.info({ revision: ref, health }, "revision status updated");
    }
  }

  /** Derive `ref` again in `ms` (an earlier pending recheck stands). */
  #recheck(ref: string, ms: number): void {
    if (this.#stopped) return;
    const at = Date.now() + ms + 5;
    const pending = this.#timers.get(ref);
    if (pending && pending.at <= at) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.#timers.delete(ref);
      this.#notify?.({ type: "revision", ref });
    }, at - Date.now());
    timer.unref();
    this.#timers.set(ref, { at, timer });
  }
}

function byRevision(reports: readonly InstanceStatus[]): Map<string, InstanceStatus[]> {
  const out = new Map<string, InstanceStatus[]>();
  for (const s of reports) {
    const ref = revisionRef(s.namespace, s.revision);
    const list = out.get(ref);
    if (list) list.push(s);
    else out.set(ref, [s]);
  }
  return out;
}

export interface StandaloneRevisionStatusOptions
  extends Omit<RevisionStatusDeps, "cache" | "canWrite"> {
  store: RevisionStatusDeps["store"] & ConstructorParameters<typeof ObjectCache>[0]["store"];
}

/**
 * The controller alone, over a cache of its own, always allowed to write:
 * for running agents without a scaler (tests), never beside a leading scaler.
 */
export async function startRevisionStatus(
  options: StandaloneRevisionStatusOptions,
): Promise<{ controller: RevisionStatusController; stop(): Promise<void> }> {
  const logger = options.logger ?? silentLogger;
  const cache = new ObjectCache({
    store: options.store,
    resyncIntervalMs: options.resyncIntervalMs,
    logger,
  });
  const controller = new RevisionStatusController({ ...options, cache, canWrite: () => true });
  await cache.start();
  await controller.start();
  return {
    controller,
    async stop() {
      await controller.stop();
      await cache.stop();
    },
  };
}
