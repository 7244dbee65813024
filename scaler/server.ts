/**
 * `skiff scaler`: the scaler as a process. Several may run; they contend for
 * a Redis lease (leader.ts) and only the holder acts (scaler.ts). Leadership
 * won starts a fresh ScalerLoop; leadership lost stops it at once (and the
 * lease check in every desired-set write refuses anything still on its way).
 * /healthz, /readyz and /metrics are served on host:port whatever the role.
 */
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import type { Redis } from "ioredis";
import { Fleet } from "../src/fleet/fleet.ts";
import { createLogger, type Logger } from "../src/logging.ts";
import { createRegistry, type Registry, redisUpGauge } from "../src/metrics.ts";
import { openRedis } from "../src/redis/connect.ts";
import { RedisHealth } from "../src/redis/health.ts";
import { handleShutdownSignals } from "../src/signals.ts";
import { createRedisStore, type RedisStore } from "../src/store/index.ts";
import { type LeaderElection, type Leadership, startLeaderElection } from "./leader.ts";
import { scalerMetrics } from "./metrics.ts";
import { parseScalerOptions, type ScalerOptions, type ScalerOptionsInput } from "./options.ts";
import { type RevisionScaleState, ScalerLoop } from "./scaler.ts";

export interface StartScalerOptions extends ScalerOptionsInput {
  /** Stop on SIGTERM and SIGINT (the CLI sets this). Default false. */
  handleSignals?: boolean;
}

export interface RunningScaler {
  readonly id: string;
  readonly options: ScalerOptions;
  /** http://host:port of /healthz, /readyz, /metrics. */
  readonly adminUrl: string;
  readonly registry: Registry;
  readonly isLeader: boolean;
  readonly leadership: Leadership | undefined;
  /** Resolves once this scaler leads and its first pass ran. */
  whenLeading(): Promise<void>;
  /** Leader only: run a scaling pass now (no-op on a standby). */
  tickNow(): Promise<void>;
  /** Leader only: read the gateways' counters now. */
  scrapeNow(): Promise<void>;
  /** Leader only: re-read every object and reconcile every route now. */
  resyncNow(): Promise<void>;
  /** Leader only: run revision garbage collection now. */
  collectNow(): Promise<void>;
  /** Leader only: the last pass's numbers for "{ns}/{rev}". */
  revisionState(ref: string): RevisionScaleState | undefined;
  /**
   * Stop acting and close. `release: false` keeps the lease until it expires
   * (what a crash looks like to the standby).
   */
  stop(options?: { release?: boolean }): Promise<void>;
}

/** The lease key of an install's scalers. */
export const leaderKey = (prefix: string) => `${prefix}scaler:leader`;

