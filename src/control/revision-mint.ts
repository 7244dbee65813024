/**
 * A new immutable Revision from a Configuration's template (apply.ts calls
 * it when the template changed): its name, labels and creator, its worker
 * bundle stored beside it, its image digest (or the image failure it starts
 * with), inside the write's transaction and within the namespace's quota.
 */
import { AlreadyExistsError, ValidationError } from "../errors.ts";
import { revisionNameFor } from "../model/index.ts";
import type { Configuration, Revision, Service, WorkerArtifact } from "../model/types.ts";
import { Annotations, API_VERSION, Labels } from "../model/types.ts";
import type { Tx } from "../store/store.ts";
import type { ApplyContext } from "./apply.ts";
import { newMeta, ownerRef } from "./objects.ts";
import { checkRevisionQuota } from "./quota.ts";
import { CONTAINER_MISSING } from "./revision-health.ts";

export async function mintRevision(
  tx: Tx,
  config: Configuration,
  previous: Configuration | undefined,
  owner: Service | undefined,
  ctx: ApplyContext,
): Promise<Revision> {
  const { namespace } = config.metadata;
  const template = config.spec.template;
  const chosen = template.metadata.name;
  const field = "spec.template.metadata.name";
  if (chosen && previous?.spec.template.metadata.name === chosen) {
    throw ValidationError.of(
      [
        {
          field,
          message: `"${chosen}" names the current revision, but the template changed; give the new template a new name (or remove the name to get ${revisionNameFor(config.metadata.name, config.metadata.generation)})`,
        },
      ],
      { kind: owner ? "services" : "configurations", name: config.metadata.name },
    );
  }
  const name = chosen ?? revisionNameFor(config.metadata.name, config.metadata.generation);
  if (ctx.quota) await checkRevisionQuota(tx, namespace, ctx.quota, ctx.worker?.bytes ?? 0);
  if (await tx.get("revisions", namespace, name)) {
    throw new AlreadyExistsError(
      chosen
        ? `revision "${name}" already exists; choose another ${field}`
        : `revision "${name}" already exists (a previous template was given that name); set ${field} to a new name`,
      { kind: "revisions", name },
    );
  }
  const labels: Record<string, string> = {
    ...template.metadata.labels,
    [Labels.configuration]: config.metadata.name,
    [Labels.configurationGeneration]: String(config.metadata.generation),
  };
  if (owner) labels[Labels.service] = owner.metadata.name;
  // Knative: a revision's creator is whoever last changed its Configuration.
  const modifier = config.metadata.annotations?.[Annotations.lastModifier];
  const annotations = {
    ...template.metadata.annotations,
    ...(modifier !== undefined ? { [Annotations.creator]: modifier } : {}),
  };
  const revision: Revision = {
    apiVersion: API_VERSION,
    kind: "Revision",
    metadata: newMeta(name, namespace, {
      labels,
      annotations,
      ownerReferences: [ownerRef(config)],
    }),
    spec: template.spec,
    status: {
      observedGeneration: 1,
      conditions: [],
    },
  };
  if (template.spec.worker) {
    // Our bug: the API compiles every worker template (deploy/api/prepare.ts) before it applies.
    if (!ctx.worker) throw new Error("internal: worker template without a compiled bundle");
    const artifact: WorkerArtifact = { sha256: ctx.worker.sha256, bytes: ctx.worker.bytes };
    revision.status.workerArtifact = artifact;
    tx.putArtifact(namespace, name, ctx.worker.code);
  }
  const at = revision.metadata.creationTimestamp;
  revision.status.conditions = [
    {
      type: "Ready",
      status: "Unknown",
      reason: "Deploying",
      message: "Waiting for the first instance to pass readiness.",
      lastTransitionTime: at,
    },
  ];
  if (ctx.image?.imageDigest && !template.spec.worker) {
    revision.status.containerStatuses = [
      { name: ctx.image.name, imageDigest: ctx.image.imageDigest },
    ];
  } else if (ctx.image?.error && !template.spec.worker) {
    // As Knative: the revision exists, failed; deploy again once the image is there.
    const failed = {
      status: "False" as const,
      reason: CONTAINER_MISSING,
      message: ctx.image.error,
    };
    revision.status.conditions = [
      { type: "ContainerHealthy", ...failed, lastTransitionTime: at },
      { type: "Ready", ...failed, lastTransitionTime: at },
    ];
  }
  tx.put(revision);
  return revision;
}
