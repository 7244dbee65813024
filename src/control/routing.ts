/**
 * Routing tables: what gateways route by, derived from a Route's resolved
 * traffic and the revisions it names. The scaler publishes them (it sees
 * readiness change); gateways cache them in memory and refresh on the channel
 * plus a periodic resync.
 *
 *   {p}routing:hosts               HASH    host -> RoutingEntry JSON
 *   {p}routing:route:{ns}:{route}  SET     the hosts one Route owns (to drop stale ones)
 *   channel {p}routing             a host whose entry changed or was removed
 *
 * `routingTables` is pure; `publishRouting` replaces one Route's hosts in one
 * atomic script and publishes each host that changed.
 */
import type { Redis } from "ioredis";
import { z } from "zod";
import { serviceHost, tagHost } from "../model/names.ts";
import type { Revision, Route } from "../model/types.ts";
import { luaScript } from "../redis/script.ts";

/** One revision a host sends traffic to, with what the gateway needs to proxy to it. */
export interface RoutingTarget {
  revision: string;
  /** Share of the host's requests; a host's percents sum to 100 (tag hosts: one target, 100). */
  percent: number;
  /** 0 = no limit; > 0 is a hard per-instance limit held across all gateways. */
  containerConcurrency: number;
  /** A request with no response started this long after it arrived gets a 504. */
  timeoutSeconds: number;
  /** A request sent to an instance that has not started answering this long after gets a 504. */
  responseStartTimeoutSeconds?: number;
  /** A started response that sends nothing for this long is cut. */
  idleTimeoutSeconds?: number;
}

/** What one host routes to. */
export interface RoutingEntry {
  namespace: string;
  /** The Route's name (a Service's Route has the Service's name). */
  service: string;
  /** Set on tag hosts `{tag}-{service}.{namespace}.{domain}`. */
  tag?: string;
  targets: RoutingTarget[];
}

/** Every host one Route owns. */
export interface RouteRouting {
  namespace: string;
  route: string;
  hosts: Record<string, RoutingEntry>;
}

export interface RoutingKeys {
  /** HASH host -> RoutingEntry JSON. */
  hosts: string;
  /** SET of the hosts owned by one Route. */
  routeHosts(namespace: string, route: string): string;
  /** Channel: a host whose entry changed or was removed. */
  channel: string;
}

export function routingKeys(prefix: string): RoutingKeys {
  return {
    hosts: `${prefix}routing:hosts`,
    routeHosts: (namespace, route) => `${prefix}routing:route:${namespace}:${route}`,
    channel: `${prefix}routing`,
  };
}

type RevisionLookup = ReadonlyMap<string, Revision> | readonly Revision[];

function lookup(revisions: RevisionLookup): (name: string) => Revision | undefined {
  if (Array.isArray(revisions)) {
    const byName = new Map((revisions as readonly Revision[]).map((r) => [r.metadata.name, r]));
    return (name) => byName.get(name);
  }
  const map = revisions as ReadonlyMap<string, Revision>;
  return (name) => map.get(name);
}

function targetFor(rev: Revision, percent: number): RoutingTarget {
  const spec = rev.spec;
  const target: RoutingTarget = {
    revision: rev.metadata.name,
    percent,
    containerConcurrency: spec.containerConcurrency,
    timeoutSeconds: spec.timeoutSeconds,
  };
  if (spec.responseStartTimeoutSeconds !== undefined) {
    target.responseStartTimeoutSeconds = spec.responseStartTimeoutSeconds;
  }
  if (spec.idleTimeoutSeconds !== undefined) target.idleTimeoutSeconds = spec.idleTimeoutSeconds;
  return target;
}

/**
 * The hosts of one Route: `{route}.{ns}.{domain}` split by percent, and one
 * `{tag}-{route}.{ns}.{domain}` per tagged target sending everything to its
 * revision. Only `route.status.traffic` targets that carry a revisionName count
 * (a latestRevision target with nothing ready yet routes nowhere), and only
 * revisions found in `revisions`. Two targets naming the same revision add up.
 * A host with no target left is absent, so gateways answer 404 for it.
 */
