/**
 * What this agent writes to Redis about itself and its instances: its host
 * record (registered, refreshed by a heartbeat with a TTL, announced as
 * draining, deregistered) and, per instance, its endpoint (published only
 * while it is ready and the agent runs) and its report. Each instance's writes
 * go through its own chain, in order; a failed write marks it dirty and the
 * next pass writes again. `syncAll` is the level-triggered repair: Redis must
 * hold exactly the endpoints and reports of the instances the agent holds.
 */
import type { Fleet } from "../src/fleet/fleet.ts";
import type { AgentRecord, Endpoint, RuntimeKind } from "../src/fleet/types.ts";
import { canonicalJson } from "../src/model/index.ts";
import { agentRecord, type Capacity } from "./identity.ts";
import { type Instance, statusOf } from "./instance.ts";

export interface FleetMirrorOptions {
  fleet: Fleet;
  agentId: string;
  address: string;
  capacity: Capacity;
  labels: Record<string, string>;
  startedAt: Date;
  heartbeatTtlMs: number;
  heartbeatIntervalMs: number;
  /** The agent's books: the instances it holds now. */
  instances: ReadonlyMap<string, Instance>;
  /** The runtimes it offers (settled during start). */
  runtimes: () => RuntimeKind[];
  /** "ns/rev" of the paused standbys it holds (placement prefers this agent for them). */
  standbys: () => string[];
  /** Network sandboxes ready for container starts (placement prefers this agent for those). */
  sandboxes?: () => number;
  /** Whether endpoints may be published (the agent is starting or running). */
  serving: () => boolean;
  draining: () => boolean;
  /** A heartbeat found the record expired (taken for dead) while running: resync. */
  onRejoined: () => void;
  /** A Redis write failed (the agent logs it, quietly while Redis is away). */
  onFailure: (err: unknown, msg: string, instance?: string) => void;
}

export class FleetMirror {
  readonly #o: FleetMirrorOptions;
  #timer: NodeJS.Timeout | undefined;
  #beating = false;
  #lastBeat = 0;

  constructor(options: FleetMirrorOptions) {
    this.#o = options;
  }

  /** ms since epoch of the last heartbeat that landed. */
  get lastBeat(): number {
    return this.#lastBeat;
  }

  // ---- the host record ------------------------------------------------------

  /** Register the host record, then refresh it every heartbeatIntervalMs. */
  async register(): Promise<void> {
    const o = this.#o;
    await o.fleet.registerAgent(this.#record(), o.heartbeatTtlMs);
    this.#lastBeat = Date.now();
    this.#timer = setInterval(() => void this.#beat(), o.heartbeatIntervalMs);
  }

  /** Announce the draining record at once, so that the scaler places nothing new here. */
  announceDrain(): Promise<unknown> {
    return this.#o.fleet.heartbeat(this.#record(true), this.#o.heartbeatTtlMs, { announce: true });
  }

  stopHeartbeat(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  deregister(): Promise<void> {
    return this.#o.fleet.deregisterAgent(this.#o.agentId);
  }

  #record(draining = this.#o.draining()): AgentRecord {
    const o = this.#o;
    const record = agentRecord({
      id: o.agentId,
      address: o.address,
      runtimes: o.runtimes(),
      capacity: o.capacity,
      labels: o.labels,
      startedAt: o.startedAt,
      draining,
    });
    const standbys = draining ? [] : o.standbys();
    if (standbys.length) record.standbys = standbys;
    const sandboxes = draining ? 0 : (o.sandboxes?.() ?? 0);
    if (sandboxes > 0) record.sandboxes = sandboxes;
    return record;
  }

  async #beat(): Promise<void> {
    if (this.#beating) return;
    this.#beating = true;
    try {
      const { rejoined } = await this.#o.fleet.heartbeat(this.#record(), this.#o.heartbeatTtlMs);
      this.#lastBeat = Date.now();
      if (rejoined) this.#o.onRejoined();
    } catch (err) {
      this.#o.onFailure(err, "heartbeat failed");
    } finally {
      this.#beating = false;
    }
  }

  // ---- instances --------------------------------------------------------------

  /** Queue a write of the instance's endpoint and report, in order, as they are when it runs. */
  push(inst: Instance): Promise<void> {
    inst.chain = inst.chain
      .then(() => this.#sync(inst))
      .catch((err: unknown) => {
        inst.dirty = true;
        this.#o.onFailure(err, "writing instance state to Redis failed", inst.id);
      });
    return inst.chain;
  }

  /** Queue the removal of a stopped instance's report (after its other writes). */
  removeReport(inst: Instance): Promise<void> {
    inst.chain = inst.chain.then(() =>
      this.#o.fleet.removeInstanceStatus(this.#o.agentId, inst.id).catch((err: unknown) => {
        this.#o.onFailure(err, "removing instance report failed", inst.id);
      }),
    );
    return inst.chain;
  }

  #wantEndpoint(inst: Instance): Endpoint | undefined {
    if (inst.stopping || inst.phase !== "ready") return undefined;
    if (!this.#o.serving()) return undefined;
    return inst.endpoint;
  }

  async #sync(inst: Instance): Promise<void> {
    const { fleet, agentId, instances } = this.#o;
    const { namespace, revision } = inst.desired;
    const want = this.#wantEndpoint(inst);
    const wantJson = want ? JSON.stringify(want) : undefined;
    if (wantJson !== inst.published || inst.dirty) {
      if (want) await fleet.publishEndpoint(namespace, revision, want);
      else await fleet.withdrawEndpoint(namespace, revision, inst.id, agentId);
      inst.published = wantJson;
    }
    if (instances.get(inst.id) !== inst && inst.stopped) return;
    const report = statusOf(inst, agentId);
    const reportJson = canonicalJson(report);
    if (reportJson !== inst.reported || inst.dirty) {
      await fleet.writeInstanceStatus(report, this.#o.heartbeatTtlMs);
      inst.reported = reportJson;
    }
    inst.dirty = false;
  }

  /**
   * Level-triggered repair: Redis must hold exactly the endpoints and reports
   * of the instances this agent holds (leftovers of a previous run, writes
   * lost while Redis was away, a pruning while the agent looked dead).
   */
  async syncAll(): Promise<void> {
    const { fleet, agentId, instances } = this.#o;
    const [published, reports] = await Promise.all([
      fleet.agentEndpoints(agentId),
      fleet.readInstanceStatuses(agentId),
    ]);
    const publishedIds = new Set(published.map((p) => p.instanceId));
    const stale: Promise<unknown>[] = [];
    for (const p of published) {
      if (!instances.has(p.instanceId)) {
        stale.push(fleet.withdrawEndpoint(p.namespace, p.revision, p.instanceId, agentId));
      }
    }
    const reported = new Map(reports.map((r) => [r.id, canonicalJson(r)]));
    for (const r of reports) {
      if (!instances.has(r.id)) stale.push(fleet.removeInstanceStatus(agentId, r.id));
    }
    await Promise.all(stale);
    for (const inst of instances.values()) {
      const endpointWrong = (this.#wantEndpoint(inst) !== undefined) !== publishedIds.has(inst.id);
      const reportWrong = reported.get(inst.id) !== inst.reported;
      if (endpointWrong || reportWrong || inst.dirty) {
        inst.dirty = true;
        void this.push(inst);
      }
    }
  }
}
