/** Per-test-file Redis access: the run's shared server, a unique key prefix each. */
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { inject } from "vitest";

export function redisUrl(): string {
  return inject("redisUrl");
}

/** A key prefix no other test uses, so files can share one redis-server. */
export function uniquePrefix(label = "t"): string {
  return `test:${label}:${randomBytes(4).toString("hex")}:`;
}

export function connect(): Redis {
  return new Redis(redisUrl(), { maxRetriesPerRequest: 2 });
}
