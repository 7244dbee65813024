/**
 * What start() is asked to run (an InstanceSpec), validated at the boundary,
 * and how it becomes a Docker container: the Knative runtime contract (PORT is
 * the declared containerPort, K_SERVICE, K_CONFIGURATION, K_REVISION,
 * command/args, limits, writable /tmp) in the container's own network
 * namespace on the cluster's bridge, its port published on the agent's data
 * address, plus the labels that let a restarted agent adopt it (and that keep
 * other agents and other installs away from it).
 */
import type Docker from "dockerode";
import { z } from "zod";
import { type Cause, ValidationError } from "../../src/errors.ts";
import { parseCpu, parseMemory, parseQuantity } from "../../src/model/quantity.ts";
import type { Container } from "../../src/model/types.ts";

/** Docker refuses memory limits below 6 MiB. */
const MIN_MEMORY = 6 * 2 ** 20;

/** Env names the runtime contract owns; a user value for them is ignored. */
export const RESERVED_ENV = ["PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"] as const;

/** Knative's default serving port when the template declares none. */
export const DEFAULT_CONTAINER_PORT = 8080;

const cpuQuantity = z
  .string()
  .refine(
    (q) => (parseQuantity(q) ?? 0) > 0,
    'must be a positive CPU quantity such as "500m" or "1"',
  );
const memoryQuantity = z
  .string()
  .refine(
    (q) => (parseQuantity(q) ?? 0) >= MIN_MEMORY,
    'must be a memory quantity of at least 6Mi (Docker\'s minimum), such as "128Mi" or "1Gi"',
  );
const resourceList = z.object({ cpu: cpuQuantity.optional(), memory: memoryQuantity.optional() });
const port = z.number().int().min(1).max(65535);

const probeSchema = z.object({
  tcpSocket: z.object({ port: port.optional() }).optional(),
  httpGet: z
    .object({
      path: z.string().min(1),
      port: port.optional(),
      httpHeaders: z.array(z.object({ name: z.string().min(1), value: z.string() })).optional(),
    })
    .optional(),
  exec: z.object({ command: z.array(z.string()).min(1) }).optional(),
  initialDelaySeconds: z.number().min(0).optional(),
  periodSeconds: z.number().min(0).optional(),
  timeoutSeconds: z.number().min(0).optional(),
  successThreshold: z.number().int().min(1).optional(),
  failureThreshold: z.number().int().min(1).optional(),
});

const containerSchema = z.object({
  name: z.string().optional(),
  image: z.string().min(1, "give the image reference to run, e.g. example/hello:1"),
  command: z.array(z.string()).optional(),
  args: z.array(z.string()).optional(),
  workingDir: z.string().optional(),
  env: z
    .array(
      z.object({
        name: z.string().regex(/^[^=\0]+$/, "must be non-empty and contain neither '=' nor NUL"),
        value: z.string(),
      }),
    )
    .optional(),
  ports: z
    .array(
      z.object({
        containerPort: port,
        name: z.string().optional(),
        protocol: z.literal("TCP").optional(),
      }),
    )
    .max(1, "a revision serves on exactly one port; list at most one")
    .optional(),
  resources: z
    .object({ limits: resourceList.optional(), requests: resourceList.optional() })
    .optional(),
  readinessProbe: probeSchema.optional(),
  livenessProbe: probeSchema.optional(),
  securityContext: z
    .object({
      runAsUser: z.number().int().min(0).optional(),
      runAsGroup: z.number().int().min(0).optional(),
      runAsNonRoot: z.boolean().optional(),
    })
    .optional(),
}) satisfies z.ZodType<Container>;

export const InstanceSpecSchema = z.object({
  /** Unique per agent; becomes the container name (after the name prefix). */
  instanceId: z
    .string()
    .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,100}$/, "use letters, digits, '_', '.', '-' (max 101)"),
  namespace: z.string().min(1),
  service: z.string().min(1).optional(),
  configuration: z.string().min(1),
  revision: z.string().min(1),
  /** The revision's single container, as in spec.containers[0]. */
  container: containerSchema,
  containerConcurrency: z.number().int().min(0).max(1000).default(0),
  timeoutSeconds: z.number().int().min(1).max(3600).default(300),
  /** Extra env from the agent (beats the user's env, loses to the contract's names). */
  extraEnv: z.record(z.string(), z.string()).optional(),
});

export type InstanceSpecInput = z.input<typeof InstanceSpecSchema>;
export type InstanceSpec = z.output<typeof InstanceSpecSchema>;

/** Parse with zod; failures become one ValidationError naming each field. */
export function parseWith<S extends z.ZodType>(
  schema: S,
  input: unknown,
  what: { kind: string; name?: string; prefix?: string },
): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  throw ValidationError.of(issuesToCauses(result.error.issues, what.prefix ?? ""), {
    kind: what.kind,
    ...(what.name === undefined ? {} : { name: what.name }),
  });
}

