/**
 * Writes of Services and Configurations, done the way Knative's controllers
 * would, but synchronously inside one store transaction: the Service, its
 * Configuration and Route, and a new immutable Revision (only when the template
 * changed) land together or not at all. Readiness-dependent status is filled in
 * later by the scaler through the same status functions.
 */
import {
  AlreadyExistsError,
  ConflictError,
  ForbiddenError,
  NotFoundError,
  ValidationError,
} from "../errors.ts";
import {
  type CompiledWorker,
  canonicalJson,
  type ParsedConfiguration,
  type ParsedMetadata as ParsedMeta,
  type ParsedRoute,
  type ParsedService,
  templatesEqual,
} from "../model/index.ts";
import type {
  Configuration,
  Resource,
  Revision,
  RevisionTemplate,
  Route,
  Service,
  TrafficTarget,
} from "../model/types.ts";
import { API_VERSION, Labels } from "../model/types.ts";
import type { Tx } from "../store/store.ts";
import { type ManagedFieldsEntry, setManagedFields } from "./managed-fields.ts";
import { compactRecord, controllerOf, newMeta, ownerRef } from "./objects.ts";
import { checkServicesQuota, type NamespaceQuota } from "./quota.ts";
import { standaloneRouteStatus } from "./refresh.ts";
import { mintRevision } from "./revision-mint.ts";
import { configurationStatus, routeStatus, type StatusContext, serviceStatus } from "./status.ts";
import { propagatedAnnotations, stampUser } from "./user-info.ts";

export type WriteMode = "create" | "replace";

/**
 * The template image's tag resolved to a digest before the write (a
 * Revision records it in status.containerStatuses), or why it could not be.
 */
export type ImageResolution =
  | { name: string; imageDigest: string; error?: undefined }
  | { name: string; error: string; imageDigest?: undefined };

export interface ApplyContext {
  mode: WriteMode;
  domain: string;
  scheme: string;
  worker?: CompiledWorker;
  /** Absent: the image runs by its reference as given (not on a listed registry, or a worker). */
  image?: ImageResolution | undefined;
  /** Absent: no limits. */
  quota?: NamespaceQuota;
  /** A server-side apply's new field ownership for the written object (absent: kept as stored). */
  managedFields?: ManagedFieldsEntry[];
  /** The caller's identity for the creator/lastModifier annotations (absent: internal write). */
  user?: string;
}

/** Apply a Service write. Returns the stored Service (resourceVersion filled at commit). */
export async function applyService(
  tx: Tx,
  input: ParsedService,
  ctx: ApplyContext,
): Promise<Service> {
  const { name, namespace } = input.metadata;
  const existing = await tx.get("services", namespace, name);
  checkExistence("services", existing, input.metadata, ctx.mode);
  if (!existing && ctx.quota) {
    await checkServicesQuota(
      tx,
      "services",
      namespace,
      ctx.quota,
      "delete a service (skiff service delete NAME)",
    );
  }

  const service: Service = existing
    ? structuredClone(existing)
    : {
        apiVersion: API_VERSION,
        kind: "Service",
        metadata: newMeta(name, namespace),
        spec: input.spec,
        status: {},
      };
  const specChanged = !!existing && canonicalJson(existing.spec) !== canonicalJson(input.spec);
  setUserMeta(service, {
    ...input.metadata,
    annotations: stampUser(input.metadata.annotations, {
      user: ctx.user,
      existing,
      specChanged,
      kind: "services",
      name,
    }),
  });
  if (ctx.managedFields) setManagedFields(service, ctx.managedFields);
  if (specChanged) service.metadata.generation += 1;
  service.spec = input.spec;

  const config = await writeConfiguration(tx, service, input.spec.template, ctx);
  const route = await writeRoute(tx, service, config, ctx);
  service.status = serviceStatus(service, config, route);
  tx.put(service);
  return service;
}

/** Apply a stand-alone Configuration write (one not owned by a Service). */
export async function applyConfiguration(
  tx: Tx,
  input: ParsedConfiguration,
  ctx: ApplyContext,
): Promise<Configuration> {
  const { name, namespace } = input.metadata;
  const existing = await tx.get("configurations", namespace, name);
  checkExistence("configurations", existing, input.metadata, ctx.mode);
  const owner = existing && controllerOf(existing);
  if (owner) {
    throw new ForbiddenError(
      `configuration "${name}" is owned by ${owner.kind} "${owner.name}"; change the ${owner.kind} instead`,
      { kind: "configurations", name },
    );
  }
  const specChanged = !!existing && !templatesEqual(existing.spec.template, input.spec.template);
  const meta: ParsedMeta = {
    ...input.metadata,
    annotations: stampUser(input.metadata.annotations, {
      user: ctx.user,
      existing,
      specChanged,
      kind: "configurations",
      name,
    }),
  };
  const config = await upsertConfiguration(tx, existing, meta, input.spec.template, undefined, ctx);
  return config;
}

