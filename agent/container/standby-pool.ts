/**
 * The pool of paused standbys (policy in standby.ts): a drained instance's
 * container is paused and kept (its port stays reserved) instead of removed,
 * and a later start() of the same spec under a new instance id resumes it.
 * Standbys expire after retentionMs, the oldest goes first when the pool is
 * full or memory is tight, and one that dies while paused is dropped.
 */
import type Docker from "dockerode";
import type { RuntimeContext } from "./context.ts";
import { elapsed } from "./context.ts";
import { dockerMessage } from "./docker-errors.ts";
import { ownPid } from "./exits.ts";
import type { Tracked } from "./instances.ts";
import { throwIfInterrupted } from "./readiness.ts";
import type { Endpoint, StandbyInfo, StartedInstance } from "./runtime-types.ts";
import type { InstanceSpec } from "./spec.ts";
import { memoryAvailable, standbyKey } from "./standby.ts";

export interface Standby extends StandbyInfo {
  key: string;
  imageId: string;
  pid?: number;
  timer?: NodeJS.Timeout;
}

export class StandbyPool {
  readonly #ctx: RuntimeContext;
  /** Paused standbys by container id. */
  readonly #standbys = new Map<string, Standby>();

  constructor(ctx: RuntimeContext) {
    this.#ctx = ctx;
  }

  get(containerId: string): Standby | undefined {
    return this.#standbys.get(containerId);
  }

