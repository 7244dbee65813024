/**
 * `skiff gateway --workers N`: N gateway processes on one host sharing the
 * user port. Each worker is a full gateway replica (its own id
 * `{id}-w{i}`, Redis connection, counters, slots and activation, exactly like
 * separate replicas on separate hosts); they bind the port with SO_REUSEPORT,
 * so the kernel spreads connections over them and no process relays traffic.
 *
 * The primary (this module) only supervises: it forks the workers, restarts a
 * worker that dies (with backoff), stops them all gracefully on close, and
 * serves the admin port itself: /metrics sums every worker's series
 * (prom-client's cluster aggregation) plus skiff_gateway_workers and
 * skiff_gateway_worker_restarts_total, /readyz is ready when every worker is,
 * /healthz answers while the primary runs.
 */
import { type ChildProcess, fork } from "node:child_process";
import { once } from "node:events";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { createAdaptorServer } from "@hono/node-server";
import { Hono } from "hono";
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from "prom-client";
import { z } from "zod";
import { SkiffError } from "../src/errors.ts";
import { createLogger, type Logger } from "../src/logging.ts";
import { Counter, Gauge, Registry } from "../src/metrics.ts";
import { parseOptions } from "../src/options.ts";
import { freePort } from "../src/redis/server.ts";
import { type GatewayOptionsInput, parseGatewayOptions } from "./options.ts";

export const DEFAULT_V8_FLAGS = ["--max-semi-space-size=2", "--no-allocation-site-pretenuring"];

const WORKER_MAIN = fileURLToPath(new URL("./cluster-worker.ts", import.meta.url));

/** One worker's metrics as prom-client's getMetricsAsJSON() gives them. */
export type WorkerMetrics = MetricObjectWithValues<MetricValue<string>>[];

/** Messages between the primary and a worker (IPC, JSON). */
export type ToWorker = { type: "metrics"; seq: number } | { type: "close"; graceMs: number };
export type FromWorker =
  | { type: "ready"; id: string; url: string; adminUrl: string }
  | { type: "failed"; message: string }
  | { type: "metrics"; seq: number; data: WorkerMetrics };

/** What a worker is started with (in SKIFF_GATEWAY_WORKER, as JSON). */
export type WorkerInput = Omit<GatewayOptionsInput, "logger" | "registry"> & { logLevel?: string };

export const clusterOptionsSchema = z.object({
  /** Gateway processes; default one per core. */
  workers: z.number().int().min(1).max(1024).default(availableParallelism()),
  /** Each worker's gateway options (no logger or registry: they cross a process boundary). */
  gateway: z.record(z.string(), z.unknown()).default({}),
  /** How long requests in flight may finish when a worker is stopped by a signal of its own (SIGTERM to the process group). */
  graceMs: z.number().int().min(0).max(3_600_000).default(10_000),
  /** First wait before restarting a worker that died; doubles while it keeps dying early. */
  restartDelayMs: z.number().int().min(0).max(60_000).default(200),
  /** A worker must start within this, or the start fails (first start) / it is killed and retried. */
  startTimeoutMs: z.number().int().min(100).max(600_000).default(30_000),
  /**
   * V8 flags of the worker processes. A small young generation (2 MiB
   * semi-spaces, V8's default grows to 16) keeps a worker's RSS near its live
   * data: with 10,000 services the default sizing added ~150 MB of RSS over
   * ~40 MB of live objects. A proxy's young objects are the requests in
   * flight, so more frequent scavenges stay cheap.
   *
   * No allocation-site pretenuring: the first request to each of thousands of
   * services creates its long-lived dispatcher and metric series on the
   * request path, V8 then sees most objects of those allocation sites survive
   * and allocates them in the old generation from then on, so every later
   * request's short-lived objects became old-generation garbage (10,000
   * services under wrk -c1: the heap grew ~9 MB/s, ~0.5 MB/s without).
   */
  v8Flags: z.array(z.string().regex(/^--[a-z0-9-]+(=[A-Za-z0-9._-]+)?$/)).default(DEFAULT_V8_FLAGS),
  logger: z.custom<Logger>().optional(),
});
export type GatewayClusterOptions = z.input<typeof clusterOptionsSchema> & {
  gateway?: WorkerInput;
};

export interface ClusterWorker {
  readonly index: number;
  /** Its gateway id: `{id}-w{index}`. */
  readonly id: string;
  readonly pid: number | undefined;
  readonly ready: boolean;
}

