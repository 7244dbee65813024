import type { Redis } from "ioredis";
import { Registry } from "prom-client";
import { Agent as HttpAgent, request } from "undici";
import type { AgentOptionsInput } from "../../agent/options.ts";
import { type RunningAgent, startAgent } from "../../agent/server.ts";
import { type Gateway, startGateway } from "../../gateway/server.ts";
import { type RunningScaler, type StartScalerOptions, startScaler } from "../../scaler/server.ts";
import { parseRoutingEntry, type RoutingEntry, routingKeys } from "../../src/control/routing.ts";
import type { Fleet } from "../../src/fleet/fleet.ts";
import { createLogger, type Logger, silentLogger } from "../../src/logging.ts";
import { startTestApi, type TestApi } from "../support/api.ts";
import { type Manifest, serviceManifest } from "../support/fixtures.ts";
import { fleetOn, redisUrl } from "../support/redis.ts";
import { waitFor } from "../support/wait.ts";

export const DOMAIN = "localhost";

/** Shortened global autoscaler settings (see the header). */
export const SHORT_AUTOSCALER = {
  stableWindow: "6s",
  scaleToZeroGracePeriod: "2s",
  tickInterval: "500ms",
} as const;

/** SKIFF_TEST_SCALER_LOG=debug|info|warn shows the scaler's own log while debugging a test. */
const scalerLogger = (): Logger => {
  const level = process.env.SKIFF_TEST_SCALER_LOG;
  return level ? createLogger({ component: "scaler", level }) : silentLogger;
};

export function startTestScaler(
  prefix: string,
  extra: StartScalerOptions = {},
): Promise<RunningScaler> {
  return startScaler({
    redisUrl: redisUrl(),
    redisPrefix: prefix,
    port: 0,
    domain: DOMAIN,
    autoscaler: SHORT_AUTOSCALER,
    scrapeIntervalMs: 500,
    resyncIntervalMs: 2_000,
    leaseMs: 1_000,
    // The test agents' heartbeat TTL.
    agentGraceMs: 1_000,
    logger: scalerLogger(),
    registry: new Registry(),
    ...extra,
  });
}

/** The test agents' options that an agent process (spawnAgentProcess) takes too, as JSON. */
export function testAgentOptions(prefix: string, id: string): AgentOptionsInput {
  return {
    redisUrl: redisUrl(),
    redisPrefix: prefix,
    id,
    address: "127.0.0.1",
    port: 0,
    containers: false,
    isolateProcesses: 1,
    heartbeatIntervalMs: 200,
    heartbeatTtlMs: 1_000,
    resyncIntervalMs: 1_000,
    drainDelayMs: 200,
    domain: DOMAIN,
  };
}

export function startTestAgent(
  prefix: string,
  id: string,
  extra: Parameters<typeof startAgent>[0] = {},
): Promise<RunningAgent> {
  return startAgent({
    ...testAgentOptions(prefix, id),
    startupTimeoutMs: 15_000,
    restartBackoff: { initialMs: 500, maxMs: 5_000 },
    logger: silentLogger,
    registry: new Registry(),
    ...extra,
  });
}

export interface TestCluster {
  /** A plain connection and a Fleet on the cluster's prefix, for what tests read. */
  redis: Redis;
  fleet: Fleet;
  api: TestApi;
  /** The agents started so far; a test may push more, stop() stops them too. */
  agents: RunningAgent[];
  gateway: Gateway;
  scaler: RunningScaler;
  /** Stop every part, the last started first. */
  stop(): Promise<void>;
}

/**
 * The closed loop in this process over one prefix, as the loop tests run it:
 * the deploy API, the agents (id -> options, started together), a gateway and
 * a scaler that leads by the time this resolves. A part that fails to start
 * stops the ones before it.
 */
