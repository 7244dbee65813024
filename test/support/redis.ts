/** Per-test-file Redis access: the run's shared server, a unique key prefix each. */
import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import { inject } from "vitest";
import { Fleet } from "../../src/fleet/fleet.ts";
import { connectRedis } from "../../src/redis/connect.ts";

export function redisUrl(): string {
  return process.env.SKIFF_TEST_REDIS === "memory" ? "memory://test" : inject("redisUrl");
}

/** A key prefix no other test uses, so files can share one redis-server. */
export function uniquePrefix(label = "t"): string {
  return `test:${label}:${randomBytes(4).toString("hex")}:`;
}

export function connect(): Redis {
  return connectRedis(redisUrl(), { maxRetriesPerRequest: 2 });
}

/** A Fleet on `prefix` and a plain connection beside it, for the keys a test reads or changes itself. */
export function fleetOn(prefix: string): { fleet: Fleet; redis: Redis; close(): Promise<void> } {
  const fleet = new Fleet({ url: redisUrl(), prefix });
  const redis = connect();
  return {
    fleet,
    redis,
    async close() {
      await fleet.close();
      redis.disconnect();
    },
  };
}
