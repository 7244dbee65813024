/**
 * Deletes with Knative's ownership cascade (Service -> Configuration + Route ->
 * Revisions), refusing anything that would leave a Route pointing nowhere.
 */
import { ConflictError, ForbiddenError, NotFoundError } from "../errors.ts";
import type { Configuration, Revision, Route } from "../model/types.ts";
import { Labels } from "../model/types.ts";
import type { Tx } from "../store/store.ts";
import { controllerOf } from "./objects.ts";

export async function deleteService(tx: Tx, namespace: string, name: string): Promise<void> {
  const service = await tx.get("services", namespace, name);
  if (!service) throw notFound("services", namespace, name);
  const config = await tx.get("configurations", namespace, name);
  const ownedConfig =
    config && controllerOf(config)?.uid === service.metadata.uid ? config : undefined;
  const revisions = ownedConfig ? await revisionsOf(tx, ownedConfig) : [];
  await refuseIfRouted(tx, revisions, new Set([name]));
  for (const rev of revisions) tx.delete("revisions", namespace, rev.metadata.name);
  if (ownedConfig) tx.delete("configurations", namespace, name);
  const route = await tx.get("routes", namespace, name);
  if (route && controllerOf(route)?.uid === service.metadata.uid)
    tx.delete("routes", namespace, name);
  tx.delete("services", namespace, name);
}

export async function deleteConfiguration(tx: Tx, namespace: string, name: string): Promise<void> {
  const config = await tx.get("configurations", namespace, name);
  if (!config) throw notFound("configurations", namespace, name);
  const owner = controllerOf(config);
  if (owner) {
    throw new ForbiddenError(
      `configuration "${name}" is owned by ${owner.kind} "${owner.name}"; delete the ${owner.kind} instead`,
      { kind: "configurations", name },
    );
  }
  const revisions = await revisionsOf(tx, config);
  await refuseIfRouted(tx, revisions, new Set());
  for (const rev of revisions) tx.delete("revisions", namespace, rev.metadata.name);
  tx.delete("configurations", namespace, name);
}

/** A stand-alone Route; a Service's own goes with its Service. */
export async function deleteRoute(tx: Tx, namespace: string, name: string): Promise<void> {
  const route = await tx.get("routes", namespace, name);
  if (!route) throw notFound("routes", namespace, name);
  const owner = controllerOf(route);
  if (owner) {
    throw new ForbiddenError(
      `route "${name}" is owned by ${owner.kind} "${owner.name}"; delete the ${owner.kind} instead`,
      { kind: "routes", name },
    );
  }
  tx.delete("routes", namespace, name);
}

export async function deleteRevision(tx: Tx, namespace: string, name: string): Promise<void> {
  const rev = await tx.get("revisions", namespace, name);
  if (!rev) throw notFound("revisions", namespace, name);
  const configName = rev.metadata.labels?.[Labels.configuration];
  const config = configName ? await tx.get("configurations", namespace, configName) : undefined;
  if (config?.status.latestReadyRevisionName === name) {
    throw new ConflictError(
      `revision "${name}" is the latest ready revision of configuration "${config.metadata.name}" and cannot be deleted; deploy a newer revision first`,
      { kind: "revisions", name },
    );
  }
  if (config?.status.latestCreatedRevisionName === name) {
    throw new ConflictError(
      `revision "${name}" is the latest revision of configuration "${config.metadata.name}" (its current template) and cannot be deleted; deploy a newer revision first`,
      { kind: "revisions", name },
    );
  }
  await refuseIfRouted(tx, [rev], new Set());
  tx.delete("revisions", namespace, name);
}

async function revisionsOf(tx: Tx, config: Configuration): Promise<Revision[]> {
  // Ownership never changes, so only which revisions exist matters.
  const all = await tx.list("revisions", config.metadata.namespace, { depend: "membership" });
  return all.filter((r) => controllerOf(r)?.uid === config.metadata.uid);
}

/** Routes (other than `except`) that send traffic to any of these revisions block the delete. */
async function refuseIfRouted(tx: Tx, revisions: Revision[], except: Set<string>): Promise<void> {
  if (!revisions.length) return;
  const names = new Set(revisions.map((r) => r.metadata.name));
  const namespace = revisions[0]!.metadata.namespace;
  for (const route of await tx.list("routes", namespace)) {
    if (except.has(route.metadata.name)) continue;
    const hit = routedRevisions(route).find((n) => names.has(n));
    if (hit) {
      throw new ConflictError(
        `revision "${hit}" receives traffic from route "${route.metadata.name}"; move that traffic away first (skiff service update ${route.metadata.name} --traffic ...)`,
        { kind: "revisions", name: hit },
      );
    }
  }
}

/** Every revision a Route sends traffic to or tags, by spec or by resolved status. */
export function routedRevisions(route: Route): string[] {
  const out = new Set<string>();
  for (const t of [...route.spec.traffic, ...(route.status.traffic ?? [])]) {
    if (t.revisionName) out.add(t.revisionName);
  }
  return [...out];
}

function notFound(kind: string, namespace: string, name: string): NotFoundError {
  return new NotFoundError(`${kind} "${name}" not found in namespace "${namespace}"`, {
    kind,
    name,
  });
}
