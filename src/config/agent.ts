/**
 * The `agent` section: `skiff agent` and the agent of `skiff up`. The agent's
 * options (agent/options.ts) are this schema plus what only code passes in
 * (connections, loggers), so the defaults and ranges live here once.
 */
import { z } from "zod";
import { ID_PATTERN } from "../fleet/schemas.ts";
import { setting } from "./meta.ts";
import { hostSchema, msSchema, portSchema } from "./values.ts";

/** A host silent for this long is dead; the scaler's agentGraceMs follows it. */
export const AGENT_HEARTBEAT_TTL_MS = 5_000;

const agent = (flag: string) => ({ agent: flag });

export const agentSection = z
  .object({
    id: setting(
      z
        .string()
        .regex(
          ID_PATTERN,
          "use 1-101 letters, digits, '_', '.', '-', starting with one of the first two",
        )
        .optional(),
      {
        description: "Stable agent id, kept across restarts.",
        defaultText: "derived from the hostname and data address",
        flags: agent("--id <id>"),
      },
    ),
    address: setting(z.ipv4().default("127.0.0.1"), {
      description: "Data address: instances listen here and gateways connect here.",
      flags: agent("--address <ip>"),
    }),
    host: setting(hostSchema, {
      description: "Listen address of the agent's /healthz, /readyz and /metrics.",
      flags: agent("--host <host>"),
    }),
    port: setting(portSchema.default(8091), {
      description: "Listen port of the agent's /healthz, /readyz and /metrics.",
      flags: agent("--port <port>"),
    }),
    capacity: z
      .object({
        cpuMillis: setting(z.number().int().positive().optional(), {
          description: "CPU offered to instances, in thousandths of a core.",
          defaultText: "all cores",
          flags: agent("--cpu <millicores>"),
        }),
        memoryBytes: setting(z.number().int().positive().optional(), {
          description: "Memory offered to instances.",
          defaultText: "all of it",
          flags: agent("--memory <bytes>"),
        }),
        maxInstances: setting(z.number().int().positive().optional(), {
          description: "Most instances to run at once.",
          defaultText: "256",
          flags: agent("--max-instances <n>"),
        }),
      })
      .prefault({}),
    labels: setting(z.record(z.string(), z.string()).default({}), {
      description: "Agent labels (placement may match them); env and flag take KEY=VALUE items.",
      flags: agent("--label <KEY=VALUE>"),
    }),
    heartbeatIntervalMs: setting(msSchema(10).default(1_000), {
      description: "Heartbeat period.",
      flags: agent("--heartbeat-interval <ms>"),
    }),
    heartbeatTtlMs: setting(msSchema(50).default(AGENT_HEARTBEAT_TTL_MS), {
      description:
        "A host silent for this long is dead (its record expires); at least twice heartbeatIntervalMs.",
      flags: agent("--heartbeat-ttl <ms>"),
    }),
    resyncIntervalMs: setting(msSchema(10).default(5_000), {
      description:
        "Level-triggered reconcile period (desired set re-read, endpoints and reports checked).",
      flags: agent("--resync-interval <ms>"),
    }),
    containers: setting(z.boolean().default(true), {
      description: "Offer containers (needs a Docker engine); false: isolates only.",
      flags: { agent: "--no-containers", up: "--no-containers" },
    }),
    dockerSocket: setting(z.string().min(1).default("/var/run/docker.sock"), {
      description: "The Docker engine's socket.",
      flags: { agent: "--docker-socket <path>", up: "--docker-socket <path>" },
    }),
    portRange: z
      .object({
        min: setting(portSchema.min(1), {
          description: "Serving ports of containers are allocated from min..max.",
          defaultText: "any free port",
        }),
        max: setting(portSchema.min(1), { description: "See portRange.min." }),
      })
      .refine((r) => r.min <= r.max, "min must not exceed max")
      .optional(),
    containerFirewall: z
      .object({
        blockCidrs: setting(z.array(z.cidrv4("use IPv4 CIDRs such as 10.0.0.0/24")), {
          description:
            "Install iptables rules (needs root) so containers reach neither this host's addresses nor these CIDRs (the fleet's control network); comma-separated in env and flag.",
          flags: agent("--container-firewall <cidrs>"),
        }),
      })
      .optional(),
    containerStandby: z
      .object({
        retentionMs: setting(msSchema(0).default(300_000), {
          description:
            "A ready container stopped by a scale-down is paused and kept this long, to be resumed by the next instance of its revision; 0: off.",
        }),
        maxStandbys: setting(z.number().int().min(0).default(16), {
          description: "Paused standbys kept at most; 0: off.",
        }),
        minFreeMemoryBytes: setting(
          z
            .number()
            .int()
            .min(0)
            .default(1024 * 1024 * 1024),
          { description: "No standby is kept while the host has less memory available." },
        ),
        resumeTimeoutMs: setting(msSchema(1).default(2_000), {
          description:
            "A resumed standby not ready within this long is replaced by a new container.",
        }),
      })
      .prefault({}),
    containerSandboxes: z
      .object({
        count: setting(z.number().int().min(0).max(256).default(8), {
          description:
            "Network sandboxes kept started ahead of need: a cold start of a container serving on port 8080 joins one (its namespace and published port) instead of waiting for Docker's network setup (docker start ~600 -> ~200 ms here). Each sandbox serves one instance and is removed with it; each ready one holds a port and Docker's docker-proxy (~3 MiB). 0: off; x86-64 hosts only.",
        }),
      })
      .prefault({}),
    containerStartConcurrency: setting(z.number().int().min(1).max(256).default(4), {
      description:
        "Containers docker-started at once (their creates and readiness waits not counted): Docker serialises much of a start, so a burst all at once ends no sooner and holds the host's CPU from the rest meanwhile.",
    }),
    startupTimeoutMs: setting(msSchema(100).default(60_000), {
      description:
        "A container not ready within this long counts as failed (and is restarted with backoff).",
      flags: agent("--startup-timeout <ms>"),
    }),
    isolateProcesses: setting(z.number().int().min(1).max(256).optional(), {
      description: "workerd processes.",
      defaultText: "one per core",
      flags: agent("--isolate-processes <n>"),
    }),
    isolateStandby: z
      .object({
        retentionMs: setting(msSchema(0).default(300_000), {
          description:
            "A worker revision scaled down to zero keeps its isolate loaded (no CPU; memory its namespace's processes hold until they recycle anyway) this long, so its next instance starts without building it again and placement prefers this agent; 0: off.",
        }),
        maxStandbys: setting(z.number().int().min(0).default(256), {
          description: "Isolate standbys kept at most (the oldest goes first); 0: off.",
        }),
      })
      .prefault({}),
    isolateStateDir: setting(z.string().min(1).optional(), {
      description:
        "Where the isolate pool keeps its config and pid file (lets a restart stop strays).",
      defaultText: "a temporary folder; `skiff up`: {stateDir}/isolate",
      flags: agent("--isolate-state-dir <dir>"),
    }),
    isolateSandbox: z
      .object({
        mode: setting(z.enum(["auto", "required", "off"]).optional(), {
          description:
            'Each namespace\'s workerd sandbox: "auto" uses what the host allows, "required" fails instead, "off" for development only.',
          defaultText: "auto",
        }),
        memoryMb: setting(z.number().int().optional(), {
          description: "Memory of a namespace's workerd processes together (MB).",
          defaultText: "1024",
        }),
        cpuMillis: setting(z.number().int().optional(), {
          description: "CPU of a namespace, thousandths of a core.",
          defaultText: "1000",
        }),
        pids: setting(z.number().int().optional(), {
          description: "Processes plus threads of a namespace.",
          defaultText: "512",
        }),
        uidMin: setting(z.number().int().optional(), {
          description: "Namespaces get uids (and gids) from uidMin..uidMax, one each.",
          defaultText: "810000",
        }),
        uidMax: setting(z.number().int().optional(), {
          description: "See uidMin.",
          defaultText: "875535",
        }),
      })
      .optional(),
    isolateMaxHeapMb: setting(z.number().int().min(16).optional(), {
      description: "V8 heap limit per isolate (MB).",
      defaultText: "128",
    }),
    drainDelayMs: setting(msSchema(0).default(1_000), {
      description:
        "After withdrawing an endpoint, how long gateways get to notice before the instance is told to stop (bounded by the revision's timeoutSeconds).",
      flags: agent("--drain-delay <ms>"),
    }),
    restartBackoff: z
      .object({
        initialMs: setting(msSchema(1).default(1_000), {
          description: "First wait before restarting a failed instance; doubles each time.",
        }),
        maxMs: setting(msSchema(1).default(300_000), {
          description: "Longest wait before restarting a failed instance.",
        }),
      })
      .prefault({}),
  })
  .refine((o) => o.heartbeatTtlMs >= 2 * o.heartbeatIntervalMs, {
    message: "must be at least twice heartbeatIntervalMs, so that one late heartbeat is not death",
    path: ["heartbeatTtlMs"],
  });
