/**
 * serving.knative.dev/v1 as zod schemas, for the OpenAPI documents
 * (openapi.ts). Each object is built from the `known` field list of the
 * reader that validates writes (src/model): a field the API accepts and the
 * document lacks, or the reverse, is a type error here, so the two cannot
 * drift apart. The readers stay the authority on values (ranges, names,
 * quantities); these schemas give types and descriptions.
 */
import { z } from "zod";
import {
  CONTAINER_SHAPE,
  PORT_SHAPE,
  PROBE_SHAPE,
  SECURITY_CONTEXT_SHAPE,
} from "../../src/model/container.ts";
import { ENV_SHAPE } from "../../src/model/env.ts";
import { SPEC_SHAPE, TEMPLATE_META_SHAPE } from "../../src/model/template.ts";
import { TARGET_SHAPE } from "../../src/model/traffic.ts";
import type { Plural } from "../../src/model/types.ts";
import { META_SHAPE } from "../../src/model/validate.ts";
import { WORKER_FIELDS } from "../../src/model/worker-shape.ts";

/** An object with exactly the reader's known fields, all optional unless `required` names them. */
function shaped<K extends string>(
  shape: { known: readonly K[] },
  fields: { [P in K]: z.ZodType },
  description: string,
  required: readonly K[] = [],
) {
  // The reader's own order, so explain lists fields as the API documents them.
  const entries = shape.known.map((k) => [
    k,
    required.includes(k) ? fields[k] : fields[k].optional(),
  ]);
  return z.object(Object.fromEntries(entries) as Record<K, z.ZodType>).describe(description);
}

const str = (d: string) => z.string().describe(d);
const int = (d: string) => z.number().int().describe(d);
const stringMap = (d: string) => z.record(z.string(), z.string()).describe(d);

const env = z
  .array(
    shaped(
      ENV_SHAPE,
      { name: str("Variable name."), value: str("Its value.") },
      "An environment variable.",
      ["name"],
    ),
  )
  .describe("Environment variables.");

const quantities = z
  .object({
    cpu: str('CPU as a Kubernetes quantity: "500m", "1".').optional(),
    memory: str('Memory as a Kubernetes quantity: "128Mi", "1Gi".').optional(),
  })
  .describe("cpu and memory.");

const probe = shaped(
  PROBE_SHAPE,
  {
    tcpSocket: z
      .object({ port: int("The serving port (or unset).").optional() })
      .describe("Ready when a TCP connection opens."),
    httpGet: z
      .object({
        path: str("Path to GET.").optional(),
        port: int("The serving port (or unset).").optional(),
        httpHeaders: z
          .array(z.object({ name: z.string(), value: z.string() }))
          .describe("Headers sent with the probe.")
          .optional(),
        scheme: str("HTTP only.").optional(),
      })
      .describe("Ready when a GET answers 2xx/3xx."),
    exec: z
      .object({ command: z.array(z.string()).describe("The command and its arguments.") })
      .describe("Ready when the command, run in the container, exits 0."),
    initialDelaySeconds: int("Seconds before the first probe."),
    periodSeconds: int("Seconds between probes; 0: Knative's aggressive probing until ready."),
    timeoutSeconds: int("Seconds a probe may take."),
    successThreshold: int("Successes in a row to be ready."),
    failureThreshold: int("Failures in a row to be not ready."),
  },
  "A probe, as in Kubernetes (httpGet, tcpSocket or exec).",
);

const container = shaped(
  CONTAINER_SHAPE,
  {
    name: str("Container name."),
    image: str("The OCI image to run."),
    command: z.array(z.string()).describe("Entrypoint (replaces the image's)."),
    args: z.array(z.string()).describe("Arguments to the entrypoint."),
    workingDir: str("Working directory."),
    env,
    ports: z
      .array(
        shaped(
          PORT_SHAPE,
          {
            containerPort: int("The port the container serves HTTP on (default 8080)."),
            name: str('"http1" (default) or "h2c" (cleartext HTTP/2).'),
            protocol: str("TCP."),
          },
          "The serving port.",
        ),
      )
      .describe("At most one: the serving port."),
    resources: z
      .object({ limits: quantities.optional(), requests: quantities.optional() })
      .describe("Compute resources: limits and requests."),
    readinessProbe: probe,
    livenessProbe: probe.describe(
      "Liveness probe: failing failureThreshold times in a row restarts the instance.",
    ),
    imagePullPolicy: z
      .enum(["Always", "IfNotPresent", "Never"])
      .describe("When to pull the image."),
    securityContext: shaped(
      SECURITY_CONTEXT_SHAPE,
      {
        runAsUser: int("The uid the process runs as."),
        runAsGroup: int("The primary gid the process runs as."),
        runAsNonRoot: z
          .boolean()
          .describe("Refuse to start when the process would run as root (uid 0)."),
      },
      "Knative's allowed security settings: the user and group to run as.",
    ),
  },
  "A container (Knative allows one serving container).",
  ["image"],
);