/**
 * Apply a stand-alone Route write (Knative's RouteCreation and BYO-Route
 * flows): traffic to any Configuration's latest ready revision or to pinned
 * revisions of the namespace. A named revision or configuration that does not
 * exist is not refused: as in Knative, the Route's Ready says so until it
 * does. Each such Route counts against the namespace's services quota (it
 * owns hosts as a Service does).
 */
export async function applyRoute(tx: Tx, input: ParsedRoute, ctx: ApplyContext): Promise<Route> {
  const { name, namespace } = input.metadata;
  const existing = await tx.get("routes", namespace, name);
  checkExistence("routes", existing, input.metadata, ctx.mode);
  const owner = existing && controllerOf(existing);
  if (owner) {
    throw new ForbiddenError(
      `route "${name}" is owned by ${owner.kind} "${owner.name}"; change spec.traffic of the ${owner.kind} instead`,
      { kind: "routes", name },
    );
  }
  if (!existing && ctx.quota) {
    await checkServicesQuota(tx, "routes", namespace, ctx.quota, "delete a service or route");
  }
  const specChanged = !!existing && canonicalJson(existing.spec) !== canonicalJson(input.spec);
  const route: Route = existing
    ? structuredClone(existing)
    : {
        apiVersion: API_VERSION,
        kind: "Route",
        metadata: newMeta(name, namespace),
        spec: input.spec,
        status: {},
      };
  setUserMeta(route, {
    ...input.metadata,
    annotations: stampUser(input.metadata.annotations, {
      user: ctx.user,
      existing,
      specChanged,
      kind: "routes",
      name,
    }),
  });
  if (specChanged) route.metadata.generation += 1;
  route.spec = input.spec;
  route.status = await standaloneRouteStatus(tx, route, ctx, "none");
  tx.put(route);
  return route;
}

function checkExistence(
  kind: string,
  existing: Resource | undefined,
  meta: ParsedMeta,
  mode: WriteMode,
): void {
  if (mode === "create" && existing) {
    throw new AlreadyExistsError(
      `${kind} "${meta.name}" already exists in namespace "${meta.namespace}"; change it with PUT or PATCH (skiff service update)`,
      { kind, name: meta.name },
    );
  }
  if (mode === "replace" && !existing) {
    throw new NotFoundError(
      `${kind} "${meta.name}" not found in namespace "${meta.namespace}"; create it with POST (skiff service create) first`,
      { kind, name: meta.name },
    );
  }

  if (
    existing &&
    meta.resourceVersion &&
    meta.resourceVersion !== existing.metadata.resourceVersion
  ) {
    throw new ConflictError(
      `the object has been modified: ${kind} "${meta.name}" is at resourceVersion ${existing.metadata.resourceVersion}, not ${meta.resourceVersion}; read it again and reapply your change`,
      { kind, name: meta.name },
    );
  }
}

function setUserMeta(obj: Resource, meta: ParsedMeta): void {
  const labels = compactRecord(meta.labels);
  const annotations = compactRecord(meta.annotations);
  if (labels) obj.metadata.labels = labels;
  else delete obj.metadata.labels;
  if (annotations) obj.metadata.annotations = annotations;
  else delete obj.metadata.annotations;
}

async function writeConfiguration(
  tx: Tx,
  service: Service,
  template: RevisionTemplate,
  ctx: ApplyContext,
): Promise<Configuration> {
  const { name, namespace } = service.metadata;
  const existing = await tx.get("configurations", namespace, name);
  assertOwnedBy(existing, service, "configurations");
  const meta: ParsedMeta = {
    name,
    namespace,
    labels: { ...service.metadata.labels, [Labels.service]: name },
    annotations: propagatedAnnotations(service.metadata.annotations),
  };
  return upsertConfiguration(tx, existing, meta, template, service, ctx);
}

