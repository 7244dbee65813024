/**
 * Desired sets (`{p}fleet:desired:{agentId}`): the scaler writes, the agent
 * reads. One writer, `writeDesired`: one Lua script that, when fenced, first
 * checks that the leader lease still holds the writer's value, so a deposed
 * scaler whose write was already on its way changes nothing once a standby
 * took the lease. The scaler writes fenced (`DesiredWriter`); Fleet's
 * put/remove/replaceDesired (tests, tools) write unfenced through the same script.
 */
import type { Redis } from "ioredis";
import { z } from "zod";
import { NotLeaderError } from "../errors.ts";
import { parseOrThrow } from "../parse.ts";
import { agentId, type FleetContext } from "./context.ts";
import { type FleetKeys, fleetKeys } from "./keys.ts";
import { parseRecords } from "./records.ts";
import { desiredInstanceSchema } from "./schemas.ts";
import { WRITE_DESIRED } from "./scripts.ts";
import type { DesiredInstance } from "./types.ts";

export interface DesiredChange {
  add?: DesiredInstance[];
  remove?: string[];
  /** Clear the whole set first (an agent that is gone, or a replacement). */
  clear?: boolean;
}

/** The leader lease a fenced write checks: the write happens only while `key` holds `value`. */
export interface DesiredFence {
  key: string;
  value: string;
}

const instancesSchema = z.array(desiredInstanceSchema);

function notLeader(): NotLeaderError {
  return new NotLeaderError("not the leader any more: the write was refused by the lease check");
}

/** Apply one change to an agent's desired set, announced once; nothing to do writes nothing. */
export async function writeDesired(
  ctx: Pick<FleetContext, "redis" | "keys">,
  agent: string,
  change: DesiredChange,
  fence?: DesiredFence,
): Promise<void> {
  const id = agentId(agent);
  const add = parseOrThrow(instancesSchema, change.add ?? [], { kind: "DesiredInstance" });
  const remove = change.remove ?? [];
  if (!change.clear && add.length === 0 && remove.length === 0) return;
  const k = ctx.keys;
  const r = await WRITE_DESIRED.run(
    ctx.redis,
    fence ? [k.desired(id), fence.key] : [k.desired(id)],
    [
      fence?.value ?? "",
      k.channels.desired,
      id,
      change.clear ? "1" : "0",
      String(remove.length),
      ...remove,
      ...add.flatMap((d) => [d.id, JSON.stringify(d)]),
    ],
  );
  if (Number(r) !== 1) throw notLeader();
}

export async function readDesired(ctx: FleetContext, agent: string): Promise<DesiredInstance[]> {
  const all = await ctx.redis.hgetall(ctx.keys.desired(agentId(agent)));
  return parseRecords(desiredInstanceSchema, all, "desired instance", ctx.log);
}

/** Agent ids that have a desired set in Redis (SCAN; for cleaning up after dead agents). */
export async function agentsWithDesired(redis: Redis, keys: FleetKeys): Promise<string[]> {
  const probe = keys.desired("");
  const pattern = `${probe.replace(/[*?[\]\\]/g, "\\$&")}*`;
  const out: string[] = [];
  let cursor = "0";
  do {
    const [next, found] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 200);
    cursor = next;
    for (const key of found) out.push(key.slice(probe.length));
  } while (cursor !== "0");
  return out;
}

/** The scaler's desired-set writes, fenced by its leader lease. */
export class DesiredWriter {
  readonly #ctx: Pick<FleetContext, "redis" | "keys">;
  readonly #leaseKey: string;
  readonly #leaseValue: () => string | undefined;

  constructor(options: {
    redis: Redis;
    prefix: string;
    leaseKey: string;
    /** The lease value while we lead, else undefined. */
    leaseValue: () => string | undefined;
  }) {
    this.#ctx = { redis: options.redis, keys: fleetKeys(options.prefix) };
    this.#leaseKey = options.leaseKey;
    this.#leaseValue = options.leaseValue;
  }

  /** Throws NotLeaderError (nothing written) unless we still hold the lease. */
  async write(agent: string, change: DesiredChange): Promise<void> {
    const value = this.#leaseValue();
    if (value === undefined) throw notLeader();
    await writeDesired(this.#ctx, agent, change, { key: this.#leaseKey, value });
  }

  agentsWithDesired(): Promise<string[]> {
    return agentsWithDesired(this.#ctx.redis, this.#ctx.keys);
  }
}
