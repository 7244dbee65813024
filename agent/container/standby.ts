/**
 * Paused standbys: the policy pieces (options, which specs may share a
 * standby, how much memory the host has left). A container's own network
 * namespace, veth and published port cost most of a cold start
 * (bench/RESULTS-container.md); a paused container keeps all of them, so
 * unpausing it and probing readiness again serves in a fraction of the time.
 */
import { readFile } from "node:fs/promises";
import { freemem } from "node:os";
import { z } from "zod";
import { canonicalJson } from "../../src/model/index.ts";
import type { InstanceSpec } from "./spec.ts";

export const StandbyOptionsSchema = z
  .object({
    /** How long a paused standby is kept before it is removed; 0 turns standbys off. */
    retentionMs: z.number().int().min(0).default(300_000),
    /** At most this many standbys per runtime (the oldest goes first). */
    maxStandbys: z.number().int().min(0).default(16),
    /**
     * Pause nothing while the host has less memory available than this (a
     * cold start then drops the oldest standby to give memory back).
     */
    minFreeMemoryBytes: z
      .number()
      .int()
      .min(0)
      .default(1024 * 1024 * 1024),
    /**
     * A resumed standby not ready within this long is removed and a container
     * created instead (it was ready when paused: it should answer at once).
     */
    resumeTimeoutMs: z.number().int().positive().default(2_000),
  })
  .prefault({});

/**
 * What must be equal for a standby to serve a new instance: the whole spec
 * but its instance id (namespace, revision, image reference, env, limits,
 * probes...). A standby of namespace A can thus never serve namespace B.
 */
export function standbyKey(spec: InstanceSpec): string {
  const { instanceId: _, ...rest } = spec;
  return canonicalJson(rest);
}

/** MemAvailable from /proc/meminfo (what the kernel could hand out), else free memory. */
export async function memoryAvailable(): Promise<number> {
  try {
    const text = await readFile("/proc/meminfo", "utf8");
    const kib = /^MemAvailable:\s+(\d+) kB/m.exec(text)?.[1];
    if (kib) return Number(kib) * 1024;
  } catch {
    // not Linux: fall through
  }
  return freemem();
}
