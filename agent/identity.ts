/**
 * Who this agent is and what it offers: a stable id (the same after a
 * restart of the same host, so it adopts its own containers), its capacity
 * and its runtimes.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { availableParallelism, hostname, totalmem } from "node:os";
import type { AgentRecord, RuntimeKind } from "../src/fleet/types.ts";

/** Default ceiling on instances per agent when none is configured. */
export const DEFAULT_MAX_INSTANCES = 256;

/**
 * The given id, else `{hostname}-{8 hex of sha256(hostname|address|cluster)}`:
 * stable across restarts, distinct for two agents of one host on different
 * addresses, and for two installs (clusters, src/cluster.ts) on one host, so
 * one install never adopts or stops another's instances.
 */
export function agentId(options: {
  id?: string;
  address: string;
  hostname?: string;
  /** The install's cluster id; without it (before Redis answered) the id is provisional. */
  clusterId?: string;
}): string {
  if (options.id) return options.id;
  const host = options.hostname ?? hostname();
  const seed = options.clusterId
    ? `${host}|${options.address}|${options.clusterId}`
    : `${host}|${options.address}`;
  const hash = createHash("sha256").update(seed).digest("hex").slice(0, 8);
  const clean =
    host
      .toLowerCase()
      .replace(/[^a-z0-9_.-]+/g, "-")
      .replace(/^[^a-z0-9]+/, "")
      .slice(0, 63) || "agent";
  return `${clean}-${hash}`;
}

export interface Capacity {
  cpuMillis: number;
  memoryBytes: number;
  maxInstances: number;
}

export function detectCapacity(overrides: Partial<Capacity> = {}): Capacity {
  return {
    cpuMillis: overrides.cpuMillis ?? availableParallelism() * 1000,
    memoryBytes: overrides.memoryBytes ?? totalmem(),
    maxInstances: overrides.maxInstances ?? DEFAULT_MAX_INSTANCES,
  };
}

/** Isolates always; containers only when a Docker engine answered. */
export function offeredRuntimes(dockerAnswers: boolean): RuntimeKind[] {
  return dockerAnswers ? ["container", "isolate"] : ["isolate"];
}

let version: string | undefined;

/** Skiff's version, from package.json. */
export function skiffVersion(): string {
  if (version === undefined) {
    try {
      const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
      version = typeof pkg.version === "string" ? pkg.version : "0.0.0";
    } catch {
      version = "0.0.0";
    }
  }
  return version as string;
}

export function agentRecord(input: {
  id: string;
  address: string;
  runtimes: RuntimeKind[];
  capacity: Capacity;
  labels: Record<string, string>;
  startedAt: Date;
  draining: boolean;
}): AgentRecord {
  const record: AgentRecord = {
    id: input.id,
    address: input.address,
    runtimes: input.runtimes,
    capacity: input.capacity,
    labels: input.labels,
    startedAt: input.startedAt.toISOString(),
    heartbeatAt: Date.now(),
    version: skiffVersion(),
  };
  if (input.draining) record.draining = true;
  return record;
}
