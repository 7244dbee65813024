/**
 * Options of the workerd pool and of one registered revision, validated with
 * zod at the boundary. Defaults are chosen from measurements (see
 * bench/RESULTS-isolate.md).
 */
import { isIP } from "node:net";
import { Registry } from "prom-client";
import { z } from "zod";
import { type Cause, ValidationError } from "../../src/errors.ts";

/** The header the router reads the revision key from. The gateway strips client copies. */
export const REVISION_HEADER = "x-skiff-revision";
/**
 * The header carrying the cluster's gateway secret: gateways add it to every
 * request they send to an isolate endpoint; the router refuses (403) anything
 * without it and removes it before the worker sees the request.
 */
export const GATEWAY_AUTH_HEADER = "x-skiff-gateway-auth";
/** Set by the router (never by a worker) on responses it produced itself. */
export const ISOLATE_ERROR_HEADER = "x-skiff-isolate-error";
/** Compatibility date of revisions that do not name one. */
export const DEFAULT_COMPATIBILITY_DATE = "2025-09-01";

const specificIp = z
  .string()
  .refine((v) => isIP(v) !== 0, "must be an IP address such as 127.0.0.1")
  .refine(
    (v) => v !== "0.0.0.0" && v !== "::",
    "must be one specific address (e.g. 127.0.0.1), not a wildcard: the router trusts the revision header",
  );

const date = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, "must be a date written YYYY-MM-DD, e.g. 2025-09-01");

export const WorkerdPoolOptionsSchema = z.object({
  /**
   * Long-lived workerd processes per namespace; a namespace's revisions are
   * sharded across them. Revisions of different namespaces never share one.
   */
  processes: z
    .number()
    .int()
    .min(1, "must be at least 1")
    .max(256)
    // One: a namespace's CPU share is one core by default (sandbox.cpuMillis).
    .default(1),
  /** Address the processes serve requests on. */
  host: specificIp.default("127.0.0.1"),
  /**
   * The cluster's gateway secret (src/cluster.ts): requests must carry it in
   * GATEWAY_AUTH_HEADER. A random one when not set (then only this process can reach isolates).
   */
  gatewaySecret: z.string().min(16, "must be at least 16 characters").optional(),
  /** Distinct revisions loaded into one process before it is replaced (loader entries are never evicted). */
  maxLoaderEntries: z.number().int().min(1).default(500),
  watchdog: z
    .object({
      /** Pause between two health probes of one process. */
      intervalMs: z.number().int().min(5).default(50),
      /**
       * A probe unanswered for this long while the process burned at least
       * `cpuRatio` of it on CPU since the last sign of progress (a line from
       * the router, or from a worker's isolate when one of its requests starts
       * or settles) means the process is stalled (runaway CPU). A process that
       * did not get the CPU (host contention) is starved, not stalled: it is
       * left alone and nothing is blamed. A spinning request is stopped about
       * stallMs + intervalMs after it starts (250-450 ms measured with the
       * defaults on a shared 2-core host), whether it runs alone or behind a
       * backlog of other requests (those run first, each start a sign of
       * progress; see `backlogCpuMs` for a worker that forges them).
       */
      stallMs: z.number().int().min(20).default(150),
      // A third: a process that had 50 ms of CPU (of a 150 ms window) and still did not answer a probe is spinning.
      cpuRatio: z
        .number()
        .min(0)
        .max(1)
        .default(1 / 3),
      /**
       * While a revision loads (its isolate created, its module evaluated), the
       * CPU a probe may wait for before it is a stall: startup work is larger
       * than a request's, and 100 revisions loading at once on a busy host
       * must not read as a spinning one. A module spinning at top level is
       * still stopped, after this much CPU.
       */
      loadCpuMs: z.number().int().min(10).default(400),
      /**
       * workerd runs the requests that are ready one after another without
       * polling for I/O (no probe answered, no response written) until all are
       * done; only the lines the workers' isolates write as requests start and
       * settle tell such a burst from one request spinning. A worker can forge
       * those (it can call the wrapper that writes them), not the router's: a
       * probe that waits while the process burns this much CPU since the
       * router's last line is a stall all the same. It is the longest burst a
       * process works through without answering (64 requests of 5 ms take
       * 320 ms; a longer one is taken for a stall), and the longest a worker
       * forging progress can hold its process (about 2.1-2.5 s with the
       * defaults, on a full core).
       */
      backlogCpuMs: z.number().int().min(50).default(2_000),
      /**
       * Unanswered this long and not taken for a stall (no CPU burnt, or a
       * backlog's progress kept coming): the process hangs; it is restarted,
       * nobody blamed. The bound on everything else.
       */
      hangMs: z.number().int().min(100).default(30_000),
    })
    .prefault({}),
  /** What happens to a revision whose request stalled its process. */
  quarantine: z
    .object({
      /** Stalls after which a revision is refused for a while (the first one moves it to a process of its own). */
      refuseAfter: z.number().int().min(1).default(2),
      /** First refusal period; doubles with every further stall. */
      refuseMs: z.number().int().min(100).default(30_000),
      maxRefuseMs: z.number().int().min(100).default(600_000),
      /** Processes of a namespace reserved for suspects; beyond, new suspects are refused at once. */
      maxProcesses: z.number().int().min(1).default(8),
    })
    .prefault({}),
  /**
   * The sandbox around each namespace's processes: its own unprivileged uid
   * (when the agent runs as root) and its own cgroup with CPU, memory and pids
   * limits (when the agent may create cgroups). "auto" uses what the host
   * allows and says what it could not; "required" fails instead; "off" runs
   * workerd as the agent's user with no cgroup (development only).
   */
  sandbox: z
    .object({
      mode: z.enum(["auto", "required", "off"]).default("auto"),
      /** Namespaces get uids (and gids) from this range, one each. */
      uidMin: z.number().int().min(1).default(810_000),
      uidMax: z.number().int().min(1).default(875_535),
      /** Memory of all of a namespace's workerd processes together. */
      memoryMb: z.number().int().min(64).default(1024),
      /** CPU of a namespace, thousandths of a core. */
      cpuMillis: z.number().int().min(10).default(1000),
      /** Processes plus threads of a namespace. */
      pids: z.number().int().min(16).default(512),
      /** Where groups go, under the cgroup mount(s). */
      cgroupRoot: z.string().min(1).default("/sys/fs/cgroup"),
      cgroupParent: z
        .string()
        .regex(/^[A-Za-z0-9._-]+$/, "must be one directory name")
        .default("skiff"),
    })
    .prefault({})
    .refine((s) => s.uidMin <= s.uidMax, {
      message: "uidMin must not exceed uidMax",
      path: ["uidMin"],
    }),
  /**
   * One process's resident memory past this (MB) gets it recycled (a fresh
   * process takes over, the old one drains). Default: 3/4 of the namespace memory
   * divided by its processes.
   */
  maxRssMb: z.number().int().min(32).optional(),
  /** Path of the workerd binary; defaults to the one the `workerd` npm package installs. */
  workerdPath: z.string().min(1).optional(),
  /** Where configs and the pid file go; a fresh temporary directory when not set. */
  stateDir: z.string().min(1).optional(),
  /** How long a recycled process may take to finish its in-flight requests. */
  drainTimeoutMs: z.number().int().min(0).default(30_000),
  /**
   * A recycled process keeps serving this long beside its replacement before
   * it drains, marking its answers as draining (`x-skiff-draining`) so that
   * gateways stop reusing their kept-alive connections to it. It must exceed
   * the gateways' upstream keep-alive timeout (4 s): then no connection is
   * idle in a gateway's pool when the process closes it, and no request (a
   * POST included) meets that close. 0 drains at once (a request with a body
   * can then get a 502).
   */
  recycleHandoverMs: z.number().int().min(0).default(5_000),
  /**
   * A namespace whose last revision went keeps its processes this long, so that
   * its next cold start does not pay a workerd process start (~100-300 ms).
   */
  namespaceIdleMs: z.number().int().min(0).default(300_000),
  /** On stop(): how long processes may drain before SIGKILL. */
  stopGraceMs: z.number().int().min(0).default(2_000),
  /** V8 heap limit per isolate (MB). Exceeding it aborts the whole process, which is then restarted. */
  maxHeapMb: z.number().int().min(16).default(128),
  /** Report which revisions had requests in flight when a process stalled (costs a stdout line per busy/idle edge). */
  trackInFlight: z.boolean().default(true),
  /** Where metrics go; none when not set. */
  metrics: z
    .custom<Registry>((v) => v instanceof Registry, "must be a prom-client Registry")
    .optional(),
});

