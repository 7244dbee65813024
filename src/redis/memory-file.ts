/**
 * Keep the in-process Redis of `skiff up` in a file, so a restart finds its
 * Services again: loaded once at start, saved when a durable key changed
 * (checked every `intervalMs`) and at stop. Each save is a consistent snapshot
 * written to a temporary file and renamed over the old one, so a crash
 * mid-save leaves the previous copy whole. A crash loses at most the last
 * interval.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { SkiffError } from "../errors.ts";
import { quitRedis } from "./connect.ts";
import {
  connectMemoryRedis,
  onDurableChange,
  restoreMemoryRedis,
  snapshotMemoryRedis,
} from "./memory.ts";

export interface MemoryRedisFileOptions {
  /** Snapshot file, e.g. {stateDir}/store.json. */
  file: string;
  intervalMs?: number;
  /** A save on the interval failed (the next one tries again). */
  onError?: (err: Error) => void;
}

export interface MemoryRedisFile {
  /** The memory:// URL every component connects to. */
  url: string;
  /** Keys read from the file at start (0 for a new store). */
  restored: number;
  /** Save now (also done on an interval). */
  save(): Promise<void>;
  /** Save a last time and stop saving. */
  stop(): Promise<void>;
}

export async function openMemoryRedisFile(
  options: MemoryRedisFileOptions,
): Promise<MemoryRedisFile> {
  // A fresh keyspace per open: a second store in the same process (tests) starts empty.
  const url = `memory://up-${randomBytes(4).toString("hex")}`;
  const redis = connectMemoryRedis(url);
  let restored = 0;
  let last = "";
  try {
    const text = await readFile(options.file, "utf8");
    try {
      restored = await restoreMemoryRedis(redis, text);
    } catch (err) {
      redis.disconnect();
      throw new SkiffError(
        "INVALID",
        `cannot read the store snapshot ${options.file}: ${(err as Error).message}; move the file away to start with an empty store`,
      );
    }
    last = text;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  await mkdir(dirname(options.file), { recursive: true });

  let dirty = false;
  const stopWatching = onDurableChange(redis, () => {
    dirty = true;
  });
  let saving: Promise<void> = Promise.resolve();
  const saveNow = async () => {
    dirty = false;
    const text = snapshotMemoryRedis(redis);
    if (text === last) return;
    const tmp = `${options.file}.${process.pid}.tmp`;
    await writeFile(tmp, text);
    await rename(tmp, options.file);
    last = text;
  };
  // One save at a time, in order.
  const save = () => {
    saving = saving.then(saveNow, saveNow);
    return saving;
  };
  const timer = setInterval(() => {
    if (!dirty) return;
    save().catch((err: Error) => {
      dirty = true; // try again on the next tick
      options.onError?.(err);
    });
  }, options.intervalMs ?? 500);
  timer.unref();

  return {
    url,
    restored,
    save,
    async stop() {
      clearInterval(timer);
      stopWatching();
      try {
        await save();
      } finally {
        await quitRedis(redis);
      }
    },
  };
}