export async function startScaler(input: StartScalerOptions = {}): Promise<RunningScaler> {
  const { handleSignals = false, ...rest } = input;
  const options = parseScalerOptions(rest);
  const log: Logger = (options.logger ?? createLogger({ component: "scaler" })).child({
    scaler: options.id,
  });
  const registry = options.registry ?? createRegistry({ component: "scaler", defaults: true });
  const metrics = scalerMetrics(registry);
  metrics.leader.set(0);

  // No `logger` here: RedisHealth logs an outage once, not each reconnect attempt.
  const connect = (name: string) => openRedis(options.redisUrl, { connectionName: name });
  const redis = await connect("skiff-scaler");
  const health = new RedisHealth(redis, log, { whileLost: "no scaling until it is back" });
  redisUpGauge(registry, () => health.up);
  // The background Redis work logs here: quiet while Redis is away.
  const redisLog = health.quietLogger;
  let leaseRedis: Redis;
  try {
    leaseRedis = await connect("skiff-scaler:lease");
  } catch (err) {
    health.close();
    redis.disconnect();
    throw err;
  }
  // The lease connection fails with the other one: its attempts are debug only.
  leaseRedis.on("error", (err: Error & { code?: string }) =>
    log.debug({ err: err.code ?? err.message }, "lease connection error"),
  );
  const store: RedisStore = await createRedisStore({
    redis,
    prefix: options.redisPrefix,
    logger: redisLog,
  });
  const fleet = new Fleet({ redis, prefix: options.redisPrefix, logger: redisLog });

  let loop: ScalerLoop | undefined;
  let starting: Promise<void> | undefined;
  let leading = false;
  const waiters: (() => void)[] = [];
  let closed = false;

  const onElected = async (l: Leadership) => {
    const next = new ScalerLoop({
      options,
      redis,
      store,
      fleet,
      leaseKey: leaderKey(options.redisPrefix),
      leaseValue: () => (election.leadership?.value === l.value ? l.value : undefined),
      metrics,
      logger: redisLog.child({ fencingToken: l.fencingToken }),
      redisUp: () => health.up,
      statusHoldMs: options.statusHoldMs,
    });
    loop = next;
    metrics.leader.set(1);
    starting = next.start().then(
      () => {
        if (loop !== next) return;
        leading = true;
        for (const w of waiters.splice(0)) w();
        log.info({ fencingToken: l.fencingToken }, "leading: scaling");
      },
      (err: unknown) => log.error({ err }, "starting the scaler loop failed"),
    );
    await starting;
  };
  const onDeposed = async () => {
    metrics.leader.set(0);
    leading = false;
    const current = loop;
    loop = undefined;
    await current?.stop();
  };

  const election: LeaderElection = startLeaderElection({
    redis: leaseRedis,
    key: leaderKey(options.redisPrefix),
    id: options.id,
    leaseMs: options.leaseMs,
    onElected,
    onDeposed,
    logger: redisLog,
  });

  const app = new Hono();
  app.get("/healthz", (c) => c.text("ok"));
  // Ready = this process is doing its job. A Redis blip is not a reason for a
  // probe to restart or drop it: it resumes by itself, and the body says so.
  app.get("/readyz", (c) => {
    if (election.isLeader && !leading) return c.text("not ready: leader starting", 503);
    const role = election.isLeader ? "leader" : "standby";
    return c.text(
      health.up ? `ok (${role})` : `ok (${role}; redis unreachable: no scaling until it is back)`,
    );
  });
  app.get("/metrics", async (c) => {
    c.header("content-type", registry.contentType);
    return c.body(await registry.metrics());
  });
  const server = serve({ fetch: app.fetch, hostname: options.host, port: options.port });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("listening", resolve);
      server.once("error", (err) =>
        reject(
          new Error(`scaler cannot listen on ${options.host}:${options.port}: ${err.message}`),
        ),
      );
    });
  } catch (err) {
    await election.stop();
    await store.close().catch(() => {});
    await fleet.close().catch(() => {});
    health.close();
    redis.disconnect();
    leaseRedis.disconnect();
    throw err;
  }
  const { port } = server.address() as AddressInfo;
  const host = options.host.includes(":") ? `[${options.host}]` : options.host;
  const adminUrl = `http://${host}:${port}`;
  log.info({ adminUrl }, "scaler listening");

  let stopping: Promise<void> | undefined;
  const stop = ({ release = true }: { release?: boolean } = {}) => {
    stopping ??= (async () => {
      closed = true;
      signals?.detach();
      await election.stop({ release });
      await starting?.catch(() => {});
      await loop?.stop();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      });
      await fleet.close().catch(() => {});
      await store.close().catch(() => {});
      health.close();
      await redis.quit().catch(() => redis.disconnect());
      await leaseRedis.quit().catch(() => leaseRedis.disconnect());
      for (const w of waiters.splice(0)) w();
      log.info("scaler stopped");
    })();
    return stopping;
  };
  const signals = handleSignals
    ? handleShutdownSignals(
        () => stop(),
        (m) => log.info(m),
      )
    : undefined;

  return {
    id: options.id,
    options,
    adminUrl,
    registry,
    get isLeader() {
      return election.isLeader;
    },
    get leadership() {
      return election.leadership;
    },
    whenLeading() {
      if (leading || closed) return Promise.resolve();
      return new Promise<void>((resolve) => {
        waiters.push(resolve);
      });
    },
    tickNow: () => loop?.tickNow() ?? Promise.resolve(),
    scrapeNow: () => loop?.scrapeNow() ?? Promise.resolve(),
    resyncNow: () => loop?.resyncNow() ?? Promise.resolve(),
    collectNow: () => loop?.collectNow() ?? Promise.resolve(),
    revisionState: (ref) => loop?.revisionState(ref),
    stop,
  };
}
