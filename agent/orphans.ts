/**
 * Orphan reaping: containers of this cluster whose owner agent is dead. A
 * SIGKILLed agent leaves its containers running; if it comes back with the
 * same id it adopts them, but if it never does (the host's address changed,
 * it is gone for good) nothing manages them and they leak. Every agent on the
 * engine looks, on its periodic resync, for other owners' containers of its
 * own cluster, and removes an owner's containers once that owner's heartbeat
 * record has been absent at two checks at least `graceMs` apart.
 *
 * Never on a single read, never while Redis cannot be read (the observations
 * start over), never another cluster's containers (the runtime lists only its
 * cluster's), never this agent's own.
 */
import type { Redis } from "ioredis";
import { UnavailableError } from "../src/errors.ts";
import { fleetId } from "../src/fleet/schemas.ts";
import type { Logger } from "../src/logging.ts";
import type { ContainerRuntime } from "./container/index.ts";

export interface OrphanReaperOptions {
  runtime: Pick<ContainerRuntime, "otherOwners" | "removeOwnedBy">;
  /** Whether agent `id` has a live heartbeat record; throws when that cannot be told. */
  isAlive: (agentId: string) => Promise<boolean>;
  /** How long an owner must be seen absent (first to last check) before its containers go. */
  graceMs: number;
  logger: Logger;
  /** A monotonic clock in ms (tests). */
  now?: () => number;
}

/** `isAlive` for the fleet: the heartbeat record `{p}fleet:agent:{id}` exists. */
export function heartbeatAlive(redis: Redis, agentKey: (id: string) => string) {
  return async (agentId: string): Promise<boolean> => {
    // A label that is no valid agent id names nothing we can check: leave it alone.
    if (!fleetId.safeParse(agentId).success) return true;
    // Commands would wait in the offline queue: an unreachable Redis tells nothing.
    if (redis.status !== "ready") throw new UnavailableError(`Redis is ${redis.status}`);
    return (await redis.exists(agentKey(agentId))) === 1;
  };
}

export class OrphanReaper {
  readonly #o: OrphanReaperOptions;
  readonly #now: () => number;
  /** Owner -> when this agent first saw its record absent (reset when it is seen alive). */
  readonly #absentSince = new Map<string, number>();
  #sweeping: Promise<string[]> | undefined;

  constructor(options: OrphanReaperOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => performance.now());
  }

  /** One check; resolves to the owners whose containers were removed. Overlapping calls share one. */
  sweep(): Promise<string[]> {
    this.#sweeping ??= this.#sweep().finally(() => {
      this.#sweeping = undefined;
    });
    return this.#sweeping;
  }

  async #sweep(): Promise<string[]> {
    const owners = await this.#o.runtime.otherOwners();
    for (const owner of this.#absentSince.keys()) {
      if (!owners.has(owner)) this.#absentSince.delete(owner);
    }
    if (owners.size === 0) return [];
    const alive = new Map<string, boolean>();
    try {
      for (const owner of owners.keys()) alive.set(owner, await this.#o.isAlive(owner));
    } catch (err) {
      // No evidence either way: start over once Redis answers again.
      this.#absentSince.clear();
      this.#o.logger.warn({ err }, "cannot tell which agents are alive: no orphan is reaped now");
      return [];
    }
    const now = this.#now();
    const reaped: string[] = [];
    for (const [owner, count] of owners) {
      if (alive.get(owner)) {
        this.#absentSince.delete(owner);
        continue;
      }
      const since = this.#absentSince.get(owner);
      if (since === undefined) {
        this.#absentSince.set(owner, now);
        this.#o.logger.info(
          { owner, containers: count, graceMs: this.#o.graceMs },
          "containers of an agent without a heartbeat: reaped if it stays absent",
        );
        continue;
      }
      if (now - since < this.#o.graceMs) continue;
      const removed = await this.#o.runtime.removeOwnedBy(owner);
      this.#absentSince.delete(owner);
      reaped.push(owner);
      this.#o.logger.warn(
        { owner, removed, absentMs: Math.round(now - since) },
        "reaped the containers of a dead agent",
      );
    }
    return reaped;
  }
}
