/**
 * `skiff gateway`: the gateway tier as a process. Wires the caches (routing
 * tables, endpoints, agents), the per-revision dispatchers, the Redis side
 * (slots, activation, counters) and two HTTP servers: user traffic on
 * host:port (a plain node:http handler: the proxy path skips any framework's
 * Request/Response adaptation, which cost 10-20% of its throughput; plus the
 * raw 'upgrade' event for WebSockets) and /metrics, /healthz, /readyz on
 * adminHost:adminPort (Hono), so no user host can collide with them.
 */
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { createAdaptorServer } from "@hono/node-server";
import { Hono } from "hono";
import { Agent, type Dispatcher } from "undici";
import { ensureClusterIdentity } from "../src/cluster.ts";
import type { SkiffConfig } from "../src/config.ts";
import { parseRoutingEntry, type RoutingEntry, routingKeys } from "../src/control/routing.ts";
import { UnavailableError } from "../src/errors.ts";
import { parseRevisionRef } from "../src/fleet/keys.ts";
import { createLogger } from "../src/logging.ts";
import { createRegistry, type Registry, redisUpGauge } from "../src/metrics.ts";
import { openRedis } from "../src/redis/connect.ts";
import { RedisHealth } from "../src/redis/health.ts";
import { Activator } from "./activation.ts";
import { CounterPublisher } from "./counters.ts";
import { type QueueBudget, RevisionDispatcher } from "./dispatcher.ts";
import { ShuttingDownError } from "./errors.ts";
import { FleetCache } from "./fleet-cache.ts";
import { type GatewayMetrics, gatewayMetrics } from "./metrics.ts";
import { type GatewayOptions, type GatewayOptionsInput, parseGatewayOptions } from "./options.ts";
import { type ProxyContext, proxyHttp, replyText } from "./proxy.ts";
import { RouteTable } from "./routes.ts";
import { Slots } from "./slots.ts";
import { closeAfterWrite, proxyUpgrade } from "./upgrade.ts";
import { type ChannelWatch, watchChannels } from "./watch.ts";

export interface Gateway {
  readonly id: string;
  /** User traffic, e.g. http://127.0.0.1:8080 */
  readonly url: string;
  readonly port: number;
  /** /metrics, /healthz, /readyz */
  readonly adminUrl: string;
  readonly options: GatewayOptions;
  readonly registry: Registry;
  /** Re-read routing tables, endpoints and agents now. */
  resync(): Promise<void>;
  /** Requests this gateway holds waiting for the revision right now. */
  queued(namespace: string, revision: string): number;
  /** Publish counters now (normally every publishPeriodMs). */
  publishCounters(): Promise<void>;
  /** Stop taking requests, let those in flight finish (up to graceMs), release everything. */
  close(graceMs?: number): Promise<void>;
}

/** A revision no request touched for this long is forgotten (its counters restart). */
const IDLE_REVISION_MS = 5 * 60_000;

/** Gateway options from the global configuration (flags and env already merged in). */
export function gatewayOptionsFromConfig(config: SkiffConfig): GatewayOptionsInput {
  const { host, port, adminHost, adminPort, ...tuning } = config.gateway;
  const options: GatewayOptionsInput = {
    redisUrl: config.redisUrl,
    redisPrefix: config.redisPrefix,
    domain: config.domain,
    host,
    port,
    adminHost,
    adminPort,
  };
  // Only what the configuration sets: the rest keeps the gateway's defaults.
  for (const [key, value] of Object.entries(tuning)) {
    if (value !== undefined) (options as Record<string, unknown>)[key] = value;
  }
  return options;
}

