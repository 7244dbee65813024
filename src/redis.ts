/** Small helpers shared by everything that owns an ioredis connection. */
import { Redis, type RedisOptions } from "ioredis";
import { connectMemoryRedis, isMemoryRedisUrl } from "./redis-memory.ts";

/** QUIT lets pending replies arrive; a connection that is not up is just dropped. */
export async function quitRedis(r: Redis): Promise<void> {
  if (r.status !== "ready") return r.disconnect();
  try {
    await r.quit();
  } catch {
    r.disconnect();
  }
}

/**
 * Open a connection: `redis://` / `rediss://` URLs reach a Redis server,
 * `memory://NAME` the in-process one (src/redis-memory.ts).
 */
export function connectRedis(url: string, options: RedisOptions = {}): Redis {
  return isMemoryRedisUrl(url) ? connectMemoryRedis(url, options) : new Redis(url, options);
}