export interface GatewayCluster {
  /** The base id; workers are `{id}-w0` ... */
  readonly id: string;
  readonly url: string;
  readonly port: number;
  /** The primary's /metrics (aggregated), /healthz, /readyz. */
  readonly adminUrl: string;
  readonly workers: readonly ClusterWorker[];
  /** Worker restarts so far. */
  readonly restarts: number;
  /** Every worker's metrics, summed (the admin /metrics body). */
  metrics(): Promise<string>;
  /** Stop every worker gracefully (requests in flight may finish for graceMs), then the admin port. */
  close(graceMs?: number): Promise<void>;
}

export class WorkerStartError extends SkiffError {
  constructor(message: string) {
    super("UNAVAILABLE", message);
  }
}

interface Slot {
  index: number;
  id: string;
  child: ChildProcess | undefined;
  ready: boolean;
  startedAt: number;
  delayMs: number;
}

export async function startGatewayCluster(input: GatewayClusterOptions): Promise<GatewayCluster> {
  const o = parseOptions(clusterOptionsSchema, input, "GatewayClusterOptions");
  const gatewayInput = (input.gateway ?? {}) as WorkerInput;
  const { logLevel, ...rest } = gatewayInput;
  // Validate once here, so a bad option fails before any fork.
  const base = parseGatewayOptions(rest as GatewayOptionsInput);
  const logger =
    o.logger?.child({ component: "gateway-cluster" }) ??
    createLogger({ component: "gateway-cluster", level: logLevel });
  // Every worker must bind the same port: pick it once when asked for any.
  const port = base.port === 0 ? await freePort(base.host) : base.port;

  const registry = new Registry();
  const workersGauge = new Gauge({
    name: "skiff_gateway_workers",
    help: "Gateway worker processes serving right now (skiff gateway --workers)",
    registers: [registry],
  });
  const restartsCounter = new Counter({
    name: "skiff_gateway_worker_restarts_total",
    help: "Gateway worker processes restarted after they died",
    registers: [registry],
  });

  let closing = false;
  let restarts = 0;
  let seq = 0;
  const pending = new Map<number, { left: number; data: WorkerMetrics[]; done: () => void }>();
  const slots: Slot[] = Array.from({ length: o.workers }, (_, index) => ({
    index,
    id: `${base.id}-w${index}`,
    child: undefined,
    ready: false,
    startedAt: 0,
    delayMs: o.restartDelayMs,
  }));

  const countReady = () => workersGauge.set(slots.filter((s) => s.ready).length);

  /** Fork one worker; resolves when it listens, rejects when it fails or exits first. */
  const spawnWorker = (slot: Slot): Promise<void> => {
    const workerInput: WorkerInput = {
      ...rest,
      id: slot.id,
      port,
      reusePort: true,
      // Each worker's own admin port is internal; the primary serves the real one.
      adminHost: "127.0.0.1",
      adminPort: 0,
      ...(logLevel ? { logLevel } : {}),
    };
    const child = fork(WORKER_MAIN, [], {
      env: {
        ...process.env,
        SKIFF_GATEWAY_WORKER: JSON.stringify(workerInput),
        SKIFF_GATEWAY_WORKER_GRACE_MS: String(o.graceMs),
      },
      // Not the primary's flags (a test runner's, --cpu-prof, ...): the workers' own.
      execArgv: o.v8Flags,
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    slot.child = child;
    slot.ready = false;
    slot.startedAt = Date.now();
    return new Promise<void>((resolve, reject) => {
      let started = false;
      const timer = setTimeout(() => {
        if (started) return;
        child.kill("SIGKILL");
        reject(
          new WorkerStartError(
            `gateway worker ${slot.id} did not start within ${o.startTimeoutMs} ms`,
          ),
        );
      }, o.startTimeoutMs);
      child.on("message", (m: FromWorker) => {
        if (m.type === "ready") {
          started = true;
          clearTimeout(timer);
          slot.ready = true;
          countReady();
          resolve();
        } else if (m.type === "failed") {
          clearTimeout(timer);
          reject(new WorkerStartError(`gateway worker ${slot.id} could not start: ${m.message}`));
        } else if (m.type === "metrics") {
          const p = pending.get(m.seq);
          if (p) {
            p.data.push(m.data);
            if (--p.left === 0) p.done();
          }
        }
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        slot.ready = false;
        countReady();
        if (slot.child === child) slot.child = undefined;
        // Metrics requests waiting for this worker stop waiting for it.
        for (const p of pending.values()) if (--p.left === 0) p.done();
        if (!started) {
          reject(
            new WorkerStartError(
              `gateway worker ${slot.id} exited at start (${signal ?? `code ${code}`})`,
            ),
          );
          return;
        }
        if (closing) return;
        restartLater(slot, code, signal);
      });
    });
  };

  const restartLater = (slot: Slot, code: number | null, signal: NodeJS.Signals | null) => {
    // A worker that lived a while restarts at once; one that keeps dying early backs off.
    const livedMs = Date.now() - slot.startedAt;
    slot.delayMs = livedMs > 10_000 ? o.restartDelayMs : Math.min(slot.delayMs * 2 || 100, 10_000);
    const delay = livedMs > 10_000 ? 0 : slot.delayMs;
    logger.error(
      { worker: slot.id, code, signal, restartInMs: delay },
      "gateway worker died; restarting it",
    );
    setTimeout(() => {
      if (closing) return;
      restarts++;
      restartsCounter.inc();
      spawnWorker(slot).catch((err: unknown) => {
        logger.error({ err, worker: slot.id }, "restarting a gateway worker failed; retrying");
        if (!closing && !slot.child) restartLater(slot, null, null);
      });
    }, delay).unref();
  };

  const stopWorkers = async (graceMs: number) => {
    closing = true;
    await Promise.all(
      slots.map(async (slot) => {
        const child = slot.child;
        if (!child || child.exitCode !== null || child.signalCode !== null) return;
        const exited = once(child, "exit");
        // A worker still starting has no requests: SIGTERM ends it (or closes it once it listens).
        if (child.connected && slot.ready)
          child.send({ type: "close", graceMs } satisfies ToWorker);
        else child.kill("SIGTERM");
        const killTimer = setTimeout(() => child.kill("SIGKILL"), graceMs + 5_000);
        await exited;
        clearTimeout(killTimer);
      }),
    );
  };

  try {
    await Promise.all(slots.map((s) => spawnWorker(s)));
  } catch (err) {
    await stopWorkers(0);
    throw err;
  }

  const metrics = async (): Promise<string> => {
    const live = slots.filter((s) => s.ready && s.child?.connected);
    const id = ++seq;
    const data: WorkerMetrics[] = [];
    if (live.length > 0) {
      await new Promise<void>((resolve) => {
        // Thousands of services make each worker's answer megabytes: give it time.
        const timer = setTimeout(resolve, 8_000);
        pending.set(id, {
          left: live.length,
          data,
          done: () => {
            clearTimeout(timer);
            resolve();
          },
        });
        for (const s of live) s.child?.send({ type: "metrics", seq: id } satisfies ToWorker);
      });
      pending.delete(id);
    }
    const summed = data.length > 0 ? await AggregatorRegistry.aggregate(data).metrics() : "";
    return `${summed.trimEnd()}\n${await registry.metrics()}`;
  };

  const admin = new Hono();
  admin.get("/healthz", (c) => c.text("ok\n"));
  admin.get("/readyz", (c) => {
    const ready = !closing && slots.every((s) => s.ready);
    return c.text(ready ? "ready\n" : "not ready\n", ready ? 200 : 503);
  });
  admin.get("/metrics", async (c) => {
    c.header("content-type", registry.contentType);
    return c.body(await metrics());
  });
  const adminServer = createAdaptorServer({ fetch: admin.fetch }) as Server;
  try {
    await new Promise<void>((resolve, reject) => {
      adminServer.once("error", (err) =>
        reject(new Error(`cannot listen on ${base.adminHost}:${base.adminPort}: ${err.message}`)),
      );
      adminServer.listen(base.adminPort, base.adminHost, () => resolve());
    });
  } catch (err) {
    await stopWorkers(0);
    throw err;
  }
  const host = (h: string) => (h.includes(":") ? `[${h}]` : h);
  const adminPort = (adminServer.address() as AddressInfo).port;
  const url = `http://${host(base.host)}:${port}`;
  const adminUrl = `http://${host(base.adminHost)}:${adminPort}`;
  logger.info({ url, adminUrl, workers: o.workers }, "gateway workers listening");

  let closed: Promise<void> | undefined;
  return {
    id: base.id,
    url,
    port,
    adminUrl,
    get workers() {
      return slots.map((s) => ({ index: s.index, id: s.id, pid: s.child?.pid, ready: s.ready }));
    },
    get restarts() {
      return restarts;
    },
    metrics,
    close(graceMs = o.graceMs) {
      closed ??= (async () => {
        await stopWorkers(graceMs);
        await new Promise<void>((resolve) => adminServer.close(() => resolve()));
        adminServer.closeAllConnections();
        logger.info("gateway workers stopped");
      })();
      return closed;
    },
  };
}
