/**
 * Starts one private redis-server on a free loopback port for the whole run
 * (unless REDIS_URL is set) and stops it afterwards. Test files isolate
 * themselves with a unique key prefix (see test/support/redis.ts).
 */
import type { TestProject } from "vitest/node";
import { startRedisServer } from "./redis-server.ts";

declare module "vitest" {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (process.env.REDIS_URL) {
    project.provide("redisUrl", process.env.REDIS_URL);
    return async () => {};
  }
  const server = await startRedisServer();
  project.provide("redisUrl", server.url);
  return () => server.stop();
}
