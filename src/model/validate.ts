/**
 * Untrusted Service/Configuration bodies (already decoded from JSON or YAML)
 * -> the validated, defaulted forms the deploy API stores. Every problem is
 * collected and thrown together as one ValidationError whose causes name the
 * exact fields; nothing partial is ever returned.
 *
 * Read-only fields a client echoes back (metadata.uid, generation,
 * creationTimestamp, ..., and the whole `status`) are accepted and dropped,
 * so `get -o yaml | edit | apply` round-trips. metadata.resourceVersion is
 * returned for optimistic concurrency.
 */
import { randomInt } from "node:crypto";
import { ValidationError } from "../errors.ts";
import { child, Issues, readObject, readString } from "./fields.ts";
import { type ModelLimitsInput, resolveLimits } from "./limits.ts";
import { readAnnotations, readLabels } from "./metadata.ts";
import { checkDns1035Label, checkDns1123Label, MAX_OWNER_NAME } from "./names.ts";
import { defaultScalingDefaults, type ScalingDefaults } from "./scaling.ts";
import { readTemplate } from "./template.ts";
import { readTraffic } from "./traffic.ts";
import { API_VERSION, type RevisionTemplate, type TrafficTarget } from "./types.ts";

export interface ParseContext {
  /** From the URL; the body's metadata.namespace must match it when given. */
  namespace: string;
  /** From the URL on PUT/PATCH; the body's metadata.name must match it when given. */
  name?: string;
  limits?: ModelLimitsInput;
  /** Cluster autoscaler settings the annotations are checked against. */
  scaling?: ScalingDefaults;
}

export interface ParsedMetadata {
  name: string;
  namespace: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Sent back by clients for optimistic concurrency (not validated beyond being a string). */
  resourceVersion?: string;
}

export interface ParsedService {
  metadata: ParsedMetadata;
  spec: { template: RevisionTemplate; traffic: TrafficTarget[] };
}

export interface ParsedConfiguration {
  metadata: ParsedMetadata;
  spec: { template: RevisionTemplate };
}

export interface ParsedRoute {
  metadata: ParsedMetadata;
  spec: { traffic: TrafficTarget[] };
}

const ROOT_SHAPE = { known: ["apiVersion", "kind", "metadata", "spec"], ignored: ["status"] };

export const META_SHAPE = {
  known: ["name", "generateName", "namespace", "labels", "annotations", "resourceVersion"] as const,
  ignored: [
    "uid",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
    "finalizers",
    "managedFields",
    "selfLink",
  ],
};

type Kind = "Service" | "Configuration" | "Route";

/** What Kubernetes appends to a generateName: 5 characters that never spell words. */
const GENERATED_ALPHABET = "bcdfghjklmnpqrstvwxz2456789";
const GENERATED_LENGTH = 5;

/**
 * A name from metadata.generateName, as the Kubernetes API server makes one:
 * the prefix (cut so the result fits) and 5 random characters. A clash with
 * an existing object is a 409 like any other create.
 */
function generatedName(prefix: string): string {
  let suffix = "";
  for (let i = 0; i < GENERATED_LENGTH; i++)
    suffix += GENERATED_ALPHABET[randomInt(GENERATED_ALPHABET.length)];
  return prefix.slice(0, MAX_OWNER_NAME - GENERATED_LENGTH) + suffix;
}

function readEnvelope(
  input: unknown,
  kind: Kind,
  ctx: ParseContext,
  issues: Issues,
): { root: Record<string, unknown>; metadata: ParsedMetadata | undefined } | undefined {
  const root = readObject(input, "", issues, ROOT_SHAPE);
  if (root === undefined) {
    if (issues.count === 0)
      issues.add("(root)", `the body must be a ${kind} object`, "FieldValueRequired");
    return undefined;
  }
  const apiVersion = readString(root.apiVersion, "apiVersion", issues);
  if (apiVersion !== undefined && apiVersion !== API_VERSION) {
    issues.add(
      "apiVersion",
      `must be "${API_VERSION}" (got "${apiVersion}")`,
      "FieldValueNotSupported",
    );
  }
  const k = readString(root.kind, "kind", issues);
  if (k !== undefined && k !== kind) {
    issues.add(
      "kind",
      `must be "${kind}" for this endpoint (got "${k}")`,
      "FieldValueNotSupported",
    );
  }

  const limits = resolveLimits(ctx.limits);
  const meta = readObject(root.metadata, "metadata", issues, META_SHAPE);
  const bodyName = readString(meta?.name, "metadata.name", issues);
  const generateName = readString(meta?.generateName, "metadata.generateName", issues);
  let name: string | undefined;
  if (bodyName !== undefined && ctx.name !== undefined && bodyName !== ctx.name) {
    issues.add(
      "metadata.name",
      `"${bodyName}" does not match the name in the URL ("${ctx.name}"); a ${kind} cannot be renamed`,
    );
  } else {
    name = bodyName || ctx.name || (generateName ? generatedName(generateName) : undefined);
    const field = bodyName || ctx.name ? "metadata.name" : "metadata.generateName";
    if (name === undefined) {
      issues.add(
        "metadata.name",
        `required: every ${kind} needs a name (or a metadata.generateName prefix)`,
        "FieldValueRequired",
      );
    } else {
      const bad = checkDns1035Label(name);
      if (bad !== undefined) {
        issues.add(field, bad);
        name = undefined;
      } else if (name.length > MAX_OWNER_NAME) {
        issues.add(
          field,
          `must be no more than ${MAX_OWNER_NAME} characters so that revision names like "${name.slice(0, 10)}...-00001" fit in 63 (got ${name.length})`,
          "FieldValueTooLong",
        );
        name = undefined;
      }
    }
  }

  const nsBad = checkDns1123Label(ctx.namespace);
  if (nsBad !== undefined)
    issues.add("metadata.namespace", `the namespace in the URL is invalid: ${nsBad}`);
  const bodyNs = readString(meta?.namespace, "metadata.namespace", issues);
  if (bodyNs !== undefined && bodyNs !== ctx.namespace) {
    issues.add(
      "metadata.namespace",
      `"${bodyNs}" does not match the namespace in the URL ("${ctx.namespace}"); remove it or send the request to that namespace`,
    );
  }

  const labels = readLabels(meta?.labels, "metadata.labels", issues);
  const annotations = readAnnotations(
    meta?.annotations,
    "metadata.annotations",
    issues,
    limits.maxAnnotationsBytes,
  );
  const resourceVersion = readString(meta?.resourceVersion, "metadata.resourceVersion", issues);
  if (name === undefined) return { root, metadata: undefined };
  const metadata: ParsedMetadata = { name, namespace: ctx.namespace };
  if (labels !== undefined && Object.keys(labels).length > 0) metadata.labels = labels;
  if (annotations !== undefined && Object.keys(annotations).length > 0)
    metadata.annotations = annotations;
  if (resourceVersion !== undefined && resourceVersion !== "")
    metadata.resourceVersion = resourceVersion;
  return { root, metadata };
}

