/**
 * Endpoints: agents publish their ready instances (`{p}fleet:endpoints:{ns}:{rev}`,
 * indexed per agent), gateways read them. `parseEndpoints` is the one reader
 * of such a hash, used by Fleet and by the gateway's cache.
 */
import type { Logger } from "../logging.ts";
import { parseOrThrow } from "../parse.ts";
import { agentId, endpointsPrefix, type FleetContext } from "./context.ts";
import { parseRevisionRef, revisionRef } from "./keys.ts";
import { parseRecords } from "./records.ts";
import { endpointSchema, fleetSegment } from "./schemas.ts";
import { PUBLISH_ENDPOINT, WITHDRAW_AGENT, WITHDRAW_ENDPOINT } from "./scripts.ts";
import type { Endpoint } from "./types.ts";

/** One endpoint an agent published, as its index lists it. */
export interface PublishedRef {
  instanceId: string;
  namespace: string;
  revision: string;
}

/**
 * The valid endpoints of one revision's hash (instance id -> Endpoint JSON),
 * sorted by instance id; each bad entry is skipped with one log line.
 */
export function parseEndpoints(
  hash: Record<string, string>,
  log: Logger,
  context: Record<string, unknown> = {},
): Endpoint[] {
  const out = parseRecords(endpointSchema, hash, "endpoint", log, context);
  return out.sort((a, b) => (a.instanceId < b.instanceId ? -1 : 1));
}

function segments(namespace: string, revision: string): [string, string] {
  return [
    parseOrThrow(fleetSegment, namespace, { kind: "Endpoint", field: "namespace" }),
    parseOrThrow(fleetSegment, revision, { kind: "Endpoint", field: "revision" }),
  ];
}

/** Publish a ready instance; announced on the endpoints channel as "{ns}/{rev}". */
export async function publishEndpoint(
  ctx: FleetContext,
  namespace: string,
  revision: string,
  endpoint: Endpoint,
): Promise<void> {
  const [ns, rev] = segments(namespace, revision);
  const ep = parseOrThrow(endpointSchema, endpoint, { kind: "Endpoint" });
  const k = ctx.keys;
  await PUBLISH_ENDPOINT.run(
    ctx.redis,
    [k.endpoints(ns, rev), k.endpointRevisions, k.agentEndpoints(ep.agentId)],
    [ep.instanceId, JSON.stringify(ep), revisionRef(ns, rev), k.channels.endpoints],
  );
}

/** Withdraw one endpoint; true if it was published. Announced when it was. */
export async function withdrawEndpoint(
  ctx: FleetContext,
  namespace: string,
  revision: string,
  instanceId: string,
  agent?: string,
): Promise<boolean> {
  const [ns, rev] = segments(namespace, revision);
  const k = ctx.keys;
  const n = await WITHDRAW_ENDPOINT.run(
    ctx.redis,
    [k.endpoints(ns, rev), k.endpointRevisions],
    [
      instanceId,
      revisionRef(ns, rev),
      k.channels.endpoints,
      k.agentEndpoints(""),
      agent === undefined ? "" : agentId(agent),
    ],
  );
  return n === 1;
}

/** Withdraw everything an agent published (its index); returns how many. */
export async function withdrawAgentEndpoints(ctx: FleetContext, agent: string): Promise<number> {
  const id = agentId(agent);
  const k = ctx.keys;
  return (await WITHDRAW_AGENT.run(
    ctx.redis,
    [k.agentEndpoints(id), k.endpointRevisions],
    [id, endpointsPrefix(k), k.channels.endpoints],
  )) as number;
}

/** What an agent's index says it published. */
export async function agentEndpoints(ctx: FleetContext, agent: string): Promise<PublishedRef[]> {
  const all = await ctx.redis.hgetall(ctx.keys.agentEndpoints(agentId(agent)));
  const out: PublishedRef[] = [];
  for (const [instanceId, ref] of Object.entries(all)) {
    const parsed = parseRevisionRef(ref);
    if (parsed) out.push({ instanceId, ...parsed });
  }
  return out;
}

export async function readEndpoints(
  ctx: FleetContext,
  namespace: string,
  revision: string,
): Promise<Endpoint[]> {
  const [ns, rev] = segments(namespace, revision);
  const all = await ctx.redis.hgetall(ctx.keys.endpoints(ns, rev));
  return parseEndpoints(all, ctx.log, { revision: revisionRef(ns, rev) });
}

/** Every published endpoint, by "{ns}/{rev}" (revisions without endpoints are absent). */
export async function readAllEndpoints(ctx: FleetContext): Promise<Map<string, Endpoint[]>> {
  const refs = await ctx.redis.smembers(ctx.keys.endpointRevisions);
  const parsed = refs
    .map((ref) => ({ ref, p: parseRevisionRef(ref) }))
    .filter((x): x is { ref: string; p: { namespace: string; revision: string } } => !!x.p);
  const out = new Map<string, Endpoint[]>();
  if (parsed.length === 0) return out;
  const pipe = ctx.redis.pipeline();
  for (const { p } of parsed) pipe.hgetall(ctx.keys.endpoints(p.namespace, p.revision));
  const replies = (await pipe.exec()) ?? [];
  parsed.forEach(({ ref }, i) => {
    const [err, value] = replies[i] ?? [new Error("no reply"), undefined];
    if (err) throw err;
    const list = parseEndpoints(value as Record<string, string>, ctx.log, { revision: ref });
    if (list.length) out.set(ref, list);
  });
  return out;
}
