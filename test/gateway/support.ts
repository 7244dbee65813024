/**
 * Shared parts of the gateway tests: real Redis (one prefix per file), real
 * HTTP backends on 127.0.0.1, gateways in-process or as child processes, and a
 * "scaler" the tests play by hand: it writes routing tables (through the real
 * derivation and writer of src/control/routing.ts) and, as the agent would,
 * registers agents and publishes endpoints (through src/fleet).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import type { Redis } from "ioredis";
import { Registry } from "prom-client";
import { Agent, request } from "undici";
import type { GatewayOptionsInput } from "../../gateway/options.ts";
import { type Gateway, startGateway } from "../../gateway/server.ts";
import { publishRouting, routingTables } from "../../src/control/routing.ts";
import { createFleet, type Fleet } from "../../src/fleet/fleet.ts";
import type { AgentRecord, Endpoint } from "../../src/fleet/types.ts";
import { silentLogger } from "../../src/logging.ts";
import type { Revision, Route, TrafficTarget } from "../../src/model/types.ts";
import { connectRedis } from "../../src/redis/connect.ts";
import { connect, redisUrl } from "../support/redis.ts";
import { waitFor } from "../support/wait.ts";

export const DOMAIN = "localhost";

// ---------------------------------------------------------------- backends

export interface Backend {
  host: string;
  port: number;
  /** Requests in flight right now / the most ever at once. */
  inflight: number;
  maxInflight: number;
  hits: number;
  /** Headers of every request received, in arrival order. */
  seen: IncomingMessage["headers"][];
  server: Server;
  close(): Promise<void>;
}

export type Handler = (req: IncomingMessage, res: ServerResponse, backend: Backend) => void;

/** By default answers `{name}` with the request's headers as JSON. */
export async function startBackend(
  name: string,
  handler?: Handler,
  host = "127.0.0.1",
): Promise<Backend> {
  const server = createServer((req, res) => {
    backend.hits++;
    backend.inflight++;
    backend.maxInflight = Math.max(backend.maxInflight, backend.inflight);
    backend.seen.push(req.headers);
    let counted = true;
    const done = () => {
      if (counted) backend.inflight--;
      counted = false;
    };
    res.once("finish", done);
    res.once("close", done);
    if (handler) handler(req, res, backend);
    else {
      req.resume();
      res.setHeader("x-backend", name);
      res.end(JSON.stringify({ name, headers: req.headers, url: req.url }));
    }
  });
  // Requests only come once it listens, when `backend` is set.
  const backend = await listenBackend(server, host);
  return backend;
}

/**
 * `server` listening on an ephemeral port of `host`, as a Backend with its
 * counters at zero (the server's handlers count); close() ends open
 * connections first, so that it never waits on a client.
 */
