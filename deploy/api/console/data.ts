/**
 * What the console shows, read for one principal: services with their
 * revisions (the store), hosts with their instances (the fleet's records,
 * read without pruning anyone: the console never writes fleet state) and
 * request rates (the gateways' published counters). A namespaced token sees
 * only its namespaces: their services, their instances, and the hosts that
 * run them, without the hosts' addresses or capacity.
 */
import type { Redis } from "ioredis";
import { createFleet } from "../../../src/fleet/fleet.ts";
import { parseRevisionRef } from "../../../src/fleet/keys.ts";
import type {
  InstanceFailureReport,
  InstancePhase,
  RuntimeKind,
} from "../../../src/fleet/types.ts";
import type { Logger } from "../../../src/logging.ts";
import type {
  Condition,
  Plural,
  ResourceOf,
  Revision,
  Service,
  TrafficTarget,
} from "../../../src/model/types.ts";
import type { Store } from "../../../src/store/store.ts";
import { parseRevisionCounters } from "../../../src/traffic/counters.ts";
import { gatewayKeys } from "../../../src/traffic/keys.ts";
import type { Principal } from "../token.ts";

/** The Redis the fleet and the gateways write, read-only here. */
export interface ConsoleSources {
  redis: Redis;
  prefix: string;
}

export const SERVICE_LABEL = "serving.knative.dev/service";

export interface RevisionView {
  name: string;
  ready: string;
  /** Share of traffic the route serves it now (status.traffic). */
  percent: number;
  /** Tags the route serves it under now. */
  tags: string[];
  desired: number | undefined;
  actual: number | undefined;
  /** "image ref" or "worker". */
  runs: string;
  /** The message of its failing condition, when one is False. */
  failure: string | undefined;
}

/** The traffic as the user wrote it (spec.traffic), per form row. */
export interface TrafficRow {
  percent: number;
  tags: string[];
}

export interface ServiceView {
  namespace: string;
  name: string;
  url: string | undefined;
  ready: string;
  readyMessage: string | undefined;
  resourceVersion: string;
  annotations: [string, string][];
  revisions: RevisionView[];
  /** spec.traffic by revision name; the latest-revision target under LATEST. */
  spec: Map<string, TrafficRow>;
}

export const LATEST = "@latest";

export interface InstanceView {
  id: string;
  namespace: string;
  revision: string;
  runtime: RuntimeKind;
  phase: InstancePhase;
  reason: string | undefined;
  message: string | undefined;
  restarts: number;
  /** ms since epoch the phase was entered. */
  since: number;
  /** The last failure that was the revision's own (kept for the instance's life). */
  lastFailure: InstanceFailureReport | undefined;
}

export interface HostView {
  id: string;
  /** False: a member whose heartbeat record expired (dead, or not back yet). */
  live: boolean;
  /** Admin only. */
  detail?: { address: string; cpuMillis: number; memoryBytes: number; maxInstances: number };
  draining: boolean;
  heartbeatAgeS: number | undefined;
  instances: InstanceView[];
}

/** The namespaces a principal reads; undefined: all of them (the admin). */
function namespacesOf(p: Principal): string[] | undefined {
  return p.kind === "admin" ? undefined : p.namespaces;
}

async function listVisible<P extends Plural>(
  store: Store,
  plural: P,
  p: Principal,
): Promise<ResourceOf<P>[]> {
  const namespaces = namespacesOf(p);
  if (namespaces === undefined) return store.list(plural);
  return (await Promise.all(namespaces.map((ns) => store.list(plural, ns)))).flat();
}

function condition(obj: { status: { conditions?: Condition[] } }, type: string) {
  return obj.status.conditions?.find((c) => c.type === type);
}

/** The message of the condition that says why it fails: Ready's, else any False one's. */
function failureOf(rev: Revision): string | undefined {
  const ready = condition(rev, "Ready");
  if (ready?.status === "False" && ready.message) return ready.message;
  const failed = (rev.status.conditions ?? [])
    .filter((c) => c.status === "False" && c.message)
    .sort((a, b) => b.lastTransitionTime.localeCompare(a.lastTransitionTime));
  return failed[0]?.message;
}

function specRows(traffic: TrafficTarget[]): Map<string, TrafficRow> {
  const rows = new Map<string, TrafficRow>();
  for (const t of traffic) {
    const key = t.latestRevision || !t.revisionName ? LATEST : t.revisionName;
    const row = rows.get(key) ?? { percent: 0, tags: [] };
    row.percent += t.percent ?? 0;
    if (t.tag) row.tags.push(t.tag);
    rows.set(key, row);
  }
  return rows;
}

function revisionView(rev: Revision, served: TrafficTarget[]): RevisionView {
  const mine = served.filter((t) => t.revisionName === rev.metadata.name);
  const container = rev.spec.containers?.[0];
  return {
    name: rev.metadata.name,
    ready: condition(rev, "Ready")?.status ?? "Unknown",
    percent: mine.reduce((sum, t) => sum + (t.percent ?? 0), 0),
    tags: mine.flatMap((t) => (t.tag ? [t.tag] : [])),
    desired: rev.status.desiredReplicas,
    actual: rev.status.actualReplicas,
    runs: rev.spec.worker ? "worker" : (container?.image ?? ""),
    failure: failureOf(rev),
  };
}