/** Write a Configuration, minting a Revision when the template changed. */
async function upsertConfiguration(
  tx: Tx,
  existing: Configuration | undefined,
  meta: ParsedMeta,
  template: RevisionTemplate,
  owner: Service | undefined,
  ctx: ApplyContext,
): Promise<Configuration> {
  const config: Configuration = existing
    ? structuredClone(existing)
    : {
        apiVersion: API_VERSION,
        kind: "Configuration",
        metadata: newMeta(meta.name, meta.namespace, {
          ownerReferences: owner ? [ownerRef(owner)] : undefined,
        }),
        spec: { template },
        status: {},
      };
  setUserMeta(config, meta);
  if (!owner && ctx.managedFields) setManagedFields(config, ctx.managedFields);

  const changed = !existing || !templatesEqual(existing.spec.template, template);
  if (changed) {
    if (existing) config.metadata.generation += 1;
    config.spec = { template };
    const revision = await mintRevision(tx, config, existing, owner, ctx);
    config.status = { ...config.status, latestCreatedRevisionName: revision.metadata.name };
  }
  config.status = configurationStatus(
    config,
    await statusContext(tx, config.metadata.namespace, ctx, [
      config.status.latestCreatedRevisionName,
    ]),
  );
  tx.put(config);
  return config;
}

async function writeRoute(
  tx: Tx,
  service: Service,
  config: Configuration,
  ctx: ApplyContext,
): Promise<Route> {
  const { name, namespace } = service.metadata;
  const existing = await tx.get("routes", namespace, name);
  assertOwnedBy(existing, service, "routes");
  const traffic = await checkedTraffic(tx, service);
  const route: Route = existing
    ? structuredClone(existing)
    : {
        apiVersion: API_VERSION,
        kind: "Route",
        metadata: newMeta(name, namespace, { ownerReferences: [ownerRef(service)] }),
        spec: { traffic },
        status: {},
      };
  route.metadata.labels = { ...service.metadata.labels, [Labels.service]: name };
  // As Knative's MakeRoute: the Service's annotations, but kubectl's apply record.
  const annotations = propagatedAnnotations(service.metadata.annotations);
  if (annotations) route.metadata.annotations = annotations;
  else delete route.metadata.annotations;
  if (existing && canonicalJson(existing.spec.traffic) !== canonicalJson(traffic))
    route.metadata.generation += 1;
  route.spec = { traffic };
  // routeStatus reads the revisions traffic names (a latest target resolves
  // through the Configuration, not a revision read).
  const sctx = await statusContext(
    tx,
    namespace,
    ctx,
    traffic.map((t) => t.revisionName),
  );
  route.status = routeStatus(route, (n) => (n === config.metadata.name ? config : undefined), sctx);
  tx.put(route);
  return route;
}

/**
 * The Service's traffic as the Route stores it (latest targets name the
 * Configuration), after checking that every named revision exists.
 */
async function checkedTraffic(tx: Tx, service: Service): Promise<TrafficTarget[]> {
  const { name, namespace } = service.metadata;
  const causes = [];
  const out: TrafficTarget[] = [];
  for (const [i, target] of service.spec.traffic.entries()) {
    if (target.revisionName) {
      const rev = await tx.get("revisions", namespace, target.revisionName);
      if (!rev) {
        causes.push({
          field: `spec.traffic[${i}].revisionName`,
          reason: "FieldValueNotFound",
          message: `revision "${target.revisionName}" does not exist in namespace "${namespace}"; list revisions with: skiff revision list -s ${name}`,
        });
      }
      out.push(target);
    } else {
      const { latestRevision: _l, ...rest } = target;
      out.push({ ...rest, configurationName: name, latestRevision: true });
    }
  }
  if (causes.length) throw ValidationError.of(causes, { kind: "services", name });
  return out;
}

function assertOwnedBy(obj: Resource | undefined, owner: Service, kind: string): void {
  if (!obj) return;
  const ref = controllerOf(obj);
  if (ref?.kind === "Service" && ref.name === owner.metadata.name && ref.uid === owner.metadata.uid)
    return;
  throw new ConflictError(
    `${kind} "${obj.metadata.name}" already exists and is not owned by service "${owner.metadata.name}"; delete it or choose another service name`,
    { kind, name: obj.metadata.name },
  );
}

/**
 * Status lookups see the named revisions (read or staged in this
 * transaction): only those the status reads, so a write's cost does not grow
 * with the namespace. The reads are snapshots the write does not depend on:
 * the status a write implies is computed from them, and the scaler (status's
 * one writer) recomputes from the write's own event, so revisions changing
 * status elsewhere never make a user's write conflict.
 */
export async function statusContext(
  tx: Tx,
  namespace: string,
  ctx: { domain: string; scheme: string },
  names: Iterable<string | undefined>,
): Promise<StatusContext> {
  const revisions = new Map<string, Revision>();
  for (const name of new Set(names)) {
    if (!name) continue;
    const rev = await tx.get("revisions", namespace, name, { depend: "none" });
    if (rev) revisions.set(name, rev);
  }
  return { domain: ctx.domain, scheme: ctx.scheme, revision: (n) => revisions.get(n) };
}