export async function startTestCluster(
  prefix: string,
  options: {
    api?: Omit<Parameters<typeof startTestApi>[0], "prefix">;
    agents: Record<string, Parameters<typeof startTestAgent>[2]>;
    scaler?: StartScalerOptions;
  },
): Promise<TestCluster> {
  const { fleet, redis, close } = fleetOn(prefix);
  const agents: RunningAgent[] = [];
  let api: TestApi | undefined;
  let gateway: Gateway | undefined;
  let scaler: RunningScaler | undefined;
  const stop = async () => {
    await scaler?.stop();
    await gateway?.close(500);
    await Promise.all(agents.map((a) => a.stop()));
    await api?.close();
    await close();
  };
  try {
    api = await startTestApi({ ...options.api, prefix });
    const started = await Promise.allSettled(
      Object.entries(options.agents).map(([id, extra]) => startTestAgent(prefix, id, extra)),
    );
    for (const s of started) if (s.status === "fulfilled") agents.push(s.value);
    for (const s of started) if (s.status === "rejected") throw s.reason;
    gateway = await startTestGateway(prefix);
    scaler = await startTestScaler(prefix, options.scaler);
    await scaler.whenLeading();
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
  return { redis, fleet, api, agents, gateway, scaler, stop };
}

export function startTestGateway(prefix: string): Promise<Gateway> {
  return startGateway({
    redisUrl: redisUrl(),
    redisPrefix: prefix,
    port: 0,
    adminPort: 0,
    domain: DOMAIN,
    resyncIntervalMs: 1_000,
    logger: silentLogger,
    registry: new Registry(),
  });
}

/**
 * A worker Service answering "Hello {TARGET}! ({K_REVISION})"; `?sleep=ms`
 * waits before answering (a slow handler for load tests).
 */
export function workerService(
  name: string,
  options: { target?: string; annotations?: Record<string, string> } = {},
): Manifest {
  return serviceManifest(name, {
    worker: [
      "export default {",
      "  async fetch(request, env) {",
      "    const ms = Number(new URL(request.url).searchParams.get('sleep') ?? 0);",
      "    if (ms > 0) await new Promise((r) => setTimeout(r, ms));",
      "    return new Response('Hello ' + env.TARGET + '! (' + env.K_REVISION + ')');",
      "  },",
      "};",
    ].join("\n"),
    env: { TARGET: options.target ?? "World" },
    annotations: options.annotations,
    spec: { timeoutSeconds: 30 },
  });
}

/** Every published host -> its entry. */
export async function routingHosts(
  redis: Redis,
  prefix: string,
): Promise<Record<string, RoutingEntry>> {
  const all = await redis.hgetall(routingKeys(prefix).hosts);
  const out: Record<string, RoutingEntry> = {};
  for (const [host, json] of Object.entries(all)) {
    const e = parseRoutingEntry(json);
    if (e) out[host] = e;
  }
  return out;
}

/** host -> "revision:percent" list, compact for assertions. */
export async function routingSummary(
  redis: Redis,
  prefix: string,
): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const [host, e] of Object.entries(await routingHosts(redis, prefix))) {
    out[host] = e.targets.map((t) => `${t.revision}:${t.percent}`);
  }
  return out;
}

/**
 * Wait until the scaler published `host` (optionally with targets passing
 * `check`), then have the gateway re-read its tables: it applies a routing
 * message asynchronously, so a request right after the publish could race it.
 */
export async function waitRouted(
  redis: Redis,
  prefix: string,
  gateway: Gateway,
  host: string,
  check: (targets: string[]) => boolean = () => true,
  timeoutMs = 15_000,
): Promise<string[]> {
  const targets = await waitFor(
    `${host} routed`,
    async () => {
      const t = (await routingSummary(redis, prefix))[host];
      return t && check(t) ? t : undefined;
    },
    timeoutMs,
  );
  await gateway.resync();
  return targets;
}

export { waitFor };

const http = new HttpAgent({ connections: 256 });

export interface Answer {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

/** One request through a gateway with the given Host. */
export async function hit(gatewayUrl: string, host: string, path = "/"): Promise<Answer> {
  const res = await request(`${gatewayUrl}${path}`, {
    headers: { host },
    dispatcher: http,
    headersTimeout: 60_000,
    bodyTimeout: 60_000,
  });
  return { status: res.statusCode, body: await res.body.text(), headers: res.headers };
}

export const serviceHost = (service: string, tag?: string) =>
  tag ? `${tag}-${service}.default.${DOMAIN}` : `${service}.default.${DOMAIN}`;
