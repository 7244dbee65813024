/**
 * The identity of one Skiff install (a "cluster"): generated once by whichever
 * component starts first, then the same for every process sharing the Redis.
 *
 *   {p}cluster   HASH  id     -> 12 hex chars: labels every container, part of the
 *                              default agent id, so two installs on one Docker
 *                              host never adopt or stop each other's instances
 *                      secret -> 64 hex chars: gateways prove to agents' data
 *                              ports (the workerd router) that a request came
 *                              through a gateway; never sent to tenant code
 *
 * HSETNX makes the first writer win; everyone then reads the winner's values.
 */
import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import { SkiffError } from "./errors.ts";

export interface ClusterIdentity {
  /** Short, stable, safe in Docker labels, container names and agent ids. */
  readonly id: string;
  /** Shared by gateways and agents only; tenant code never sees it. */
  readonly secret: string;
}

export function clusterKey(prefix: string): string {
  return `${prefix}cluster`;
}

/** Read the install's identity, creating it on first use (race-free across processes). */
export async function ensureClusterIdentity(
  redis: Redis,
  prefix: string,
): Promise<ClusterIdentity> {
  const key = clusterKey(prefix);
  const replies = await redis
    .multi()
    .hsetnx(key, "id", randomBytes(6).toString("hex"))
    .hsetnx(key, "secret", randomBytes(32).toString("hex"))
    .hmget(key, "id", "secret")
    .exec();
  const [id, secret] = (replies?.[2]?.[1] ?? []) as (string | null)[];
  if (!id || !secret) {
    throw new SkiffError(
      "UNAVAILABLE",
      `the cluster identity at ${key} could not be read back; check that Redis is reachable and writable`,
    );
  }
  return { id, secret };
}
