/**
 * The agent's two runtimes, built from its options: the container driver
 * (when a Docker engine answers; the install's id labels every container and
 * names the bridge, so that two installs sharing an engine never adopt or
 * stop each other's) and the workerd pool the isolate driver runs on.
 */
import type { Redis } from "ioredis";
import type { Registry } from "prom-client";
import type { Fleet } from "../src/fleet/fleet.ts";
import type { Logger } from "../src/logging.ts";
import { ContainerRuntime } from "./container/index.ts";
import { ContainerDriver } from "./containers.ts";
import type { InstanceSink } from "./instance.ts";
import { WorkerdPool } from "./isolate/index.ts";
import type { AgentMetrics } from "./metrics.ts";
import type { AgentOptions } from "./options.ts";
import { heartbeatAlive } from "./orphans.ts";

export interface ContainerDriverWiring {
  options: AgentOptions;
  clusterId: string;
  agentId: string;
  sink: InstanceSink;
  metrics: AgentMetrics;
  registry: Registry;
  log: Logger;
  redis: Redis;
  fleet: Fleet;
}

/** The container driver, or undefined (logged) when no Docker engine answers. */
export async function openContainerDriver(
  w: ContainerDriverWiring,
): Promise<ContainerDriver | undefined> {
  const o = w.options;
  const runtime = new ContainerRuntime({
    clusterId: w.clusterId,
    owner: w.agentId,
    dataAddress: o.address,
    socketPath: o.dockerSocket,
    startupTimeoutMs: o.startupTimeoutMs,
    startConcurrency: o.containerStartConcurrency,
    standby: o.containerStandby,
    sandboxes: o.containerSandboxes,
    ...(o.portRange ? { portRange: o.portRange } : {}),
    registries: o.images.registries,
    pullTimeoutMs: o.images.pullTimeoutMs,
    ...(o.containerFirewall ? { firewall: o.containerFirewall } : {}),
  });
  if (!(await runtime.available())) {
    await runtime.close();
    w.log.warn(
      { socket: o.dockerSocket },
      "no Docker engine answered: this agent offers isolates only",
    );
    return undefined;
  }
  return new ContainerDriver({
    runtime,
    sink: w.sink,
    metrics: w.metrics,
    backoff: o.restartBackoff,
    logger: w.log,
    registry: w.registry,
    // A dead agent's containers (absent heartbeat twice, a TTL x2 apart) are reaped.
    orphans: {
      isAlive: heartbeatAlive(w.redis, (id) => w.fleet.keys.agent(id)),
      graceMs: 2 * o.heartbeatTtlMs,
    },
  });
}

/** The workerd pool (not started yet), its events logged. */
export function createWorkerdPool(
  o: AgentOptions,
  w: { registry: Registry; log: Logger; gatewaySecret: string; stateDir: string },
): WorkerdPool {
  const pool = new WorkerdPool({
    host: o.address,
    metrics: w.registry,
    gatewaySecret: w.gatewaySecret,
    ...(o.isolateSandbox ? { sandbox: o.isolateSandbox } : {}),
    ...(o.isolateMaxHeapMb ? { maxHeapMb: o.isolateMaxHeapMb } : {}),
    ...(o.isolateProcesses ? { processes: o.isolateProcesses } : {}),
    stateDir: w.stateDir,
  });
  pool.on("log", (e) => w.log.debug(e, "workerd"));
  pool.on("warning", (e) => w.log.warn(e, "workerd pool"));
  return pool;
}

/** Start the pool; an incomplete sandbox is worth a warning, not a refusal. */
export async function startWorkerdPool(pool: WorkerdPool, log: Logger): Promise<void> {
  await pool.start();
  if (pool.sandbox.notes.length > 0) {
    log.warn({ notes: pool.sandbox.notes }, "isolate sandbox incomplete on this host");
  }
}
