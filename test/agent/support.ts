/**
 * Shared set-up of the agent tests: Services created the way the deploy API
 * creates them (prepare + apply in one store transaction, so the Revision and
 * a worker's bundle exist), an agent with a unique id (= container owner) and
 * key prefix per test file, the test plays the scaler by writing desired
 * instances, the scaler's revision-status controller alone (so Revision
 * conditions follow the agents' instance reports, as in a cluster), and a
 * cleanup that force-removes the file's containers.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import Docker from "dockerode";
import { Agent } from "../../agent/agent.ts";
import { GATEWAY_AUTH_HEADER } from "../../agent/isolate/index.ts";
import type { AgentOptionsInput } from "../../agent/options.ts";
import { startRevisionStatus } from "../../scaler/controllers/revision-status.ts";
import { clusterKey } from "../../src/cluster.ts";
import { Fleet } from "../../src/fleet/fleet.ts";
import type { DesiredInstance, Endpoint } from "../../src/fleet/types.ts";
import { silentLogger } from "../../src/logging.ts";
import type { Revision } from "../../src/model/types.ts";
import { createRedisStore, type RedisStore } from "../../src/store/index.ts";
import { containersOf, removeContainers } from "../support/containers.ts";
import { type Manifest, serviceManifest } from "../support/fixtures.ts";
import { connect, redisUrl, uniquePrefix } from "../support/redis.ts";
import { deployService } from "../support/store.ts";
import { waitFor } from "../support/wait.ts";

export const DOMAIN = "example.test";
/** How long a failure on a serving revision stays visible (the controller's hold). */
export const STATUS_HOLD_MS = 2_000;

/** Agent id -> the gateway secret its isolates demand (read from Redis by the agent). */
const gatewaySecrets = new Map<string, string>();

export interface AgentTestEnv {
  prefix: string;
  store: RedisStore;
  fleet: Fleet;
  docker: Docker;
  /** Unique per file: the agent id and so the container owner label. */
  agentId: string;
  /** Options for an agent of this file (merge your own on top). */
  agentOptions(extra?: AgentOptionsInput): AgentOptionsInput;
  /** The part of them an agent process takes as JSON (spawnAgentProcess): no logger, secret or domain. */
  processOptions: AgentOptionsInput;
  startAgent(extra?: AgentOptionsInput): Promise<Agent>;
  /** Create a Service (and its first Revision) as the deploy API would; returns the revision. */
  createService(body: Record<string, unknown>): Promise<Revision>;
  revision(name: string): Promise<Revision | undefined>;
  /** Play the scaler: ask the agent for one instance of a revision. */
  desire(revision: string, runtime: DesiredInstance["runtime"], agentId?: string): Promise<string>;
  undesire(instanceId: string, agentId?: string): Promise<void>;
  endpoints(revision: string): Promise<Endpoint[]>;
  ownerContainers(owner?: string): Promise<Docker.ContainerInfo[]>;
  cleanup(): Promise<void>;
}

export async function agentTestEnv(label: string): Promise<AgentTestEnv> {
  const prefix = uniquePrefix(label);
  const store = await createRedisStore({ url: redisUrl(), prefix });
  const fleet = new Fleet({ url: redisUrl(), prefix });
  const status = await startRevisionStatus({
    store,
    fleet,
    domain: DOMAIN,
    scheme: "http",
    holdFailureMs: STATUS_HOLD_MS,
    resyncIntervalMs: 1_000,
    logger: silentLogger,
  });
  const docker = new Docker();
  const agentId = `test-${label}-${randomBytes(3).toString("hex")}`;
  const agents: Agent[] = [];
  const owners = new Set([agentId]);
  let n = 0;

  // As in a cluster, every agent of this file demands the same gateway secret.
  const gatewaySecret = randomBytes(24).toString("hex");
  const agentOptions = (extra: AgentOptionsInput = {}): AgentOptionsInput => {
    const options = agentOptionsOf(extra);
    gatewaySecrets.set(options.id as string, options.gatewaySecret as string);
    return options;
  };
  const processOptions: AgentOptionsInput = {
    redisUrl: redisUrl(),
    redisPrefix: prefix,
    id: agentId,
    address: "127.0.0.1",
    port: 0,
    isolateProcesses: 1,
    heartbeatIntervalMs: 200,
    heartbeatTtlMs: 1_000,
    resyncIntervalMs: 1_000,
    drainDelayMs: 100,
    restartBackoff: { initialMs: 500, maxMs: 5_000 },
  };
  const agentOptionsOf = (extra: AgentOptionsInput): AgentOptionsInput => ({
    gatewaySecret,
    ...processOptions,
    startupTimeoutMs: 15_000,
    domain: DOMAIN,
    logger: silentLogger,
    ...extra,
  });

  return {
    prefix,
    store,
    fleet,
    docker,
    agentId,
    agentOptions,
    processOptions,
    async startAgent(extra = {}) {
      const agent = new Agent(agentOptions(extra));
      if (extra.id) owners.add(extra.id);
      agents.push(agent);
      await agent.start();
      return agent;
    },
    async createService(body) {
      const name = await deployService(store, body, { domain: DOMAIN });
      return (await store.get("revisions", "default", name)) as Revision;
    },
    revision: (name) => store.get("revisions", "default", name),
    async desire(revision, runtime, agent = agentId) {
      const id = `${revision}-${++n}-${randomBytes(2).toString("hex")}`;
      await fleet.putDesired(agent, [{ id, namespace: "default", revision, runtime }]);
      return id;
    },
    async undesire(instanceId, agent = agentId) {
      await fleet.removeDesired(agent, [instanceId]);
    },
    endpoints: (revision) => fleet.readEndpoints("default", revision),
    ownerContainers: (owner = agentId) => containersOf(owner),
    async cleanup() {
      await Promise.all(agents.splice(0).map((a) => a.stop().catch(() => {})));
      await removeContainers(owners);
      // The install's bridge, when an agent stopped without a chance to remove it.
      const redis = connect();
      const clusterId = await redis.hget(clusterKey(prefix), "id").finally(() => redis.quit());
      if (clusterId) {
        await docker
          .getNetwork(`skiff-${clusterId}`)
          .remove()
          .catch(() => {});
      }
      await status.stop();
      await fleet.close();
      await store.close();
    },
  };
}

