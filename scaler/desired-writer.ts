/**
 * Fenced writes of agents' desired sets: the same keys and announcement as
 * Fleet.putDesired / removeDesired / replaceDesired (src/fleet), but each
 * write is one Lua script that first checks that the leader lease still holds
 * this scaler's value. A deposed leader whose write was already on its way
 * therefore changes nothing once a standby has taken the lease: two scalers
 * never place instances at the same time.
 */
import type { Redis } from "ioredis";
import { ValidationError } from "../src/errors.ts";
import { fleetKeys } from "../src/fleet/keys.ts";
import { desiredInstanceSchema } from "../src/fleet/schemas.ts";
import type { DesiredInstance } from "../src/fleet/types.ts";
import { luaScript } from "../src/redis/script.ts";

/**
 * KEYS: lease, desired hash. ARGV: lease value, channel, agent id, "1" to
 * clear the set first, #ids to remove, ids..., then field/json pairs to set.
 * Returns 1, or -1 (nothing written) when the lease is not ours.
 */
const WRITE_DESIRED = luaScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if ARGV[4] == '1' then redis.call('DEL', KEYS[2]) end
local n = tonumber(ARGV[5])
for i = 6, 5 + n do redis.call('HDEL', KEYS[2], ARGV[i]) end
for i = 6 + n, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
`);

/** The lease was lost: the write did not happen. */
export class NotLeaderError extends Error {
  constructor() {
    super("not the leader any more: the write was refused by the lease check");
    this.name = "NotLeaderError";
  }
}

export interface DesiredChange {
  add?: DesiredInstance[];
  remove?: string[];
  /** Clear the whole set first (an agent that is gone). */
  clear?: boolean;
}

export class DesiredWriter {
  readonly #redis: Redis;
  readonly #keys: ReturnType<typeof fleetKeys>;
  readonly #leaseKey: string;
  readonly #leaseValue: () => string | undefined;

  constructor(options: {
    redis: Redis;
    prefix: string;
    leaseKey: string;
    /** The lease value while we lead, else undefined. */
    leaseValue: () => string | undefined;
  }) {
    this.#redis = options.redis;
    this.#keys = fleetKeys(options.prefix);
    this.#leaseKey = options.leaseKey;
    this.#leaseValue = options.leaseValue;
  }

  async write(agentId: string, change: DesiredChange): Promise<void> {
    const value = this.#leaseValue();
    if (value === undefined) throw new NotLeaderError();
    const add = (change.add ?? []).map((d, i) => {
      const r = desiredInstanceSchema.safeParse(d);
      if (!r.success) {
        throw ValidationError.of(
          r.error.issues.map((x) => ({
            field: [`add[${i}]`, ...x.path.map(String)].join("."),
            message: x.message,
          })),
          { kind: "DesiredInstance" },
        );
      }
      return r.data;
    });
    const remove = change.remove ?? [];
    if (!change.clear && add.length === 0 && remove.length === 0) return;
    const args = [
      value,
      this.#keys.channels.desired,
      agentId,
      change.clear ? "1" : "0",
      String(remove.length),
      ...remove,
      ...add.flatMap((d) => [d.id, JSON.stringify(d)]),
    ];
    const r = await WRITE_DESIRED.run(
      this.#redis,
      [this.#leaseKey, this.#keys.desired(agentId)],
      args,
    );
    if (Number(r) !== 1) throw new NotLeaderError();
  }

  /** Agent ids that have a desired set in Redis (SCAN; for cleaning up after dead agents). */
  async agentsWithDesired(): Promise<string[]> {
    const probe = this.#keys.desired("");
    const pattern = `${probe.replace(/[*?[\]\\]/g, "\\$&")}*`;
    const out: string[] = [];
    let cursor = "0";
    do {
      const [next, keys] = await this.#redis.scan(cursor, "MATCH", pattern, "COUNT", 200);
      cursor = next;
      for (const k of keys) out.push(k.slice(probe.length));
    } while (cursor !== "0");
    return out;
  }
}