export async function listenBackend(server: Server, host: string): Promise<Backend> {
  const sockets = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  server.listen(0, host);
  await once(server, "listening");
  return {
    host,
    port: (server.address() as AddressInfo).port,
    inflight: 0,
    maxInflight: 0,
    hits: 0,
    seen: [],
    server,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------- the scaler's part

export interface TargetSpec {
  revision: string;
  percent?: number;
  tag?: string;
  containerConcurrency?: number;
  timeoutSeconds?: number;
  responseStartTimeoutSeconds?: number;
  idleTimeoutSeconds?: number;
}

export function revisionObject(namespace: string, t: TargetSpec): Revision {
  return {
    apiVersion: "serving.knative.dev/v1",
    kind: "Revision",
    metadata: {
      name: t.revision,
      namespace,
      uid: randomBytes(8).toString("hex"),
      generation: 1,
      resourceVersion: "1",
      creationTimestamp: new Date().toISOString(),
    },
    spec: {
      containerConcurrency: t.containerConcurrency ?? 0,
      timeoutSeconds: t.timeoutSeconds ?? 30,
      ...(t.responseStartTimeoutSeconds === undefined
        ? {}
        : { responseStartTimeoutSeconds: t.responseStartTimeoutSeconds }),
      ...(t.idleTimeoutSeconds === undefined ? {} : { idleTimeoutSeconds: t.idleTimeoutSeconds }),
      containers: [{ image: "example/hello" }],
    },
    status: {},
  };
}

export function routeObject(namespace: string, name: string, traffic: TrafficTarget[]): Route {
  return {
    apiVersion: "serving.knative.dev/v1",
    kind: "Route",
    metadata: {
      name,
      namespace,
      uid: randomBytes(8).toString("hex"),
      generation: 1,
      resourceVersion: "1",
      creationTimestamp: new Date().toISOString(),
    },
    spec: { traffic },
    status: { traffic },
  };
}

export const AGENT_ID = "agent-test";

function agentRecord(id: string): AgentRecord {
  return {
    id,
    address: "127.0.0.1",
    runtimes: ["container", "isolate"],
    capacity: { cpuMillis: 2000, memoryBytes: 2 ** 31, maxInstances: 100 },
    labels: {},
    startedAt: new Date().toISOString(),
    heartbeatAt: Date.now(),
    version: "test",
  };
}

export class TestScaler {
  readonly prefix: string;
  readonly redis: Redis;
  readonly fleet: Fleet;
  #n = 0;

  /** `url`: another Redis than the suite's (e.g. one a test stops and starts). */
  constructor(prefix: string, url?: string) {
    this.prefix = prefix;
    if (url === undefined) this.redis = connect();
    else {
      this.redis = connectRedis(url, { maxRetriesPerRequest: 2 });
      // Tests that stop this Redis expect errors meanwhile.
      this.redis.on("error", () => {});
    }
    this.fleet = createFleet({ url: url ?? redisUrl(), prefix });
  }

  /**
   * Heartbeat the agent every `everyMs` with a record living `ttlMs`, as an
   * agent does (announcing when it rejoined after its record expired); returns
   * a function that stops it.
   */
  heartbeat(ttlMs: number, everyMs: number, id = AGENT_ID): () => void {
    let stopped = false;
    const loop = async () => {
      while (!stopped) {
        try {
          const { rejoined } = await this.fleet.heartbeat(agentRecord(id), ttlMs);
          if (rejoined) await this.fleet.heartbeat(agentRecord(id), ttlMs, { announce: true });
        } catch {
          // Redis away: the next beat retries.
        }
        // The beat's period, as an agent's timer: not a wait for state.
        await new Promise((r) => setTimeout(r, everyMs));
      }
    };
    void loop();
    return () => {
      stopped = true;
    };
  }

  /** Register an agent whose record lives ttlMs. */
  async agent(id = AGENT_ID, ttlMs = 600_000): Promise<void> {
    await this.fleet.registerAgent(agentRecord(id), ttlMs);
  }

  /** Route `service` (its main host and tag hosts) through the real derivation and writer. */
  async route(namespace: string, service: string, targets: TargetSpec[]): Promise<string[]> {
    const revisions = targets.map((t) => revisionObject(namespace, t));
    const traffic: TrafficTarget[] = targets.map((t) => ({
      revisionName: t.revision,
      percent: t.percent ?? 0,
      ...(t.tag === undefined ? {} : { tag: t.tag }),
    }));
    const tables = routingTables(routeObject(namespace, service, traffic), revisions, DOMAIN);
    return publishRouting(this.redis, this.prefix, tables);
  }

  /** Publish a ready endpoint for a backend; returns its instance id. */
  async endpoint(
    namespace: string,
    revision: string,
    at: { host: string; port: number },
    extra: Partial<Endpoint> = {},
  ): Promise<string> {
    const instanceId = extra.instanceId ?? `${revision}-i${++this.#n}`;
    await this.fleet.publishEndpoint(namespace, revision, {
      instanceId,
      agentId: AGENT_ID,
      runtime: "container",
      host: at.host,
      port: at.port,
      protocol: "http1",
      containerConcurrency: 0,
      readyAt: Date.now(),
      ...extra,
    });
    return instanceId;
  }

  withdraw(namespace: string, revision: string, instanceId: string): Promise<boolean> {
    return this.fleet.withdrawEndpoint(namespace, revision, instanceId);
  }

  async close(): Promise<void> {
    await this.fleet.close();
    this.redis.disconnect();
  }
}

// ---------------------------------------------------------------- gateways

export function testGatewayOptions(
  prefix: string,
  overrides: GatewayOptionsInput = {},
): GatewayOptionsInput {
  return {
    redisUrl: redisUrl(),
    redisPrefix: prefix,
    port: 0,
    adminPort: 0,
    domain: DOMAIN,
    publishPeriodMs: 100,
    counterTtlMs: 2_000,
    resyncIntervalMs: 2_000,
    agentCheckIntervalMs: 100,
    ...overrides,
  };
}

export function startTestGateway(
  prefix: string,
  overrides: GatewayOptionsInput = {},
): Promise<Gateway> {
  return startGateway({
    logger: silentLogger,
    registry: new Registry(),
    ...testGatewayOptions(prefix, overrides),
  });
}

export interface GatewayProcess {
  id: string;
  url: string;
  adminUrl: string;
  child: ChildProcess;
  /** SIGTERM and wait for the exit. */
  stop(): Promise<void>;
  /** SIGKILL: a crash, nothing cleaned up. */
  kill(): Promise<void>;
}

const PROCESS_MAIN = join(dirname(fileURLToPath(import.meta.url)), "gateway-process.ts");

/** A gateway in its own Node process (as `skiff gateway` runs), sharing Redis. */
export async function spawnGateway(
  prefix: string,
  overrides: Omit<GatewayOptionsInput, "logger" | "registry"> = {},
): Promise<GatewayProcess> {
  const child = spawn(
    process.execPath,
    [PROCESS_MAIN, JSON.stringify(testGatewayOptions(prefix, overrides))],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  const lines = createInterface({ input: child.stdout as NonNullable<ChildProcess["stdout"]> });
  const exited = once(child, "exit");
  const first = await Promise.race([
    once(lines, "line").then(([line]) => line as string),
    exited.then(([code]) => {
      throw new Error(`gateway process exited with ${code} before listening`);
    }),
  ]);
  const info = JSON.parse(first) as { id: string; url: string; adminUrl: string };
  const wait = async () => {
    if (child.exitCode === null && child.signalCode === null) await exited;
  };
  return {
    ...info,
    child,
    async stop() {
      child.kill("SIGTERM");
      await wait();
    },
    async kill() {
      child.kill("SIGKILL");
      await wait();
    },
  };
}

// ---------------------------------------------------------------- clients

export const client = new Agent({ keepAliveTimeout: 1_000, connections: 256 });

export interface Answer {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

/** One request to a gateway for a host. */
export async function hit(
  gatewayUrl: string,
  host: string,
  options: {
    path?: string;
    method?: string;
    headers?: Record<string, string>;
    body?: string | Buffer | AsyncIterable<Buffer>;
  } = {},
): Promise<Answer> {
  const res = await request(`${gatewayUrl}${options.path ?? "/"}`, {
    method: (options.method ?? "GET") as "GET",
    headers: { ...options.headers, host },
    body:
      options.body === undefined ||
      typeof options.body === "string" ||
      Buffer.isBuffer(options.body)
        ? options.body
        : Readable.from(options.body),
    dispatcher: client,
    headersTimeout: 60_000,
    bodyTimeout: 60_000,
  });
  return { status: res.statusCode, body: await res.body.text(), headers: res.headers };
}

/** Whether a process with this pid exists (kill(pid, 0); an unreaped zombie still does). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function host(service: string, namespace = "default", tag?: string): string {
  return tag ? `${tag}-${service}.${namespace}.${DOMAIN}` : `${service}.${namespace}.${DOMAIN}`;
}

/** Poll until `check` holds, or fail after timeoutMs. */
export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  await waitFor(what, check, timeoutMs, 10);
}
