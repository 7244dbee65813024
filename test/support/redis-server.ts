// The suite uses the same private-server launcher as `skiff up`.
export {
  freePort,
  type RedisServer,
  startRedisServer,
} from "../../src/redis/server.ts";