function serviceView(svc: Service, revisions: Revision[]): ServiceView {
  const ready = condition(svc, "Ready");
  const served = svc.status.traffic ?? [];
  return {
    namespace: svc.metadata.namespace,
    name: svc.metadata.name,
    url: svc.status.url,
    ready: ready?.status ?? "Unknown",
    readyMessage: ready?.status === "True" ? undefined : ready?.message,
    resourceVersion: svc.metadata.resourceVersion ?? "",
    annotations: Object.entries(svc.metadata.annotations ?? {}).sort(([a], [b]) =>
      a.localeCompare(b),
    ),
    // Newest first: revision names end in a zero-padded generation.
    revisions: revisions
      .sort((a, b) => b.metadata.name.localeCompare(a.metadata.name))
      .map((r) => revisionView(r, served)),
    spec: specRows(svc.spec.traffic),
  };
}

export async function readServices(store: Store, p: Principal): Promise<ServiceView[]> {
  const [services, revisions] = await Promise.all([
    listVisible(store, "services", p),
    listVisible(store, "revisions", p),
  ]);
  const byService = new Map<string, Revision[]>();
  for (const rev of revisions) {
    const owner = rev.metadata.labels?.[SERVICE_LABEL];
    if (!owner) continue;
    const key = `${rev.metadata.namespace}/${owner}`;
    byService.set(key, [...(byService.get(key) ?? []), rev]);
  }
  return services
    .sort((a, b) =>
      a.metadata.namespace === b.metadata.namespace
        ? a.metadata.name.localeCompare(b.metadata.name)
        : a.metadata.namespace.localeCompare(b.metadata.namespace),
    )
    .map((svc) =>
      serviceView(svc, byService.get(`${svc.metadata.namespace}/${svc.metadata.name}`) ?? []),
    );
}

export async function readHosts(
  sources: ConsoleSources,
  p: Principal,
  logger: Logger,
): Promise<HostView[]> {
  // A handle over the API's connection: no subscription, nothing to close.
  const fleet = createFleet({ redis: sources.redis, prefix: sources.prefix, logger });
  const { live, missing } = await fleet.listAgents();
  const namespaces = namespacesOf(p);
  const now = Date.now();
  const hosts: HostView[] = [];
  const members = [
    ...live.map((a) => ({ id: a.id, agent: a })),
    ...missing.map((id) => ({ id, agent: undefined })),
  ];
  const reports = await Promise.all(members.map((m) => fleet.readInstanceStatuses(m.id)));
  members.forEach(({ id, agent }, i) => {
    const instances = (reports[i] ?? [])
      .filter((s) => namespaces === undefined || namespaces.includes(s.namespace))
      .sort((a, b) => a.id.localeCompare(b.id))
      .map((s) => ({
        id: s.id,
        namespace: s.namespace,
        revision: s.revision,
        runtime: s.runtime,
        phase: s.phase,
        reason: s.reason,
        message: s.message,
        restarts: s.restarts,
        since: s.since,
        lastFailure: s.lastFailure,
      }));
    if (namespaces !== undefined && instances.length === 0) return;
    hosts.push({
      id,
      live: agent !== undefined,
      ...(agent && namespaces === undefined
        ? { detail: { address: agent.address, ...agent.capacity } }
        : {}),
      draining: agent?.draining === true,
      heartbeatAgeS: agent ? Math.max(0, Math.round((now - agent.heartbeatAt) / 1000)) : undefined,
      instances,
    });
  });
  return hosts.sort((a, b) => a.id.localeCompare(b.id));
}

/**
 * Requests per second per service ("{ns}/{service}"), summed over the
 * gateways: each gateway's own average over its last publish period. Stateless,
 * so any API replica answers the same; samples older than a few periods are
 * a gateway that stopped and count for nothing.
 */
export async function readRates(
  store: Store,
  sources: ConsoleSources,
  p: Principal,
): Promise<Record<string, number>> {
  const keys = gatewayKeys(sources.prefix);
  const [ids, revisions] = await Promise.all([
    sources.redis.zrange(keys.gateways, "0", "-1"),
    listVisible(store, "revisions", p),
  ]);
  const serviceOf = new Map<string, string>();
  for (const rev of revisions) {
    const owner = rev.metadata.labels?.[SERVICE_LABEL];
    if (owner) {
      serviceOf.set(
        `${rev.metadata.namespace}/${rev.metadata.name}`,
        `${rev.metadata.namespace}/${owner}`,
      );
    }
  }
  const out: Record<string, number> = {};
  for (const svc of new Set(serviceOf.values())) out[svc] = 0;
  if (ids.length === 0) return out;
  const pipe = sources.redis.pipeline();
  for (const id of ids) pipe.hgetall(keys.metrics(id));
  const replies = (await pipe.exec()) ?? [];
  const now = Date.now();
  for (const [err, value] of replies) {
    if (err) throw err;
    for (const [field, raw] of Object.entries(value as Record<string, string>)) {
      const ref = parseRevisionRef(field);
      const svc = ref && serviceOf.get(`${ref.namespace}/${ref.revision}`);
      if (!svc) continue; // another namespace, a gateway's own field, or a deleted revision
      const c = parseRevisionCounters(raw);
      if (!c || now - c.at > Math.max(5_000, 4 * c.periodMs)) continue;
      out[svc] = (out[svc] ?? 0) + (c.windowRequests * 1000) / Math.max(1, c.periodMs);
    }
  }
  return out;
}
