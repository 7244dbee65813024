/**
 * The serving.knative.dev/v1 resource shapes Skiff stores and serves. These are
 * the *stored* (validated, defaulted) forms; input is parsed by model/schema.ts.
 * Field names follow Knative exactly so that a Knative manifest reads the same.
 */

export const API_VERSION = "serving.knative.dev/v1";

/** URL plural -> Kind. The plural is what the store and the REST paths use. */
export const KINDS = {
  services: "Service",
  configurations: "Configuration",
  revisions: "Revision",
  routes: "Route",
} as const;
export type Plural = keyof typeof KINDS;
export type KindName = (typeof KINDS)[Plural];

/** Labels Knative puts on owned objects; Skiff sets the same ones. */
export const Labels = {
  service: "serving.knative.dev/service",
  configuration: "serving.knative.dev/configuration",
  configurationGeneration: "serving.knative.dev/configurationGeneration",
  revision: "serving.knative.dev/revision",
  route: "serving.knative.dev/route",
} as const;

export const Annotations = {
  /** Revisions carrying this are never garbage-collected. */
  noGc: "serving.knative.dev/no-gc",
  /** Set by Skiff on Revisions when they were last routed (RFC 3339). */
  routingStateModified: "serving.knative.dev/routingStateModified",
  /** Who created a Service, Configuration or Route (set by the API from the token; immutable). */
  creator: "serving.knative.dev/creator",
  /** Who last changed its spec (set by the API from the token). */
  lastModifier: "serving.knative.dev/lastModifier",
  /** kubectl's client-side apply record: Knative keeps it on the Service only. */
  lastApplied: "kubectl.kubernetes.io/last-applied-configuration",
} as const;

export interface OwnerReference {
  apiVersion: string;
  kind: KindName;
  name: string;
  uid: string;
  controller?: boolean;
}

export interface ObjectMeta {
  name: string;
  namespace: string;
  uid: string;
  /** Bumped on every spec change (never on status-only writes). */
  generation: number;
  /** Opaque; changes on every write. Send it back on PUT for optimistic concurrency. */
  resourceVersion: string;
  creationTimestamp: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
}

export interface EnvVar {
  name: string;
  value: string;
}

export interface ContainerPort {
  containerPort: number;
  /** "http1" (default) or "h2c" for cleartext HTTP/2. */
  name?: string;
  protocol?: "TCP";
}

export interface HTTPGetAction {
  path: string;
  /** Defaults to the serving port. */
  port?: number;
  httpHeaders?: { name: string; value: string }[];
}

export interface Probe {
  tcpSocket?: { port?: number };
  httpGet?: HTTPGetAction;
  /** A command run inside the container; exit status 0 is success. */
  exec?: { command: string[] };
  initialDelaySeconds?: number;
  /** 0 means Knative's aggressive probing until first ready. */
  periodSeconds?: number;
  timeoutSeconds?: number;
  successThreshold?: number;
  failureThreshold?: number;
}

/** Knative's allowed subset of a container's securityContext that Skiff honours. */
export interface SecurityContext {
  /** The uid the process runs as (Docker's User). */
  runAsUser?: number;
  /** The primary gid. */
  runAsGroup?: number;
  /** Refuse to start when the process would run as root (uid 0). */
  runAsNonRoot?: boolean;
}

export interface ResourceList {
  /** Kubernetes quantity: "500m", "1", "2.5". */
  cpu?: string;
  /** Kubernetes quantity: "128Mi", "1Gi", "500M". */
  memory?: string;
}

export interface Container {
  name?: string;
  image: string;
  command?: string[];
  args?: string[];
  workingDir?: string;
  env?: EnvVar[];
  ports?: ContainerPort[];
  resources?: { limits?: ResourceList; requests?: ResourceList };
  readinessProbe?: Probe;
  /** Failing failureThreshold times in a row restarts the instance. */
  livenessProbe?: Probe;
  /** As in Kubernetes (unset: Always for ":latest" or untagged images, else IfNotPresent). */
  imagePullPolicy?: "Always" | "IfNotPresent" | "Never";
  securityContext?: SecurityContext;
}

/** One ES module of a worker, as written by the user. */
export interface WorkerModule {
  /** Relative module path used by imports, e.g. "main.ts" or "lib/util.js". */
  name: string;
  /** The module's source text. */
  source: string;
}