  /** Claims a standby of exactly this spec (the newest), or undefined. */
  take(spec: InstanceSpec): Standby | undefined {
    if (this.#standbys.size === 0) return undefined;
    const key = standbyKey(spec);
    let found: Standby | undefined;
    for (const s of this.#standbys.values()) {
      if (s.key === key && (!found || s.pausedAt > found.pausedAt)) found = s;
    }
    if (!found) return undefined;
    this.#standbys.delete(found.containerId);
    clearTimeout(found.timer);
    return found;
  }

  /**
   * Unpause a standby as instance `spec.instanceId`: same container, netns and
   * published port; readiness is probed again before it counts as started.
   * Undefined (standby removed) when it cannot serve: the caller creates a
   * container instead.
   */
  async resume(spec: InstanceSpec, s: Standby): Promise<StartedInstance | undefined> {
    const ctx = this.#ctx;
    const id = spec.instanceId;
    const t0 = performance.now();
    const [resolved, opened] = await Promise.allSettled([
      ctx.images.resolve(id, spec.container.image),
      ctx.events.open(),
    ]);
    if (resolved.status === "rejected" || opened.status === "rejected") {
      await this.drop(s, "image or events unavailable");
      return undefined;
    }
    const image = resolved.value;
    if (image.id !== s.imageId) {
      // The tag moved since the pause: what runs must be what the spec resolves to now.
      await this.drop(s, `image ${spec.container.image} now resolves to another image`);
      return undefined;
    }
    const t1 = performance.now();
    const t = ctx.table.track(
      spec,
      s.containerId,
      { host: s.host, port: s.port, protocol: s.protocol },
      "starting",
    );
    t.imageId = s.imageId;
    if (s.pid) t.pid = s.pid;
    const container = ctx.docker.getContainer(s.containerId);
    try {
      await container.unpause();
    } catch (err) {
      if (t.state === "stopping") {
        await t.stopping;
        throwIfInterrupted(t);
      }
      await ctx.table.discard(t);
      this.#warn(`resuming standby ${s.containerId.slice(0, 12)}: ${dockerMessage(err)}`);
      ctx.emitter.emit("standby", {
        change: "removed",
        containerId: s.containerId,
        reason: "ResumeFailed",
      });
      return undefined;
    }
    const t2 = performance.now();
    ctx.emitter.emit("standby", { change: "resumed", containerId: s.containerId });
    // The name carries the instance id (labels cannot change): adoption after a restart reads it.
    const renamed = container
      .rename({ name: ctx.owned.containerName(id) })
      .catch((err: unknown) => this.#warn(`renaming resumed container: ${dockerMessage(err)}`));
    if (!t.pid) await ctx.exits.checkAlive(t);
    const target = ctx.readiness.target(t);
    try {
      await ctx.readiness.waitReady(t, target, t2, ctx.options.standby.resumeTimeoutMs, true);
    } catch (err) {
      await renamed;
      if (t.state === "stopping") throw err;
      // Ready when paused, not now (it died, or its readiness depends on more than
      // itself): a fresh container is the better bet than a failure.
      await ctx.table.discard(t);
      this.#warn(
        `standby ${s.containerId.slice(0, 12)} did not come ready after resuming: ${(err as Error).message}`,
      );
      return undefined;
    }
    await renamed;
    t.state = "ready";
    ctx.readiness.schedulePeriodic(t, target);
    const t3 = performance.now();
    return {
      instanceId: id,
      containerId: s.containerId,
      host: t.host,
      port: t.port,
      protocol: t.protocol,
      image,
      resumed: true,
      timings: {
        imageMs: elapsed(t0, t1),
        queuedMs: 0,
        createMs: 0,
        startMs: elapsed(t1, t2),
        readyMs: elapsed(t2, t3),
        totalMs: elapsed(t0, t3),
      },
    };
  }

  /** Pause a drained instance's container and keep it; false: stop it normally. */
  async park(t: Tracked): Promise<boolean> {
    if (!t.imageId || !(await this.#mayPark())) return false;
    try {
      await this.#ctx.docker.getContainer(t.containerId).pause();
    } catch (err) {
      this.#warn(`pausing ${t.containerId.slice(0, 12)}: ${dockerMessage(err)}`);
      return false;
    }
    if (t.failure) return false; // it died while we paused it: a normal stop cleans up
    // Untracked as an instance, but its port stays reserved: the container still publishes it.
    this.#ctx.table.untrack(t);
    this.#add({
      key: standbyKey(t.spec),
      containerId: t.containerId,
      imageId: t.imageId,
      namespace: t.spec.namespace,
      revision: t.spec.revision,
      host: t.host,
      port: t.port,
      protocol: t.protocol,
      pausedAt: Date.now(),
      ...(t.pid ? { pid: t.pid } : {}),
    });
    return true;
  }

  /**
   * A paused container of a previous run is a standby again, with a fresh
   * retention (its pause time is not recorded), or removed when standbys are
   * off or full. Never left behind untracked.
   */
  async adoptPaused(
    c: Docker.ContainerInfo,
    spec: InstanceSpec,
    endpoint: Endpoint,
  ): Promise<void> {
    const ctx = this.#ctx;
    const o = ctx.options.standby;
    if (o.retentionMs === 0 || this.#standbys.size >= o.maxStandbys) {
      await ctx.owned.remove(c.Id);
      return;
    }
    const info = await ctx.docker
      .getContainer(c.Id)
      .inspect()
      .catch(() => undefined);
    const pid =
      info?.State.Pid && ctx.options.probeNetns ? await ownPid(info.State.Pid, c.Id) : undefined;
    this.#add({
      key: standbyKey(spec),
      containerId: c.Id,
      imageId: c.ImageID,
      namespace: spec.namespace,
      revision: spec.revision,
      ...endpoint,
      pausedAt: Date.now(),
      ...(pid ? { pid } : {}),
    });
  }

  /** Remove a standby's container (taking it out of the pool) and free its port. */
  async drop(s: Standby, reason: string): Promise<void> {
    clearTimeout(s.timer);
    this.#standbys.delete(s.containerId);
    await this.#ctx.owned.remove(s.containerId);
    this.#ctx.ports.release(s.port);
    this.#ctx.emitter.emit("standby", { change: "removed", containerId: s.containerId, reason });
  }

  /** A cold start while memory is tight gives the oldest standby's memory back. */
  trimIfMemoryTight(): void {
    if (this.#standbys.size === 0) return;
    void memoryAvailable().then(async (free) => {
      if (free >= this.#ctx.options.standby.minFreeMemoryBytes) return;
      const oldest = this.#oldest();
      if (oldest) await this.drop(oldest, "MemoryPressure");
    });
  }

  /** The paused standbys this runtime holds. */
  list(): StandbyInfo[] {
    return [...this.#standbys.values()].map((s) => ({
      containerId: s.containerId,
      namespace: s.namespace,
      revision: s.revision,
      host: s.host,
      port: s.port,
      protocol: s.protocol,
      pausedAt: s.pausedAt,
    }));
  }

  /** Remove every standby, or those `which` picks (e.g. of a deleted revision). */
  async remove(which: (s: StandbyInfo) => boolean = () => true): Promise<void> {
    const picked = [...this.#standbys.values()].filter((s) => which(s));
    await Promise.all(picked.map((s) => this.drop(s, "Removed")));
  }

  /** Stop the retention timers: the standbys stay paused for the next run to adopt (or remove). */
  close(): void {
    for (const s of this.#standbys.values()) clearTimeout(s.timer);
  }

  /** Whether a stopping instance may become a standby now (evicting the oldest when full). */
  async #mayPark(): Promise<boolean> {
    const o = this.#ctx.options.standby;
    if (this.#ctx.closed() || o.retentionMs === 0 || o.maxStandbys === 0) return false;
    if ((await memoryAvailable()) < o.minFreeMemoryBytes) return false;
    while (this.#standbys.size >= o.maxStandbys) {
      const oldest = this.#oldest();
      if (!oldest) break;
      this.#standbys.delete(oldest.containerId);
      await this.drop(oldest, "MaxStandbys");
    }
    return true;
  }

  #add(s: Standby): void {
    this.#ctx.ports.reserve(s.port);
    s.timer = setTimeout(() => {
      if (this.#standbys.get(s.containerId) !== s) return;
      this.#standbys.delete(s.containerId);
      void this.drop(s, "RetentionExpired");
    }, this.#ctx.options.standby.retentionMs).unref();
    this.#standbys.set(s.containerId, s);
    this.#ctx.emitter.emit("standby", { change: "paused", containerId: s.containerId });
  }

  #oldest(): Standby | undefined {
    let oldest: Standby | undefined;
    for (const s of this.#standbys.values()) {
      if (!oldest || s.pausedAt < oldest.pausedAt) oldest = s;
    }
    return oldest;
  }

  #warn(message: string): void {
    this.#ctx.emitter.emit("warning", new Error(message));
  }
}
