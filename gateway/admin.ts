/**
 * The admin server (Hono, on adminHost:adminPort, apart from user traffic so
 * no user host can shadow it): /healthz, /readyz, /metrics.
 */
import type { Server } from "node:http";
import { createAdaptorServer } from "@hono/node-server";
import { Hono } from "hono";
import type { Registry } from "../src/metrics.ts";

/** `ready`: can this gateway serve (routes loaded once, not shutting down)? */
export function createAdminServer(registry: Registry, ready: () => boolean): Server {
  const admin = new Hono();
  admin.get("/healthz", (c) => c.text("ok\n"));
  // A Redis outage does not stop serving (routes and endpoints are in memory),
  // so it does not count here.
  admin.get("/readyz", (c) => {
    const ok = ready();
    return c.text(ok ? "ready\n" : "not ready\n", ok ? 200 : 503);
  });
  admin.get("/metrics", async (c) => {
    c.header("content-type", registry.contentType);
    return c.body(await registry.metrics());
  });
  return createAdaptorServer({ fetch: admin.fetch }) as Server;
}