/**
 * A Service running the hello test image: `extra` merged into its template's
 * spec, `container` into its container.
 */
export function helloService(
  name: string,
  image: string,
  env: Record<string, string> = {},
  extra: Record<string, unknown> = {},
  container: Record<string, unknown> = {},
): Manifest {
  return serviceManifest(name, { image, env, container, spec: { timeoutSeconds: 30, ...extra } });
}

/** A worker Service: answers TARGET and K_REVISION from its env; `?spin` loops forever. */
export function workerService(name: string, target: string): Manifest {
  return serviceManifest(name, {
    language: "typescript",
    worker: [
      "export default {",
      "  fetch(request: Request, env: Record<string, string>): Response {",
      "    const url = new URL(request.url);",
      '    if (url.searchParams.has("spin")) for (;;) {}',
      '    return new Response("Hello " + env.TARGET + "! revision=" + env.K_REVISION + " service=" + env.K_SERVICE);',
      "  },",
      "};",
    ].join("\n"),
    env: { TARGET: target },
    spec: { timeoutSeconds: 30 },
  });
}

export { waitFor };

const AGENT_SCRIPT = fileURLToPath(new URL("./agent-process.ts", import.meta.url));

export interface AgentProcess {
  child: ChildProcess;
  /** Where the agent serves (its READY line). */
  url: string;
  exited: Promise<[number | null, NodeJS.Signals | null]>;
}

/**
 * An agent as a process of its own (agent-process.ts), for tests that kill it
 * or signal it; `detached` gives it its own process group, so that killing the
 * group takes its workerd along. Resolves once it serves; fails with its output
 * if it exits first, or is killed after 20 s without serving.
 */
export async function spawnAgentProcess(
  options: AgentOptionsInput,
  detached = false,
): Promise<AgentProcess> {
  const child = spawn(process.execPath, [AGENT_SCRIPT, JSON.stringify(options)], {
    stdio: ["ignore", "pipe", "pipe"],
    detached,
  });
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  let output = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      try {
        process.kill(detached ? -(child.pid as number) : (child.pid as number), "SIGKILL");
      } catch {}
      reject(new Error(`agent did not start:\n${output}`));
    }, 20_000);
    child.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      const m = /^READY (\S+)\n/m.exec(output);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    exited.then(([code, signal]) => {
      clearTimeout(timer);
      reject(new Error(`agent exited (${code ?? signal}) before it was ready:\n${output}`));
    }, reject);
  });
  return { child, url, exited };
}

/** One request to an endpoint as a gateway sends it (with the isolate header if any). */
export async function call(
  ep: Endpoint,
  path = "/",
): Promise<{ status: number; body: string; headers: Headers }> {
  const headers: Record<string, string> = { connection: "close" };
  if (ep.header) headers[ep.header.name] = ep.header.value;
  // As a gateway does for isolate endpoints (those with a header).
  const secret = gatewaySecrets.get(ep.agentId);
  if (ep.header && secret) headers[GATEWAY_AUTH_HEADER] = secret;
  const res = await fetch(`http://${ep.host}:${ep.port}${path}`, { headers });
  return { status: res.status, body: await res.text(), headers: res.headers };
}

export function condition(rev: Revision | undefined, type: string) {
  return rev?.status.conditions?.find((c) => c.type === type);
}