export async function startGateway(input: GatewayOptionsInput = {}): Promise<Gateway> {
  const options = parseGatewayOptions(input);
  const logger =
    options.logger?.child({ component: "gateway", gateway: options.id }) ??
    createLogger({ component: "gateway" }).child({ gateway: options.id });
  const registry = options.registry ?? createRegistry({ component: "gateway", defaults: true });
  const prefix = options.redisPrefix;

  // Commands fail fast while Redis is away: slots retry, counters publish next period.
  // Connection errors are summed up by RedisHealth (one line per lost / back).
  const redis = await openRedis(options.redisUrl, { connectionName: "skiff-gateway" });
  const health = new RedisHealth(redis, logger, {
    whileLost: "serving from the routes and endpoints in memory until it is back",
    onBack: "resyncing routes and endpoints",
  });
  redisUpGauge(registry, () => health.up);
  // The background Redis work logs here: quiet while Redis is away.
  const redisLog = health.quietLogger;

  let clusterSecret = options.clusterSecret;
  if (clusterSecret === undefined) {
    try {
      clusterSecret = (await ensureClusterIdentity(redis, prefix)).secret;
    } catch (err) {
      redis.disconnect();
      throw err;
    }
  }

  const routes = new RouteTable();
  const rKeys = routingKeys(prefix);
  const dispatchers = new Map<string, RevisionDispatcher>();
  const slots = new Slots({
    redis,
    prefix,
    gatewayId: options.id,
    leaseMs: options.slotLeaseMs,
    logger: redisLog,
  });
  try {
    await slots.load();
  } catch (err) {
    redis.disconnect();
    throw new UnavailableError(
      `cannot load the gateway's scripts into Redis: ${(err as Error).message}; check that Redis is up at redis.url and that the gateway's Redis user may load scripts (skiff redis-acl prints the ACL)`,
    );
  }
  const activator = new Activator({
    redis,
    prefix,
    gatewayId: options.id,
    ttlMs: options.activationTtlMs,
    logger: redisLog,
  });
  const fleet = new FleetCache(redis, prefix, redisLog, (ref) => {
    dispatchers.get(ref)?.setEndpoints(fleet.endpoints(ref));
  });
  const metrics: GatewayMetrics = gatewayMetrics(registry, {
    *revisions() {
      for (const d of dispatchers.values()) {
        yield {
          namespace: d.namespace,
          revision: d.revision,
          queued: d.queued,
          inflight: d.stats.inflight,
        };
      }
    },
  });

  let closing = false;
  const budget: QueueBudget = { queued: 0, max: options.maxQueued };
  const dispatcherFor = (namespace: string, revision: string): RevisionDispatcher => {
    const ref = `${namespace}/${revision}`;
    let d = dispatchers.get(ref);
    if (!d) {
      d = new RevisionDispatcher({
        namespace,
        revision,
        queueDepth: options.queueDepth,
        budget,
        slots,
        activator,
        logger,
        redisUp: () => health.up,
        hooks: { coldStartServed: (s) => metrics.coldStartWait.observe(s) },
      });
      if (closing) d.close(new ShuttingDownError());
      dispatchers.set(ref, d);
      const eps = fleet.endpoints(ref);
      if (eps.length > 0) d.setEndpoints(eps);
    }
    return d;
  };

  const agentOptions = {
    keepAliveTimeout: 4_000,
    keepAliveMaxTimeout: 60_000,
    pipelining: 1,
    headersTimeout: 0,
    bodyTimeout: 0,
    connect: { timeout: 5_000 },
  };
  const http1 = new Agent(agentOptions);
  let h2c: Agent | undefined;
  const agentFor = (protocol: "http1" | "h2c"): Dispatcher => {
    if (protocol === "http1") return http1;
    // undici 8's Pool reads the top-level useH2c (not in its types), its Client h2Options.useH2c.
    const h2cOptions = {
      ...agentOptions,
      allowH2: true,
      useH2c: true,
      h2Options: { useH2c: true },
    };
    h2c ??= new Agent(h2cOptions);
    return h2c;
  };

  const ctx: ProxyContext = {
    routes,
    dispatcher: dispatcherFor,
    agentFor,
    metrics,
    trustForwarded: options.trustForwardedHeaders,
    maxBodyBytes: options.maxBodyBytes,
    gatewayAuth: clusterSecret,
    logger,
  };

  // --- Redis: routing tables and fleet, by pub/sub plus periodic resync.
  const refreshHost = async (host: string) => {
    try {
      const json = await redis.hget(rKeys.hosts, host);
      routes.set(host, json === null ? undefined : parseEntry(host, json));
    } catch (err) {
      redisLog.warn({ err, host }, "reading a routing entry failed; the next resync retries");
    }
  };
  const parseEntry = (host: string, json: string): RoutingEntry | undefined => {
    const entry = parseRoutingEntry(json);
    if (!entry) logger.warn({ host }, "ignoring malformed routing entry");
    return entry;
  };
  let watch: ChannelWatch | undefined;
  let synced = false;
  watch = await watchChannels({
    redis,
    channels: [rKeys.channel, ...fleet.channels, slots.channel],
    intervalMs: options.resyncIntervalMs,
    logger: redisLog,
    onMessage(channel, message) {
      if (channel === rKeys.channel) void refreshHost(message);
      else if (channel === slots.channel) {
        if (parseRevisionRef(message)) dispatchers.get(message)?.slotFreed();
      } else fleet.onMessage(channel, message);
    },
    async resync() {
      routes.replaceAllJson(await redis.hgetall(rKeys.hosts), parseEntry);
      await fleet.resync();
      synced = true;
    },
  }).catch((err: unknown) => {
    redis.disconnect();
    throw err;
  });

  // Agents are checked against Redis only; while it is away nothing is dropped.
  const agentTimer = setInterval(() => {
    if (!health.up) return;
    void fleet.checkAgents().catch((err: unknown) => redisLog.warn({ err }, "agent check failed"));
  }, options.agentCheckIntervalMs);
  agentTimer.unref();

  health.onChange((up) => {
    if (up) {
      fleet.redisBack();
      // Messages published while away were missed: read everything again.
      void watch?.resyncNow();
      return;
    }
    for (const d of dispatchers.values()) d.redisLost();
  });

  slots.start();
  const publisher = new CounterPublisher({
    redis,
    prefix,
    gatewayId: options.id,
    periodMs: options.publishPeriodMs,
    ttlMs: options.counterTtlMs,
    logger: redisLog,
    source: {
      *revisions() {
        for (const d of dispatchers.values()) {
          yield { ref: d.ref, stats: d.stats, instances: () => d.instances() };
        }
      },
    },
    onTick() {
      for (const [ref, d] of dispatchers) {
        d.tick();
        if (d.queued === 0 && d.stats.idleFor(IDLE_REVISION_MS)) dispatchers.delete(ref);
      }
    },
  });
  publisher.start();

  // --- User traffic.
  const server = createServer(
    {
      // Whole-request time is the revision's (timeoutSeconds); uploads may take long.
      requestTimeout: 0,
      // Set explicitly: with requestTimeout 0 Node would leave headers unbounded (slowloris).
      headersTimeout: options.headersTimeoutMs,
      // Node checks headersTimeout on this period; keep it well under the timeout.
      connectionsCheckingInterval: Math.max(50, Math.min(1_000, options.headersTimeoutMs / 4)),
      keepAliveTimeout: options.keepAliveTimeoutMs,
      maxHeaderSize: options.maxHeaderBytes,
    },
    (req, res) => {
      // The proxy consumes request bodies itself (streaming them to the instance).
      proxyHttp(ctx, req, res).catch((err: unknown) => {
        logger.error({ err }, "gateway error while proxying");
        replyText(res, 500, "internal gateway error");
      });
    },
  );
  server.maxConnections = options.maxConnections;
  const fdLimit = openFileLimit();
  if (fdLimit !== undefined && options.maxConnections > fdLimit / 2) {
    logger.warn(
      { maxConnections: options.maxConnections, openFileLimit: fdLimit },
      "maxConnections is above half the process's open-file limit: a connection flood could exhaust descriptors the rest of the process needs; lower maxConnections or raise ulimit -n",
    );
  }
  const upgrades = new Set<Duplex>();
  server.on("upgrade", (req, socket: Duplex, head: Buffer) => {
    if (closing) {
      socket.destroy();
      return;
    }
    void proxyUpgrade(ctx, req, socket, head, (s) => {
      upgrades.add(s);
      s.once("close", () => upgrades.delete(s));
    });
  });
  server.on("clientError", (err: Error & { code?: string }, socket: Duplex) => {
    // A request Node's parser refused (malformed, oversized head, headers too slow):
    // answered at once on that connection only; never routed.
    if (!socket.writable || err.code === "ECONNRESET") {
      socket.destroy();
      return;
    }
    const status =
      err.code === "HPE_HEADER_OVERFLOW"
        ? "431 Request Header Fields Too Large"
        : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
          ? "408 Request Timeout"
          : "400 Bad Request";
    metrics.requests.inc({ code: status.slice(0, 3), namespace: "", service: "" });
    socket.write(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    closeAfterWrite(socket);
  });

  // --- Admin: metrics and probes.
  const admin = new Hono();
  admin.get("/healthz", (c) => c.text("ok\n"));
  // Ready means "can serve": routes were loaded once. A Redis outage does not
  // stop serving (routes and endpoints are in memory), so it does not count here.
  admin.get("/readyz", (c) => {
    const ready = synced && !closing;
    return c.text(ready ? "ready\n" : "not ready\n", ready ? 200 : 503);
  });
  admin.get("/metrics", async (c) => {
    c.header("content-type", registry.contentType);
    return c.body(await registry.metrics());
  });
  const adminServer = createAdaptorServer({ fetch: admin.fetch }) as Server;

  const teardown = async () => {
    clearInterval(agentTimer);
    slots.stop();
    await watch?.stop();
    await publisher.stop();
    await Promise.allSettled([http1.close(), h2c?.close()]);
    health.close();
    redis.disconnect();
  };

  try {
    await listen(server, options.host, options.port, options.reusePort);
    await listen(adminServer, options.adminHost, options.adminPort);
  } catch (err) {
    server.close();
    adminServer.close();
    await teardown();
    throw err;
  }
  const port = (server.address() as AddressInfo).port;
  const adminPort = (adminServer.address() as AddressInfo).port;
  const url = `http://${hostForUrl(options.host)}:${port}`;
  const adminUrl = `http://${hostForUrl(options.adminHost)}:${adminPort}`;
  logger.info({ url, adminUrl, domain: options.domain }, "gateway listening");

  let closed: Promise<void> | undefined;
  return {
    id: options.id,
    url,
    port,
    adminUrl,
    options,
    registry,
    resync: () => watch?.resyncNow() ?? Promise.resolve(),
    queued: (namespace, revision) => dispatchers.get(`${namespace}/${revision}`)?.queued ?? 0,
    publishCounters: () => publisher.publish(),
    close(graceMs = 10_000) {
      closed ??= (async () => {
        closing = true;
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        for (const d of dispatchers.values()) d.close(new ShuttingDownError());
        // Let requests in flight finish, then cut what is left.
        const deadline = Date.now() + graceMs;
        while (
          Date.now() < deadline &&
          [...dispatchers.values()].some((d) => d.stats.inflight > 0)
        ) {
          await new Promise((r) => setTimeout(r, 20));
        }
        server.closeAllConnections();
        for (const s of upgrades) s.destroy();
        await stopped;
        await new Promise<void>((resolve) => adminServer.close(() => resolve()));
        adminServer.closeAllConnections();
        await teardown();
        logger.info("gateway stopped");
      })();
      return closed;
    },
  };
}

/** The soft RLIMIT_NOFILE of this process (Linux), if it can be read. */
function openFileLimit(): number | undefined {
  try {
    const line = /^Max open files\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    return line ? Number(line[1]) : undefined;
  } catch {
    return undefined;
  }
}

function hostForUrl(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

function listen(server: Server, host: string, port: number, reusePort = false): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) =>
      reject(new Error(`cannot listen on ${host}:${port}: ${err.message}`));
    server.once("error", onError);
    // reusePort: several processes (the workers of gateway/cluster.ts) bind the
    // same port with SO_REUSEPORT and the kernel spreads connections over them.
    server.listen({ port, host, reusePort }, () => {
      server.off("error", onError);
      resolve();
    });
  });
}
