/**
 * Membership: agents register, heartbeat (their record lives one TTL), leave,
 * and are pruned by whoever lists them once their record expired.
 */
import { parseOrThrow } from "../parse.ts";
import { agentId, endpointsPrefix, type FleetContext, positiveMs } from "./context.ts";
import { parseRecord } from "./records.ts";
import { agentRecordSchema } from "./schemas.ts";
import { DEREGISTER, HEARTBEAT, PRUNE } from "./scripts.ts";
import type { AgentRecord } from "./types.ts";

/**
 * Write the record with its TTL (and refresh the TTL of the agent's instance
 * reports). True when the record existed (a refresh), false when the agent
 * (re)joined; a join, or a beat with `announce`, is published.
 */
export async function beat(
  ctx: FleetContext,
  record: AgentRecord,
  ttlMs: number,
  announce: boolean,
): Promise<boolean> {
  const r = parseOrThrow(agentRecordSchema, record, { kind: "AgentRecord" });
  const ttl = positiveMs(ttlMs, "ttlMs");
  const k = ctx.keys;
  const existed = await HEARTBEAT.run(
    ctx.redis,
    [k.agent(r.id), k.agents, k.instances(r.id)],
    [JSON.stringify(r), ttl, String(r.heartbeatAt), r.id, k.channels.agents, announce ? "1" : "0"],
  );
  return existed === 1;
}

/** Leave the fleet: endpoints withdrawn, record and reports removed. Announced. */
export async function deregister(ctx: FleetContext, id: string): Promise<void> {
  const agent = agentId(id);
  const k = ctx.keys;
  await DEREGISTER.run(
    ctx.redis,
    [k.agent(agent), k.agents, k.instances(agent), k.agentEndpoints(agent), k.endpointRevisions],
    [agent, endpointsPrefix(k), k.channels.endpoints, k.channels.agents],
  );
}

export async function getAgent(ctx: FleetContext, id: string): Promise<AgentRecord | undefined> {
  const raw = await ctx.redis.get(ctx.keys.agent(agentId(id)));
  return raw === null ? undefined : parseRecord(agentRecordSchema, raw, "agent record", ctx.log);
}

/** Members with a record (`live`) and members whose record is gone (`missing`); prunes no one. */
export async function listAgents(
  ctx: FleetContext,
): Promise<{ live: AgentRecord[]; missing: string[] }> {
  const k = ctx.keys;
  const ids = await ctx.redis.zrange(k.agents, "0", "-1");
  if (ids.length === 0) return { live: [], missing: [] };
  // GETs in one pipeline, not MGET: the scaler's ACL user has GET (deploy/redis/acl.ts).
  const pipe = ctx.redis.pipeline();
  for (const id of ids) pipe.get(k.agent(id));
  const raws = ((await pipe.exec()) ?? []).map(([err, v]) => {
    if (err) throw err;
    return v as string | null;
  });
  const live: AgentRecord[] = [];
  const missing: string[] = [];
  ids.forEach((id, i) => {
    const raw = raws[i];
    if (raw === null || raw === undefined) missing.push(id);
    else {
      const r = parseRecord(agentRecordSchema, raw, "agent record", ctx.log);
      if (r) live.push(r);
    }
  });
  return { live, missing };
}

/** Members whose record is alive; the dead are pruned on the way (each change announced). */
export async function listLiveAgents(ctx: FleetContext): Promise<AgentRecord[]> {
  const k = ctx.keys;
  const reply = (await PRUNE.run(
    ctx.redis,
    [k.agents, k.endpointRevisions],
    [
      k.agent(""),
      k.agentEndpoints(""),
      endpointsPrefix(k),
      k.instances(""),
      k.channels.endpoints,
      k.channels.agents,
    ],
  )) as string[];
  const split = reply.indexOf("");
  const dead = reply.slice(split + 1);
  if (dead.length) ctx.log.info({ dead }, "pruned dead agents");
  const live: AgentRecord[] = [];
  for (const raw of reply.slice(0, split)) {
    const r = parseRecord(agentRecordSchema, raw, "agent record", ctx.log);
    if (r) live.push(r);
  }
  return live;
}
