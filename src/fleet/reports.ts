/**
 * Instance reports (`{p}fleet:instances:{agentId}`): the agent writes one per
 * instance it runs; the hash carries the agent's TTL, so reports die with it.
 */
import { parseOrThrow } from "../parse.ts";
import { agentId, execMulti, type FleetContext, positiveMs } from "./context.ts";
import { parseRecords } from "./records.ts";
import { instanceStatusSchema } from "./schemas.ts";
import type { InstanceStatus } from "./types.ts";

export async function writeInstanceStatus(
  ctx: FleetContext,
  status: InstanceStatus,
  ttlMs: number,
): Promise<void> {
  const s = parseOrThrow(instanceStatusSchema, status, { kind: "InstanceStatus" });
  const ttl = positiveMs(ttlMs, "ttlMs");
  const key = ctx.keys.instances(s.agentId);
  await execMulti(
    ctx.redis
      .multi()
      .hset(key, s.id, JSON.stringify(s))
      .pexpire(key, ttl)
      .publish(ctx.keys.channels.instances, s.agentId),
  );
}

export async function removeInstanceStatus(
  ctx: FleetContext,
  agent: string,
  instanceId: string,
): Promise<void> {
  const id = agentId(agent);
  await execMulti(
    ctx.redis
      .multi()
      .hdel(ctx.keys.instances(id), instanceId)
      .publish(ctx.keys.channels.instances, id),
  );
}

export async function readInstanceStatuses(
  ctx: FleetContext,
  agent: string,
): Promise<InstanceStatus[]> {
  const all = await ctx.redis.hgetall(ctx.keys.instances(agentId(agent)));
  return parseRecords(instanceStatusSchema, all, "instance status", ctx.log);
}
