/** The resource store: the contract, its Redis implementation, and the watch+resync helper. */

export { type WatchAndResync, watchAndResync } from "../redis/resync.ts";
export { createRedisStore, type RedisStore } from "./redis-store.ts";
