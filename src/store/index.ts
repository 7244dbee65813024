/** The resource store: the contract, its Redis implementation, and the watch+resync helper. */

export {
  type ResyncReason,
  type ResyncSource,
  type WatchAndResync,
  type WatchAndResyncOptions,
  watchAndResync,
} from "../redis/resync.ts";
export { type KeySpace, keySpace } from "./keys.ts";
export { createRedisStore, type RedisStore, type RedisStoreOptions } from "./redis-store.ts";
export type {
  CommitResult,
  ListOptions,
  ResourceKey,
  Store,
  StoreEvent,
  StoreEventType,
  TransactOptions,
  Tx,
} from "./store.ts";