const worker = shaped(
  { known: WORKER_FIELDS },
  {
    source: str("Inline source of a single ES module."),
    language: z
      .enum(["javascript", "typescript"])
      .describe("Language of source (default javascript)."),
    modules: z
      .array(z.object({ name: str("Module path used by imports."), source: str("Its source.") }))
      .describe("Several modules; main names the entry."),
    main: str("The entry module of modules."),
    env,
    network: z
      .enum(["none", "internet"])
      .describe('Outbound fetch(): "none" (default) or "internet".'),
    compatibilityDate: str("workerd compatibility date (YYYY-MM-DD)."),
    compatibilityFlags: z.array(z.string()).describe("workerd compatibility flags."),
    resources: z.object({ limits: quantities.optional() }).describe("Limits of the isolate."),
  },
  "A JavaScript/TypeScript isolate run by workerd (Skiff's extension), instead of containers.",
);

const templateMetadata = shaped(
  TEMPLATE_META_SHAPE,
  {
    name: str("The revision's name (<owner>-<suffix>); default: <owner>-00001, ..."),
    labels: stringMap("Labels of the revisions."),
    annotations: stringMap("Annotations of the revisions (autoscaling.knative.dev/*, ...)."),
  },
  "Metadata of the revisions stamped from this template.",
);

const revisionSpec = shaped(
  SPEC_SHAPE,
  {
    containerConcurrency: int("Most requests an instance serves at once; 0: no limit."),
    timeoutSeconds: int("Seconds a request may take."),
    responseStartTimeoutSeconds: int("Seconds until the response must start."),
    idleTimeoutSeconds: int("Seconds a response may go without bytes."),
    containers: z.array(container).describe("Exactly one container, or a worker."),
    worker,
  },
  "What a revision runs and how.",
);

const template = z
  .object({ metadata: templateMetadata.optional(), spec: revisionSpec })
  .describe("The template revisions are stamped from; a change makes a new revision.");

const traffic = z
  .array(
    shaped(
      TARGET_SHAPE,
      {
        tag: str("Gives the target its own URL: <tag>-<name>.<namespace>.<domain>."),
        revisionName: str("A fixed revision."),
        configurationName: str("The latest ready revision of this configuration."),
        latestRevision: z.boolean().describe("The latest ready revision."),
        percent: int("Share of the traffic (all targets sum to 100)."),
      },
      "A traffic target.",
    ),
  )
  .describe("How traffic splits over revisions (default: 100% to the latest ready one).");

const metadata = shaped(
  META_SHAPE,
  {
    name: str("The object's name (a DNS label)."),
    generateName: str("On create without a name: a prefix the server completes with 5 characters."),
    namespace: str("The namespace (from the URL)."),
    labels: stringMap("Labels."),
    annotations: stringMap("Annotations."),
    resourceVersion: str("Opaque; send it back for optimistic concurrency."),
  },
  "Standard object metadata.",
);

const status = z
  .record(z.string(), z.unknown())
  .describe("Observed state, written by Skiff (conditions, url, revisions, traffic).");

function kind(name: string, spec: z.ZodType, description: string) {
  return z
    .object({
      apiVersion: str("serving.knative.dev/v1").optional(),
      kind: str(name).optional(),
      metadata: metadata.optional(),
      spec: spec.optional(),
      status: status.optional(),
    })
    .describe(description);
}

export const KIND_SCHEMAS: Record<Plural, z.ZodType> = {
  services: kind(
    "Service",
    z
      .object({ template, traffic: traffic.optional() })
      .describe("The desired state of the Service."),
    "A Knative Service: a Configuration (its template) and a Route (its traffic) managed together.",
  ),
  configurations: kind(
    "Configuration",
    z.object({ template }).describe("The desired state of the Configuration."),
    "A Configuration: the latest template, stamped into a Revision on each change.",
  ),
  revisions: kind(
    "Revision",
    revisionSpec,
    "A Revision: an immutable snapshot of a Configuration's template (read-only).",
  ),
  routes: kind(
    "Route",
    z.object({ traffic }).describe("The traffic split."),
    "A Route: how traffic reaches revisions (a Service's own, or created directly).",
  ),
};