/**
 * Skiff's extension next to `containers`: a Deno-compatible ES module run as a
 * V8 isolate (workerd). Either `source` (one module) or `modules` + `main`.
 */
export interface WorkerSpec {
  /** Inline source of a single module. */
  source?: string;
  /** Language of `source`: "typescript" or "javascript" (default: javascript). */
  language?: "javascript" | "typescript";
  /** Several modules; `main` names the entry. */
  modules?: WorkerModule[];
  main?: string;
  env?: EnvVar[];
  /** Outbound network for fetch(): "none" (default) or "internet". */
  network?: "none" | "internet";
  /** workerd compatibility date (YYYY-MM-DD). */
  compatibilityDate?: string;
  compatibilityFlags?: string[];
  resources?: { limits?: { memory?: string; cpu?: string } };
}

export interface RevisionSpec {
  /** 0 = unlimited (soft target 100); >0 is a hard per-instance limit. */
  containerConcurrency: number;
  /** Seconds until a response must have started (504 otherwise). */
  timeoutSeconds: number;
  responseStartTimeoutSeconds?: number;
  idleTimeoutSeconds?: number;
  /** Exactly one of `containers` (one container) and `worker`. */
  containers?: Container[];
  worker?: WorkerSpec;
}

export interface RevisionTemplate {
  metadata: {
    name?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec: RevisionSpec;
}

export interface TrafficTarget {
  tag?: string;
  revisionName?: string;
  configurationName?: string;
  latestRevision?: boolean;
  percent?: number;
  /** Status only: the URL of a tagged target. */
  url?: string;
}

export type ConditionStatus = "True" | "False" | "Unknown";

export interface Condition {
  type: string;
  status: ConditionStatus;
  reason?: string;
  message?: string;
  lastTransitionTime: string;
  severity?: "Error" | "Warning" | "Info";
}

export interface Status {
  observedGeneration?: number;
  conditions?: Condition[];
}

export interface ConfigurationStatusFields {
  latestCreatedRevisionName?: string;
  latestReadyRevisionName?: string;
}

export interface RouteStatusFields {
  url?: string;
  address?: { url: string };
  traffic?: TrafficTarget[];
  /**
   * Route only: fingerprint of the resolved traffic the gateways' routing
   * tables were last published for (set by the scaler). The Route is Ready
   * only when it matches `traffic`, as Knative waits for IngressReady.
   */
  publishedTraffic?: string;
}

export interface Service {
  apiVersion: typeof API_VERSION;
  kind: "Service";
  metadata: ObjectMeta;
  spec: { template: RevisionTemplate; traffic: TrafficTarget[] };
  status: Status & ConfigurationStatusFields & RouteStatusFields;
}

export interface Configuration {
  apiVersion: typeof API_VERSION;
  kind: "Configuration";
  metadata: ObjectMeta;
  spec: { template: RevisionTemplate };
  status: Status & ConfigurationStatusFields;
}

/** What the revision's runtime needs, derived at deploy time (not user input). */
export interface WorkerArtifact {
  /** sha256 hex of the bundled JavaScript stored under the revision's artifact key. */
  sha256: string;
  bytes: number;
}

export interface Revision {
  apiVersion: typeof API_VERSION;
  kind: "Revision";
  metadata: ObjectMeta;
  spec: RevisionSpec;
  status: Status & {
    /** Instances the scaler wants / instances ready. */
    desiredReplicas?: number;
    actualReplicas?: number;
    /** Set when the revision is a worker: the compiled bundle. */
    workerArtifact?: WorkerArtifact;
    /** The image digest actually run (containers). */
    imageDigest?: string;
    /** The container's image tag resolved to a digest (name@sha256:...) when the revision was created. */
    containerStatuses?: Array<{ name: string; imageDigest?: string }>;
  };
}

export interface Route {
  apiVersion: typeof API_VERSION;
  kind: "Route";
  metadata: ObjectMeta;
  spec: { traffic: TrafficTarget[] };
  status: Status & RouteStatusFields;
}

export type Resource = Service | Configuration | Revision | Route;

export type ResourceOf<P extends Plural> = P extends "services"
  ? Service
  : P extends "configurations"
    ? Configuration
    : P extends "revisions"
      ? Revision
      : Route;
