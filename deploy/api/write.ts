/**
 * The one write path of Services, Configurations and stand-alone Routes: parse and validate the
 * untrusted body (prepare.ts), then apply it in a store transaction with the
 * namespace's quota (src/control/apply.ts), then log the change. The REST
 * routes and the web console's traffic changes both go through here, so a
 * console write is validated, bounded and logged exactly like an API write.
 */

import type { ImagesConfig } from "../../src/config/images.ts";
import {
  applyConfiguration,
  applyRoute,
  applyService,
  type ImageResolution,
  type WriteMode,
} from "../../src/control/apply.ts";
import type { ManagedFieldsEntry } from "../../src/control/managed-fields.ts";
import type { NamespaceQuota } from "../../src/control/quota.ts";
import type { Logger } from "../../src/logging.ts";
import { templatesEqual } from "../../src/model/index.ts";
import type { ScalingDefaults } from "../../src/model/scaling.ts";
import type { Resource, RevisionTemplate } from "../../src/model/types.ts";
import { parseRoute } from "../../src/model/validate.ts";
import type { Store } from "../../src/store/store.ts";
import { resolveTemplateImage } from "./image-digest.ts";
import { prepareConfiguration, prepareService, type WriteLimits } from "./prepare.ts";

export interface WriteDeps {
  store: Store;
  logger: Logger;
  domain: string;
  scheme: string;
  limits: WriteLimits;
  scaling?: ScalingDefaults | undefined;
  quotaOf?: ((namespace: string) => NamespaceQuota | undefined) | undefined;
  /** Registries whose tags a new revision's image is resolved against (absent: none). */
  images?: ImagesConfig | undefined;
}

export interface WriteRequest {
  plural: WritablePlural;
  namespace: string;
  /** The name in the URL (PUT/PATCH); the body's name must agree. */
  name: string | undefined;
  body: Record<string, unknown>;
  mode: WriteMode;
  dryRun: boolean;
  /** Logged with the change: who asked, through what (e.g. "console"). */
  via?: string;
  /** A server-side apply's field ownership for the object (absent: kept as stored). */
  managedFields?: ManagedFieldsEntry[] | undefined;
  /** The caller's identity, stamped as Knative's creator/lastModifier annotations. */
  user?: string;
}

export type WritablePlural = "services" | "configurations" | "routes";

export async function writeObject(deps: WriteDeps, req: WriteRequest): Promise<Resource> {
  const { plural, namespace, name, body, mode, dryRun } = req;
  const quota = deps.quotaOf?.(namespace);
  const ctx = {
    mode,
    domain: deps.domain,
    scheme: deps.scheme,
    ...(quota ? { quota } : {}),
    ...(req.managedFields ? { managedFields: req.managedFields } : {}),
    ...(req.user !== undefined ? { user: req.user } : {}),
  };
  const prepare = {
    namespace,
    name,
    limits: deps.limits,
    ...(deps.scaling ? { scaling: deps.scaling } : {}),
  };
  let result: Resource;
  if (plural === "services") {
    const { parsed, worker } = await prepareService(body, prepare);
    const image = await resolveIfNew(deps, namespace, parsed.metadata.name, parsed.spec.template);
    result = (
      await deps.store.transact((tx) => applyService(tx, parsed, { ...ctx, worker, image }), {
        dryRun,
      })
    ).value;
  } else if (plural === "routes") {
    const parsed = parseRoute(body, prepare);
    result = (await deps.store.transact((tx) => applyRoute(tx, parsed, ctx), { dryRun })).value;
  } else {
    const { parsed, worker } = await prepareConfiguration(body, prepare);
    const image = await resolveIfNew(deps, namespace, parsed.metadata.name, parsed.spec.template);
    result = (
      await deps.store.transact((tx) => applyConfiguration(tx, parsed, { ...ctx, worker, image }), {
        dryRun,
      })
    ).value;
  }
  deps.logger.info(
    {
      kind: plural,
      namespace,
      name: result.metadata.name,
      generation: result.metadata.generation,
      dryRun,
      ...(req.via ? { via: req.via } : {}),
    },
    mode === "create" ? "created" : "updated",
  );
  return result;
}

/**
 * The image's digest for a template that will mint a revision; a write that
 * leaves the template as it is (a traffic change) asks no registry.
 */
async function resolveIfNew(
  deps: WriteDeps,
  namespace: string,
  name: string,
  template: RevisionTemplate,
): Promise<ImageResolution | undefined> {
  if (!deps.images || Object.keys(deps.images.registries).length === 0) return undefined;
  const current = await deps.store.get("configurations", namespace, name);
  if (current && templatesEqual(current.spec.template, template)) return undefined;
  return resolveTemplateImage(template, deps.images);
}

/** What a user may PATCH: identity, labels, annotations, resourceVersion and spec. */
export function userView(obj: Resource): Record<string, unknown> {
  const { name, namespace, labels, annotations, resourceVersion } = obj.metadata;
  return {
    apiVersion: obj.apiVersion,
    kind: obj.kind,
    metadata: { name, namespace, labels, annotations, resourceVersion },
    spec: structuredClone(obj.spec),
  };
}