function issuesToCauses(issues: z.core.$ZodIssue[], prefix: string): Cause[] {
  return issues.map((issue) => {
    let field = prefix;
    for (const key of issue.path) {
      field += typeof key === "number" ? `[${key}]` : field ? `.${String(key)}` : String(key);
    }
    return {
      field,
      message: issue.message,
      reason: issue.code === "invalid_type" ? "FieldValueRequired" : "FieldValueInvalid",
    };
  });
}

/** The declared serving port (what probes and ports[] speak of). */
export function declaredPort(container: Container): number {
  return container.ports?.[0]?.containerPort ?? DEFAULT_CONTAINER_PORT;
}

export function protocolOf(container: Container): "http1" | "h2c" {
  return container.ports?.[0]?.name === "h2c" ? "h2c" : "http1";
}

/**
 * Docker's User for securityContext runAsUser/runAsGroup, as the kubelet
 * runs them: a group alone keeps the image's user. Undefined: the image's own.
 */
export function dockerUser(container: Container, imageUser = ""): string | undefined {
  const sc = container.securityContext;
  if (sc?.runAsUser === undefined && sc?.runAsGroup === undefined) return undefined;
  const user = sc.runAsUser !== undefined ? String(sc.runAsUser) : imageUser.split(":")[0] || "0";
  return sc.runAsGroup !== undefined ? `${user}:${sc.runAsGroup}` : user;
}

/**
 * Why runAsNonRoot forbids this start, the kubelet's way: the user that would
 * run is root (uid 0, or the image's USER unset/"root"/"0"), or a name whose
 * uid cannot be known without running the image. Undefined: it may start.
 */
export function nonRootProblem(container: Container, imageUser = ""): string | undefined {
  if (container.securityContext?.runAsNonRoot !== true) return undefined;
  const user = (dockerUser(container, imageUser) ?? imageUser).split(":")[0] ?? "";
  if (user === "" || user === "root" || user === "0") {
    return `container has runAsNonRoot and image ${container.image} will run as root; set securityContext.runAsUser to a non-zero uid, or a non-root USER in the image`;
  }
  if (!/^\d+$/.test(user)) {
    return `container has runAsNonRoot and image ${container.image} has a non-numeric user (${user}): cannot verify it is non-root; set securityContext.runAsUser`;
  }
  return undefined;
}

/** Label keys, all under the runtime's prefix (default "skiff."). */
export function labelKeys(prefix: string) {
  return {
    managed: `${prefix}managed`,
    /** The install (cluster id): agents only ever touch their own cluster's containers. */
    cluster: `${prefix}cluster`,
    owner: `${prefix}owner`,
    instance: `${prefix}instance`,
    namespace: `${prefix}namespace`,
    service: `${prefix}service`,
    configuration: `${prefix}configuration`,
    revision: `${prefix}revision`,
    address: `${prefix}address`,
    port: `${prefix}port`,
    spec: `${prefix}spec`,
    /** "sandbox" on a network sandbox (sandboxes.ts); absent on instances. */
    role: `${prefix}role`,
    /** On an instance running in a network sandbox: the sandbox's container id. */
    sandbox: `${prefix}sandbox`,
  };
}

export interface CreateContext {
  name: string;
  image: string;
  /** The agent's data address: the published port is bound there. */
  address: string;
  /** The host port published for the container's serving port (the sandbox's, in one). */
  port: number;
  /** The cluster's bridge network (id or name). */
  network: string;
  /** A network sandbox's container id (sandboxes.ts): the instance joins its namespace and port. */
  sandbox?: string;
  /** The image's USER, for a runAsGroup without runAsUser. */
  imageUser?: string;
  clusterId: string;
  owner: string;
  labelPrefix: string;
  /** Capabilities added on top of what the spec needs (operator's choice; default none). */
  capAdd: string[];
  pidsLimit: number;
  tmpfsSize: string | undefined;
  logMaxSize: string;
}

/**
 * Environment in precedence order: user env < agent extras < contract. PORT is
 * the declared containerPort (as in Knative): the container has its own
 * network namespace, so no host address or host port is ever handed to it.
 */
export function buildEnv(spec: InstanceSpec) {
  const env = new Map<string, string>();
  const reserved = new Set<string>(RESERVED_ENV);
  for (const e of spec.container.env ?? []) if (!reserved.has(e.name)) env.set(e.name, e.value);
  for (const [k, v] of Object.entries(spec.extraEnv ?? {})) if (!reserved.has(k)) env.set(k, v);
  env.set("PORT", String(declaredPort(spec.container)));
  if (spec.service) env.set("K_SERVICE", spec.service);
  env.set("K_CONFIGURATION", spec.configuration);
  env.set("K_REVISION", spec.revision);
  return [...env].map(([k, v]) => `${k}=${v}`);
}

