/**
 * The container runtime's options (validated once, by ContainerRuntime's
 * constructor): where the engine is, how instances are named, labelled,
 * networked, probed and stopped, and the standby policy.
 */
import type Docker from "dockerode";
import { z } from "zod";
import { StandbyOptionsSchema } from "./standby.ts";

const port = z.number().int().min(1).max(65535);

export const ContainerRuntimeOptionsSchema = z.object({
  /** A dockerode instance; when absent one is made for `socketPath`. */
  docker: z
    .custom<Docker>(
      (v) => typeof v === "object" && v !== null && "createContainer" in v,
      "must be a dockerode instance",
    )
    .optional(),
  socketPath: z.string().min(1).default("/var/run/docker.sock"),
  /** The install's id (src/cluster.ts): names the bridge and labels every container. */
  clusterId: z
    .string()
    .regex(/^[a-z0-9][a-z0-9_.-]{0,40}$/, "use 1-41 lower-case letters, digits, '_', '.', '-'")
    .default("default"),
  /** The cluster's bridge network; default `skiff-<clusterId>`. */
  networkName: z
    .string()
    .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/)
    .optional(),
  /**
   * Host firewall rules for the bridge (firewall.ts): containers may not reach
   * this host's own addresses nor `blockCidrs` (the fleet's control network).
   * Needs root and iptables; absent: no rules (single host: loopback is hidden anyway).
   */
  firewall: z
    .object({
      blockCidrs: z.array(z.cidrv4("use IPv4 CIDRs such as 10.0.0.0/24")).default([]),
      iptables: z.string().min(1).optional(),
    })
    .optional(),
  /** On close(), remove the bridge when no container is attached any more (Docker refuses otherwise). */
  removeNetworkOnClose: z.boolean().default(true),
  /** The agent's id: labels every container so that agents sharing an engine never adopt each other's. */
  owner: z
    .string()
    .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/, "use letters, digits, '_', '.', '-'")
    .default("skiff"),
  /** Address the instances' ports are published on and gateways connect to (loopback in tests). */
  dataAddress: z.ipv4().default("127.0.0.1"),
  /** Serving ports are allocated from here; keep it clear of the ephemeral range (32768+). */
  portRange: z
    .object({ min: port, max: port })
    .refine((r) => r.min <= r.max, "min must not exceed max")
    .default({ min: 20000, max: 29999 }),
  labelPrefix: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]*\.$/, 'use a lower-case prefix ending in ".", e.g. "skiff."')
    .default("skiff."),
  /** Container names are `${namePrefix}${clusterId}-${instanceId}` (unique per install on an engine). */
  namePrefix: z
    .string()
    .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/)
    .default("skiff-"),
  /**
   * Registries missing images are pulled from, by host as in image references
   * ("docker.io" for Docker Hub), with their credentials; an image on any other
   * registry must be present locally.
   */
  registries: z
    .record(
      z.string(),
      z.object({
        username: z.string().optional(),
        password: z.string().optional(),
        insecure: z.boolean().optional(),
      }),
    )
    .default({}),
  /** Give up a pull after this long. */
  pullTimeoutMs: z.number().int().positive().default(300_000),
  /** Give up the registry's reachability check (before a pull) after this long. */
  reachTimeoutMs: z.number().int().positive().default(2_000),
  /** SIGTERM -> SIGKILL grace on stop; default: the revision's timeoutSeconds (Knative). */
  stopGraceSeconds: z.number().int().min(0).optional(),
  /** A container not ready within this long is removed and start() fails. */
  startupTimeoutMs: z.number().int().positive().default(60_000),
  /**
   * Containers docker-started at once (creates and readiness waits are not
   * counted): Docker serialises much of a start (network namespace, veth,
   * iptables), so a burst started all at once finishes no sooner and holds
   * the host's CPU from everything else meanwhile (isolate loads included).
   */
  startConcurrency: z.number().int().min(1).max(256).default(4),
  /** Probe period until first ready (Knative: 50 ms; tens of ms keeps cold starts short). */
  probeIntervalMs: z.number().int().min(1).max(1_000).default(10),
  /** Per-probe timeout unless the probe sets timeoutSeconds. */
  probeTimeoutMs: z.number().int().positive().default(1_000),
  /**
   * Probe period once ready, unless the probe sets periodSeconds. Kubernetes'
   * 10 s would leave an instance that stops answering its probe routable for
   * up to 30 s (failureThreshold 3); 1 s withdraws it within about 3 s, for one
   * small request per second per instance.
   */
  readyProbePeriodMs: z.number().int().positive().default(1_000),
  /**
   * Fallback TCP probe only (the container's netns cannot be read): a connection
   * through the published port that stays open this long counts as accepted.
   */
  probeSettleMs: z.number().int().min(1).max(5_000).default(250),
  /** Probe TCP readiness inside the container's netns when this host's /proc shows it (false: always the fallback). */
  probeNetns: z.boolean().default(true),
  /**
   * Capabilities added to every container on top of what its spec needs
   * (all are dropped; NET_BIND_SERVICE comes back for a port below 1024).
   */
  capAdd: z.array(z.string().regex(/^[A-Za-z_]+$/)).default([]),
  pidsLimit: z.number().int().positive().default(4096),
  /** Size of the /tmp tmpfs ("64m"); default: the kernel's (counted against the memory limit). */
  tmpfsSize: z.string().optional(),
  logMaxSize: z.string().default("10m"),
  /** Log lines quoted in failure messages. */
  logTailLines: z.number().int().min(0).max(1000).default(20),
  /** Remove a container once its exit has been reported (logs are quoted in the message first). */
  removeExited: z.boolean().default(true),
  /**
   * Paused standbys (standby.ts): an instance stopped with `standby: true` is
   * paused (no CPU; memory, netns and published port kept) instead of removed,
   * and a later start() of the same spec under a new instance id resumes it.
   */
  standby: StandbyOptionsSchema,
  /**
   * Network sandboxes (sandboxes.ts) kept started ahead of need: a cold start
   * of a container serving on the default port 8080 joins one instead of
   * waiting for Docker's network setup. 0: off (also on hosts other than x86-64).
   */
  sandboxes: z.object({ count: z.number().int().min(0).max(256).default(8) }).prefault({}),
});

export type ContainerRuntimeOptions = z.input<typeof ContainerRuntimeOptionsSchema>;
export type RuntimeOptions = z.output<typeof ContainerRuntimeOptionsSchema>;
