/**
 * `skiff gateway`: the gateway tier as a process. Wires the caches (routing
 * tables, endpoints, agents) and their sync with Redis (sync.ts), the
 * per-revision dispatchers, the Redis side (slots, activation, counters) and
 * two HTTP servers: user traffic on host:port (traffic-server.ts) and
 * /metrics, /healthz, /readyz on adminHost:adminPort (admin.ts), so no user
 * host can collide with them.
 */
import type { AddressInfo } from "node:net";
import { ensureClusterIdentity } from "../src/cluster.ts";
import type { SkiffConfig } from "../src/config.ts";
import { UnavailableError } from "../src/errors.ts";
import { createLogger } from "../src/logging.ts";
import { createRegistry, type Registry, redisUpGauge } from "../src/metrics.ts";
import { openRedis } from "../src/redis/connect.ts";
import { RedisHealth } from "../src/redis/health.ts";
import { Activator } from "./activation.ts";
import { createAdminServer } from "./admin.ts";
import { CounterPublisher } from "./counters.ts";
import { RevisionDispatcher } from "./dispatcher.ts";
import { ShuttingDownError } from "./errors.ts";
import { FleetCache } from "./fleet-cache.ts";
import { hostForUrl, listen } from "./listen.ts";
import { type GatewayMetrics, gatewayMetrics } from "./metrics.ts";
import { type GatewayOptions, type GatewayOptionsInput, parseGatewayOptions } from "./options.ts";
import type { ProxyContext } from "./proxy.ts";
import { QueueBudget } from "./queue-budget.ts";
import { RouteTable } from "./routes.ts";
import { Slots } from "./slots.ts";
import { type RedisSync, startRedisSync } from "./sync.ts";
import { createTrafficServer } from "./traffic-server.ts";
import { createUpstreamAgents } from "./upstream-agents.ts";

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
    namespaceQueued: {
      default: config.quotas.queuedRequests,
      namespaces: Object.fromEntries(
        Object.entries(config.quotas.namespaces).flatMap(([ns, q]) =>
          q.queuedRequests === undefined ? [] : [[ns, q.queuedRequests]],
        ),
      ),
    },
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
  const budget = new QueueBudget(options.maxQueued, options.namespaceQueued);
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

  const upstreams = createUpstreamAgents();

  const ctx: ProxyContext = {
    routes,
    dispatcher: dispatcherFor,
    upstreams,
    metrics,
    trustForwarded: options.trustForwardedHeaders,
    maxBodyBytes: options.maxBodyBytes,
    gatewayAuth: clusterSecret,
    logger,
  };

  // --- Redis: routing tables and fleet, by pub/sub plus periodic resync.
  const sync: RedisSync = await startRedisSync({
    redis,
    prefix,
    health,
    routes,
    fleet,
    dispatchers,
    slotsChannel: slots.channel,
    resyncIntervalMs: options.resyncIntervalMs,
    agentCheckIntervalMs: options.agentCheckIntervalMs,
    logger,
    redisLog,
  }).catch((err: unknown) => {
    redis.disconnect();
    throw err;
  });

  health.onChange((up) => {
    if (up) {
      fleet.redisBack();
      // Messages published while away were missed: read everything again.
      void sync.resyncNow();
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
    // The dispatchers themselves, not an object made for each: with thousands
    // of revisions every period would otherwise leave that much garbage.
    source: { revisions: () => dispatchers.values() },
    onTick() {
      for (const d of dispatchers.values()) {
        d.tick();
        if (d.queued === 0 && d.stats.idleFor(IDLE_REVISION_MS)) dispatchers.delete(d.ref);
      }
    },
  });
  publisher.start();

  // --- User traffic, and the admin port.
  const { server, upgrades } = createTrafficServer(options, ctx, () => closing);
  // Ready means "can serve": routes were loaded once.
  const adminServer = createAdminServer(registry, () => sync.synced && !closing);

  const teardown = async () => {
    slots.stop();
    await sync.stop();
    await publisher.stop();
    await upstreams.close();
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
    resync: () => sync.resyncNow(),
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