export function buildLabels(spec: InstanceSpec, ctx: CreateContext): Record<string, string> {
  const k = labelKeys(ctx.labelPrefix);
  return {
    [k.managed]: "true",
    [k.cluster]: ctx.clusterId,
    [k.owner]: ctx.owner,
    [k.instance]: spec.instanceId,
    [k.namespace]: spec.namespace,
    ...(spec.service ? { [k.service]: spec.service } : {}),
    [k.configuration]: spec.configuration,
    [k.revision]: spec.revision,
    [k.address]: ctx.address,
    [k.port]: String(ctx.port),
    ...(ctx.sandbox ? { [k.sandbox]: ctx.sandbox } : {}),
    // The whole spec, so that adopt() can hand the agent back exactly what it started.
    [k.spec]: JSON.stringify(spec),
  };
}

/** The docker create body for one instance. */
export function buildCreateOptions(
  spec: InstanceSpec,
  ctx: CreateContext,
): Docker.ContainerCreateOptions {
  const c = spec.container;
  const limits = c.resources?.limits;
  const requests = c.resources?.requests;
  const memory = limits?.memory ? parseMemory(limits.memory) : undefined;
  const cpu = limits?.cpu ? parseCpu(limits.cpu) : undefined;
  const cpuRequest = requests?.cpu ? parseCpu(requests.cpu) : undefined;
  const memoryRequest = requests?.memory ? parseMemory(requests.memory) : undefined;
  const containerPort = `${declaredPort(c)}/tcp`;
  const user = dockerUser(c, ctx.imageUser);
  const tmpfs = [
    "rw",
    "nosuid",
    "nodev",
    "mode=1777",
    ...(ctx.tmpfsSize ? [`size=${ctx.tmpfsSize}`] : []),
  ];
  return {
    name: ctx.name,
    Image: ctx.image,
    Env: buildEnv(spec),
    // In a sandbox the sandbox publishes the port (Docker refuses ports on a joined namespace).
    ...(ctx.sandbox ? {} : { ExposedPorts: { [containerPort]: {} } }),
    // Kubernetes semantics: command replaces ENTRYPOINT (and drops CMD), args replace CMD.
    ...(c.command ? { Entrypoint: c.command } : {}),
    ...(c.args ? { Cmd: c.args } : {}),
    ...(c.workingDir ? { WorkingDir: c.workingDir } : {}),
    ...(user !== undefined ? { User: user } : {}),
    Labels: buildLabels(spec, ctx),
    AttachStdin: false,
    OpenStdin: false, // stdin at EOF, as the contract says
    Tty: false,
    HostConfig: {
      // Its own network namespace on the cluster's bridge (inter-container traffic
      // off): the host's 127.0.0.1 (Redis, admin ports, workerd) is not reachable.
      // Gateways reach it only through the port published on the data address.
      ...(ctx.sandbox
        ? { NetworkMode: `container:${ctx.sandbox}` }
        : {
            NetworkMode: ctx.network,
            PortBindings: {
              [containerPort]: [{ HostIp: ctx.address, HostPort: String(ctx.port) }],
            },
          }),
      ...(memory ? { Memory: memory, MemorySwap: memory } : {}),
      ...(memoryRequest && (!memory || memoryRequest <= memory)
        ? { MemoryReservation: memoryRequest }
        : {}),
      // parseCpu gives millicores: Docker wants nano-CPUs and shares of 1024 per core.
      ...(cpu ? { NanoCpus: cpu * 1e6 } : {}),
      ...(cpuRequest ? { CpuShares: Math.max(2, Math.round((cpuRequest * 1024) / 1000)) } : {}),
      Tmpfs: { "/tmp": tmpfs.join(",") },
      Privileged: false,
      // Drop everything; give back only what the spec needs (a port below 1024)
      // and what the operator chose to add.
      CapDrop: ["ALL"],
      CapAdd: capabilitiesFor(spec, ctx.capAdd),
      SecurityOpt: ["no-new-privileges:true"],
      PidsLimit: ctx.pidsLimit,
      RestartPolicy: { Name: "no" }, // restarts are the agent's decision (with backoff)
      LogConfig: { Type: "json-file", Config: { "max-size": ctx.logMaxSize, "max-file": "2" } },
    },
  };
}

/** Capabilities to add back: NET_BIND_SERVICE for a privileged port, plus the operator's extras. */
export function capabilitiesFor(spec: InstanceSpec, extra: string[]): string[] {
  const caps = new Set(extra.map((c) => c.toUpperCase().replace(/^CAP_/, "")));
  if (declaredPort(spec.container) < 1024) caps.add("NET_BIND_SERVICE");
  return [...caps];
}