export function routingTables(
  route: Route,
  revisions: RevisionLookup,
  domain: string,
): RouteRouting {
  const namespace = route.metadata.namespace;
  const name = route.metadata.name;
  const find = lookup(revisions);
  const hosts: Record<string, RoutingEntry> = {};
  const main: RoutingTarget[] = [];
  for (const t of route.status.traffic ?? []) {
    if (t.revisionName === undefined) continue;
    const rev = find(t.revisionName);
    if (!rev) continue;
    const percent = t.percent ?? 0;
    if (percent > 0) {
      const same = main.find((m) => m.revision === rev.metadata.name);
      if (same) same.percent += percent;
      else main.push(targetFor(rev, percent));
    }
    if (t.tag !== undefined) {
      hosts[tagHost(t.tag, name, namespace, domain)] = {
        namespace,
        service: name,
        tag: t.tag,
        targets: [targetFor(rev, 100)],
      };
    }
  }
  if (main.length > 0) {
    hosts[serviceHost(name, namespace, domain)] = { namespace, service: name, targets: main };
  }
  return { namespace, route: name, hosts };
}

/**
 * Replace a Route's hosts atomically: hosts it no longer has are removed
 * (unless another Route has written them since), new and changed ones are
 * written, and each changed host is published. Unchanged hosts cost nothing.
 */
const PUBLISH_ROUTING = luaScript(`
local hosts, owned = KEYS[1], KEYS[2]
local channel, ns, route = ARGV[1], ARGV[2], ARGV[3]
local new = {}
for i = 4, #ARGV, 2 do new[ARGV[i]] = true end
local changed = {}
for _, h in ipairs(redis.call('SMEMBERS', owned)) do
  if not new[h] then
    local cur = redis.call('HGET', hosts, h)
    if cur then
      local ok, e = pcall(cjson.decode, cur)
      if (not ok) or type(e) ~= 'table' or (e.namespace == ns and e.service == route) then
        redis.call('HDEL', hosts, h)
        changed[#changed + 1] = h
      end
    end
    redis.call('SREM', owned, h)
  end
end
for i = 4, #ARGV, 2 do
  local h, json = ARGV[i], ARGV[i + 1]
  if redis.call('HGET', hosts, h) ~= json then
    redis.call('HSET', hosts, h, json)
    changed[#changed + 1] = h
  end
  redis.call('SADD', owned, h)
end
for _, h in ipairs(changed) do redis.call('PUBLISH', channel, h) end
return changed
`);

/** Write one Route's routing tables; returns the hosts that changed. */
export async function publishRouting(
  redis: Redis,
  prefix: string,
  tables: RouteRouting,
): Promise<string[]> {
  const keys = routingKeys(prefix);
  const args = [keys.channel, tables.namespace, tables.route];
  for (const host of Object.keys(tables.hosts).sort()) {
    args.push(host, JSON.stringify(tables.hosts[host]));
  }
  return (await PUBLISH_ROUTING.run(
    redis,
    [keys.hosts, keys.routeHosts(tables.namespace, tables.route)],
    args,
  )) as string[];
}

/** Remove every host of a Route (it was deleted); returns the hosts removed. */
export function removeRouting(
  redis: Redis,
  prefix: string,
  namespace: string,
  route: string,
): Promise<string[]> {
  return publishRouting(redis, prefix, { namespace, route, hosts: {} });
}

const seconds = z.number().positive();
const routingEntrySchema = z.object({
  namespace: z.string().min(1),
  service: z.string().min(1),
  tag: z.string().min(1).optional(),
  targets: z.array(
    z.object({
      revision: z.string().min(1),
      percent: z.number().min(0).max(100),
      containerConcurrency: z.number().int().min(0),
      timeoutSeconds: seconds,
      responseStartTimeoutSeconds: seconds.optional(),
      idleTimeoutSeconds: seconds.optional(),
    }),
  ),
});

/** Parse a stored entry; undefined when it is not valid JSON of the right shape. */
export function parseRoutingEntry(json: string): RoutingEntry | undefined {
  try {
    const parsed = routingEntrySchema.safeParse(JSON.parse(json));
    return parsed.success ? (parsed.data as RoutingEntry) : undefined;
  } catch {
    return undefined;
  }
}