function fail(issues: Issues, kind: Kind, ctx: ParseContext, name: string | undefined): never {
  if (issues.count === 0) issues.add("(root)", `not a valid ${kind}`);
  throw ValidationError.of(issues.causes, { kind, name: name ?? ctx.name });
}

/** Parses a Service body. Throws ValidationError with every cause. */
export function parseService(input: unknown, ctx: ParseContext): ParsedService {
  const issues = new Issues();
  const limits = resolveLimits(ctx.limits);
  const envelope = readEnvelope(input, "Service", ctx, issues);
  const name = envelope?.metadata?.name;
  let result: ParsedService | undefined;
  if (envelope !== undefined) {
    const spec = readObject(
      envelope.root.spec,
      "spec",
      issues,
      { known: ["template", "traffic"] },
      { required: true },
    );
    if (spec !== undefined) {
      const template = readTemplate(spec.template, child("spec", "template"), issues, {
        ownerName: name,
        limits,
        scaling: ctx.scaling ?? defaultScalingDefaults,
      });
      const traffic = readTraffic(spec.traffic, "spec.traffic", issues, {
        owner: "service",
        name,
        maxTargets: limits.maxTrafficTargets,
      });
      if (envelope.metadata && template && traffic) {
        result = { metadata: envelope.metadata, spec: { template, traffic } };
      }
    }
  }
  if (issues.count > 0 || result === undefined) fail(issues, "Service", ctx, name);
  return result;
}

/** Parses a stand-alone Route body (Knative's RouteCreation). Throws ValidationError with every cause. */
export function parseRoute(input: unknown, ctx: ParseContext): ParsedRoute {
  const issues = new Issues();
  const limits = resolveLimits(ctx.limits);
  const envelope = readEnvelope(input, "Route", ctx, issues);
  const name = envelope?.metadata?.name;
  let result: ParsedRoute | undefined;
  if (envelope !== undefined) {
    const spec = readObject(envelope.root.spec, "spec", issues, { known: ["traffic"] });
    const traffic = readTraffic(spec?.traffic, "spec.traffic", issues, {
      owner: "route",
      name,
      maxTargets: limits.maxTrafficTargets,
    });
    if (envelope.metadata && traffic) result = { metadata: envelope.metadata, spec: { traffic } };
  }
  if (issues.count > 0 || result === undefined) fail(issues, "Route", ctx, name);
  return result;
}

/** Parses a Configuration body. Throws ValidationError with every cause. */
export function parseConfiguration(input: unknown, ctx: ParseContext): ParsedConfiguration {
  const issues = new Issues();
  const limits = resolveLimits(ctx.limits);
  const envelope = readEnvelope(input, "Configuration", ctx, issues);
  const name = envelope?.metadata?.name;
  let result: ParsedConfiguration | undefined;
  if (envelope !== undefined) {
    const spec = readObject(
      envelope.root.spec,
      "spec",
      issues,
      { known: ["template"] },
      { required: true },
    );
    if (spec !== undefined) {
      const template = readTemplate(spec.template, child("spec", "template"), issues, {
        ownerName: name,
        limits,
        scaling: ctx.scaling ?? defaultScalingDefaults,
      });
      if (envelope.metadata && template)
        result = { metadata: envelope.metadata, spec: { template } };
    }
  }
  if (issues.count > 0 || result === undefined) fail(issues, "Configuration", ctx, name);
  return result;
}