export type WorkerdPoolOptionsInput = z.input<typeof WorkerdPoolOptionsSchema>;
export type WorkerdPoolOptions = z.output<typeof WorkerdPoolOptionsSchema>;

/** Kubernetes-style env var names (C identifiers plus `-` and `.`). */
const envName = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

/**
 * Revision keys travel in a header, a loader name and a log line: keep them
 * plain. `namespace/revision`: the namespace picks the processes.
 */
export const revisionKeySchema = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,62}\/[A-Za-z0-9][A-Za-z0-9._:/@-]{0,252}$/,
    "must be namespace/revision: letters, digits and . _ : @ - (and / after the namespace), each part starting with a letter or digit (e.g. default/hello-00001)",
  );

export const RevisionCodeSchema = z.object({
  /** One bundled ES module whose default export is `{ fetch(request, env, ctx) }`. */
  code: z.string().min(1, "must be the compiled JavaScript of the worker, not empty"),
  env: z
    .record(
      z.string().regex(envName, "env names must match [-._a-zA-Z][-._a-zA-Z0-9]*"),
      z.string(),
    )
    .default({}),
  network: z.enum(["none", "internet"]).default("none"),
  compatibilityDate: date.optional(),
  compatibilityFlags: z
    .array(z.string().regex(/^[a-z0-9_]+$/, "must be a workerd flag such as nodejs_compat"))
    .default([]),
});

export type RevisionCodeInput = z.input<typeof RevisionCodeSchema>;
export type RevisionCode = z.output<typeof RevisionCodeSchema>;

/** Parse with zod; failures become a ValidationError naming each field. */
export function parseOrThrow<S extends z.ZodType>(
  schema: S,
  value: unknown,
  what: { kind: string; name: string; field?: string },
): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const causes: Cause[] = result.error.issues.map((issue) => ({
    field: fieldPath(what.field, issue.path),
    message: issue.message,
    reason: "FieldValueInvalid",
  }));
  throw ValidationError.of(causes, { kind: what.kind, name: what.name });
}

/** `env.FOO`, `compatibilityFlags[1]`: the notation of ValidationError causes. */
function fieldPath(prefix: string | undefined, path: readonly PropertyKey[]): string {
  let out = prefix ?? "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out;
}
