/**
 * `skiff agent`: the node agent plus its small HTTP server (/healthz,
 * /readyz, /metrics) on --host/--port. The CLI parses flags into
 * AgentOptionsInput and calls startAgent; SIGTERM/SIGINT drain and stop.
 */
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import Docker from "dockerode";
import { Hono } from "hono";
import { UnavailableError } from "../src/errors.ts";
import { handleShutdownSignals } from "../src/signals.ts";
import { Agent } from "./agent.ts";
import { IsolateLogs } from "./isolate-logs.ts";
import { LogRelay } from "./log-relay.ts";
import type { AgentOptionsInput } from "./options.ts";

export interface StartAgentOptions extends AgentOptionsInput {
  /** Stop gracefully on SIGTERM and SIGINT (the CLI sets this). Default false. */
  handleSignals?: boolean;
}

export interface RunningAgent {
  agent: Agent;
  /** http://host:port of the agent's own server. */
  url: string;
  /** Graceful stop: drain and stop every instance, deregister, close the server. */
  stop(): Promise<void>;
}

export function createAgentApp(agent: Agent): Hono {
  const app = new Hono();
  app.get("/healthz", (c) => c.text("ok"));
  app.get("/readyz", async (c) => {
    if (!agent.ready) return c.text(`not ready: agent is ${agent.state}`, 503);
    // Its instances serve whether or not Redis answers: a Redis blip is no reason to drop the agent.
    return c.text(agent.redisUp ? "ok" : "ok (redis unreachable: reports resume when it is back)");
  });
  app.get("/metrics", async (c) => {
    c.header("content-type", agent.registry.contentType);
    return c.body(await agent.registry.metrics());
  });
  return app;
}

/** Start the agent, then its HTTP server; resolves once both run. */
export async function startAgent(options: StartAgentOptions = {}): Promise<RunningAgent> {
  const { handleSignals = false, ...agentOptions } = options;
  const agent = new Agent(agentOptions);
  await agent.start();
  // `skiff logs`: this agent's containers' output and workers' console lines, on request over Redis.
  const containers = agent.runtimes.includes("container");
  const logs =
    containers || agent.pool
      ? new LogRelay({
          agentId: agent.id,
          redis: agent.fleet.redis,
          prefix: agent.options.redisPrefix,
          docker: containers ? new Docker({ socketPath: agent.options.dockerSocket }) : undefined,
          isolateLogs: agent.pool ? IsolateLogs.of(agent.pool) : undefined,
          instances: () => agent.instances(),
          logger: agent.log,
        })
      : undefined;
  try {
    await logs?.start();
  } catch (err) {
    await logs?.close();
    await agent.stop();
    throw err;
  }
  const { host, port } = agent.options;
  const server = serve({ fetch: createAgentApp(agent).fetch, hostname: host, port });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("listening", resolve);
      server.once("error", (err) =>
        reject(new UnavailableError(`agent cannot listen on ${host}:${port}: ${err.message}`)),
      );
    });
  } catch (err) {
    await logs?.close();
    await agent.stop();
    throw err;
  }
  const address = server.address() as AddressInfo;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${address.port}`;
  agent.log.info({ url, id: agent.id }, "agent listening");

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      signals?.detach();
      await logs?.close();
      await agent.stop();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      });
    })();
    return stopping;
  };
  const signals = handleSignals ? handleShutdownSignals(stop, (m) => agent.log.info(m)) : undefined;
  return { agent, url, stop };
}
