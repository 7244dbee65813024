/**
 * The revision template (`spec.template`): metadata (name, labels,
 * annotations) and the revision spec with exactly one of `containers` (one
 * container, as in Knative) and `worker` (Skiff's isolate extension).
 *
 * Stored form: the user's fields as given (validated), plus Knative's webhook
 * defaults `containerConcurrency: 0` and `timeoutSeconds: 300`. Port, probe
 * and pull defaults are NOT written in; use servingPort() and
 * effectiveReadinessProbe() when running. Empty labels/annotations maps are
 * dropped. So parsing the same manifest twice gives equal templates.
 */
import { readContainer } from "./container.ts";
import { child, type Issues, item, readArray, readInt, readObject, readString } from "./fields.ts";
import type { ModelLimits } from "./limits.ts";
import { readAnnotations, readLabels } from "./metadata.ts";
import { checkDns1123Subdomain, MAX_LABEL, revisionNameFor } from "./names.ts";
import { resolveScaling, type ScalingDefaults } from "./scaling.ts";
import type { RevisionSpec, RevisionTemplate } from "./types.ts";
import { readWorker } from "./worker-shape.ts";

export const DEFAULT_TIMEOUT_SECONDS = 300;
export const MAX_TIMEOUT_SECONDS = 600;
export const MAX_CONTAINER_CONCURRENCY = 1000;

const TEMPLATE_SHAPE = { known: ["metadata", "spec"] };

export const TEMPLATE_META_SHAPE = {
  known: ["name", "labels", "annotations"] as const,
  unsupported: {
    generateName: "Skiff names revisions <name>-00001, <name>-00002, ...; or set metadata.name",
    namespace: "a revision lives in its Service's namespace",
  },
  ignored: ["creationTimestamp"],
};

export const SPEC_SHAPE = {
  known: [
    "containerConcurrency",
    "timeoutSeconds",
    "responseStartTimeoutSeconds",
    "idleTimeoutSeconds",
    "containers",
    "worker",
  ] as const,
  unsupported: {
    volumes: "revisions are stateless; /tmp is writable",
    serviceAccountName: "",
    imagePullSecrets: "",
    initContainers: "",
    enableServiceLinks: "",
    nodeSelector: "",
    affinity: "",
    tolerations: "",
    runtimeClassName: "",
    securityContext: "",
    hostAliases: "",
    dnsPolicy: "",
    dnsConfig: "",
    priorityClassName: "",
    schedulerName: "",
    topologySpreadConstraints: "",
    automountServiceAccountToken: "",
  },
};

export interface TemplateContext {
  /** The owning Configuration/Service name, for the revision-name prefix rule. */
  ownerName: string | undefined;
  limits: ModelLimits;
  scaling: ScalingDefaults;
}

/** Reads `spec.template`; `field` is its path (e.g. `spec.template`). */
export function readTemplate(
  value: unknown,
  field: string,
  issues: Issues,
  ctx: TemplateContext,
): RevisionTemplate | undefined {
  const obj = readObject(value, field, issues, TEMPLATE_SHAPE, { required: true });
  if (obj === undefined) return undefined;
  const before = issues.count;
  const metaField = child(field, "metadata");
  const specField = child(field, "spec");
  const template: RevisionTemplate = {
    metadata: {},
    spec: { containerConcurrency: 0, timeoutSeconds: 0 },
  };

  const meta = readObject(obj.metadata, metaField, issues, TEMPLATE_META_SHAPE);
  if (meta !== undefined) {
    const name = readString(meta.name, child(metaField, "name"), issues);
    if (name !== undefined) {
      checkRevisionName(name, child(metaField, "name"), issues, ctx.ownerName);
      template.metadata.name = name;
    }
    const labels = readLabels(meta.labels, child(metaField, "labels"), issues);
    if (labels !== undefined && Object.keys(labels).length > 0) template.metadata.labels = labels;
    const annotations = readAnnotations(
      meta.annotations,
      child(metaField, "annotations"),
      issues,
      ctx.limits.maxAnnotationsBytes,
    );
    if (annotations !== undefined && Object.keys(annotations).length > 0) {
      template.metadata.annotations = annotations;
    }
  }

  const spec = readSpec(obj.spec, specField, issues, ctx.limits);
  if (spec !== undefined) template.spec = spec;

  // Autoscaling annotations are checked against the final containerConcurrency.
  const anns = template.metadata.annotations;
  if (anns !== undefined) {
    const { causes } = resolveScaling(
      anns,
      { containerConcurrency: spec?.containerConcurrency ?? 0 },
      ctx.scaling,
      child(metaField, "annotations"),
    );
    issues.addAll(causes);
  }
  return issues.count === before ? template : undefined;
}

