/**
 * Starts one private redis-server on a free loopback port for the whole run
 * (unless REDIS_URL is set) and stops it afterwards. Test files isolate
 * themselves with a unique key prefix (see test/support/redis.ts). At the end
 * it removes the idle Skiff bridges the run created (test/support/docker-networks.ts).
 */
import type { TestProject } from "vitest/node";
import { removeNewIdleNetworks, skiffNetworks } from "./docker-networks.ts";
import { startRedisServer } from "./redis-server.ts";

declare module "vitest" {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const networks = await skiffNetworks();
  const cleanNetworks = async () => {
    if (networks) await removeNewIdleNetworks(networks);
  };
  if (process.env.REDIS_URL) {
    project.provide("redisUrl", process.env.REDIS_URL);
    return cleanNetworks;
  }
  const server = await startRedisServer();
  project.provide("redisUrl", server.url);
  return async () => {
    await server.stop();
    await cleanNetworks();
  };
}
