/**
 * Lua scripts run with EVALSHA, falling back to EVAL when Redis does not know
 * the script yet (first use, or after a restart). Each script runs atomically:
 * that is what makes a store commit or a fleet report all-or-nothing.
 */
import { createHash } from "node:crypto";
import type { Redis } from "ioredis";

export interface LuaScript {
  readonly source: string;
  readonly sha1: string;
  run(redis: Redis, keys: string[], args: string[]): Promise<unknown>;
}

export function luaScript(source: string): LuaScript {
  const sha1 = createHash("sha1").update(source).digest("hex");
  return {
    source,
    sha1,
    async run(redis, keys, args) {
      try {
        return await redis.evalsha(sha1, keys.length, ...keys, ...args);
      } catch (err) {
        if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
        return redis.eval(source, keys.length, ...keys, ...args);
      }
    },
  };
}