function checkRevisionName(
  name: string,
  field: string,
  issues: Issues,
  owner: string | undefined,
): void {
  const bad = checkDns1123Subdomain(name);
  if (bad !== undefined) {
    issues.add(field, bad);
    return;
  }
  if (name.length > MAX_LABEL) {
    issues.add(
      field,
      `must be no more than ${MAX_LABEL} characters so it can be used as a host label (got ${name.length})`,
      "FieldValueTooLong",
    );
    return;
  }
  if (owner !== undefined && (!name.startsWith(`${owner}-`) || name.length === owner.length + 1)) {
    issues.add(
      field,
      `revision name "${name}" must start with "${owner}-" (e.g. "${owner}-v2"); change it whenever the template changes`,
    );
  }
}

function readSpec(
  value: unknown,
  field: string,
  issues: Issues,
  limits: ModelLimits,
): RevisionSpec | undefined {
  const obj = readObject(value, field, issues, SPEC_SHAPE, { required: true });
  if (obj === undefined) return undefined;
  const before = issues.count;
  const containerConcurrency =
    readInt(obj.containerConcurrency, child(field, "containerConcurrency"), issues, {
      min: 0,
      max: MAX_CONTAINER_CONCURRENCY,
    }) ?? 0;
  const timeoutSeconds =
    readInt(obj.timeoutSeconds, child(field, "timeoutSeconds"), issues, {
      min: 1,
      max: MAX_TIMEOUT_SECONDS,
    }) ?? DEFAULT_TIMEOUT_SECONDS;
  const spec: RevisionSpec = { containerConcurrency, timeoutSeconds };
  for (const key of ["responseStartTimeoutSeconds", "idleTimeoutSeconds"] as const) {
    const at = child(field, key);
    const n = readInt(obj[key], at, issues, { min: 1, max: MAX_TIMEOUT_SECONDS });
    if (n === undefined) continue;
    if (n > timeoutSeconds) {
      issues.add(at, `must be at most timeoutSeconds (${timeoutSeconds}) (got ${n})`);
      continue;
    }
    spec[key] = n;
  }

  const hasContainers = obj.containers !== undefined && obj.containers !== null;
  const hasWorker = obj.worker !== undefined && obj.worker !== null;
  if (hasContainers === hasWorker) {
    issues.add(
      field,
      hasContainers
        ? 'set either "containers" or "worker", not both'
        : 'set "containers" (one container image) or "worker" (a JavaScript/TypeScript module)',
      hasContainers ? "FieldValueForbidden" : "FieldValueRequired",
    );
  }
  if (hasContainers) {
    const at = child(field, "containers");
    const list = readArray(obj.containers, at, issues);
    if (list !== undefined && list.length !== 1) {
      issues.add(
        at,
        list.length === 0
          ? "must list exactly one container"
          : `must list exactly one container (got ${list.length}); Skiff does not run sidecars`,
        list.length === 0 ? "FieldValueRequired" : "FieldValueTooMany",
      );
    } else if (list !== undefined) {
      const c = readContainer(list[0], item(at, 0), issues, limits);
      if (c !== undefined) spec.containers = [c];
    }
  }
  if (hasWorker) {
    const w = readWorker(obj.worker, child(field, "worker"), issues, limits);
    if (w !== undefined) spec.worker = w;
  }
  return issues.count === before ? spec : undefined;
}

/**
 * The name of the Revision a template creates: the user's
 * `template.metadata.name` when set, else `<config>-<generation, 5 digits>`.
 */
export function revisionNameForTemplate(
  configurationName: string,
  template: Pick<RevisionTemplate, "metadata">,
  generation: number,
): string {
  return template.metadata.name ?? revisionNameFor(configurationName, generation);
}
