/**
 * `GET /apis/skiff.dev/v1/namespaces/{ns}/services/{name}/describe`: what
 * `skiff service describe` adds to the Service itself: each revision's
 * instances grouped by host, as the agents report them (read as the console
 * reads them, console/data.ts), and the service's recent events
 * (service-events.ts). Verb get on services/describe in the namespace: a
 * namespaced token reads its own namespaces only, and sees hosts without their
 * data address (as in the console).
 */
import type { Hono } from "hono";
import { NotFoundError } from "../../src/errors.ts";
import type { InstanceFailureReport } from "../../src/fleet/types.ts";
import type { Logger } from "../../src/logging.ts";
import { Labels } from "../../src/model/types.ts";
import type { Store } from "../../src/store/store.ts";
import { authorize, principalOf, TOKEN_API_VERSION } from "./access.ts";
import { type ConsoleSources, type InstanceView, readHosts } from "./console/data.ts";
import { type ServiceEvent, serviceEvents } from "./service-events.ts";

export interface DescribeRouteDeps {
  store: Store;
  sources: ConsoleSources;
  logger: Logger;
}

export interface InstanceDescription {
  id: string;
  runtime: InstanceView["runtime"];
  phase: InstanceView["phase"];
  /** RFC 3339: when the phase was entered. */
  since: string;
  restarts: number;
  reason?: string;
  message?: string;
  lastFailure?: Omit<InstanceFailureReport, "at"> & { at: string };
}

export interface HostDescription {
  id: string;
  /** The agent's data address; admin only. */
  address?: string;
  /** False: the agent's heartbeat expired; its reports are its last word. */
  live: boolean;
  instances: InstanceDescription[];
}

export interface ServiceDescription {
  apiVersion: typeof TOKEN_API_VERSION;
  kind: "ServiceDescription";
  metadata: { namespace: string; name: string };
  /** The service's revisions, newest first, each with the hosts running it. */
  revisions: { name: string; hosts: HostDescription[] }[];
  /** Newest first, at most MAX_EVENTS. */
  events: ServiceEvent[];
}

export function registerDescribeRoutes(app: Hono, deps: DescribeRouteDeps): void {
  app.get("/apis/skiff.dev/v1/namespaces/:namespace/services/:name/describe", async (c) => {
    const { namespace, name } = c.req.param();
    const p = principalOf(c);
    authorize(p, "get", "services/describe", namespace, "skiff.dev");
    const svc = await deps.store.get("services", namespace, name);
    if (!svc) throw new NotFoundError(`services "${name}" not found`, { kind: "services", name });
    const revisions = (
      await deps.store.list("revisions", namespace, { labels: { [Labels.service]: name } })
    ).sort((a, b) => b.metadata.name.localeCompare(a.metadata.name));
    const names = new Set(revisions.map((r) => r.metadata.name));
    // Only this service's instances; the principal's own filter applies first.
    const hosts = (await readHosts(deps.sources, p, deps.logger))
      .map((h) => ({
        ...h,
        instances: h.instances.filter((i) => i.namespace === namespace && names.has(i.revision)),
      }))
      .filter((h) => h.instances.length > 0);
    const body: ServiceDescription = {
      apiVersion: TOKEN_API_VERSION,
      kind: "ServiceDescription",
      metadata: { namespace, name },
      revisions: revisions.map((r) => ({
        name: r.metadata.name,
        hosts: hosts.flatMap((h) => {
          const mine = h.instances.filter((i) => i.revision === r.metadata.name);
          if (mine.length === 0) return [];
          return [
            {
              id: h.id,
              ...(h.detail ? { address: h.detail.address } : {}),
              live: h.live,
              instances: mine.map(instanceDescription),
            },
          ];
        }),
      })),
      events: serviceEvents(svc, revisions, hosts),
    };
    return c.json(body);
  });
}

function instanceDescription(i: InstanceView): InstanceDescription {
  return {
    id: i.id,
    runtime: i.runtime,
    phase: i.phase,
    since: new Date(i.since).toISOString(),
    restarts: i.restarts,
    ...(i.reason ? { reason: i.reason } : {}),
    ...(i.message ? { message: i.message } : {}),
    ...(i.lastFailure
      ? { lastFailure: { ...i.lastFailure, at: new Date(i.lastFailure.at).toISOString() } }
      : {}),
  };
}
