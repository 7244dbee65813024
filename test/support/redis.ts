/** Per-test-file Redis access: the run's shared server, a unique key prefix each. */
import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import { inject } from "vitest";
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
