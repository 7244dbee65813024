/**
 * Issue 11, "logs during an outage": a scaler (leading, with a placed
 * revision) and an agent (running its isolate, heartbeating, reporting) go
 * through a Redis outage of a few seconds. Each logs exactly one line when
 * Redis is lost (`redis: "lost"`) and one when it is back (`redis: "back"`,
 * `downMs`), and no stack trace: the failed passes, scrapes, lease renewals,
 * heartbeats, resyncs and subscriber reconnects of the outage are debug only.
 * Before, each logged a warning with a stack per attempt (~40 per 4 s).
 *
 * Real parts: a private redis-server (SIGKILLed and restarted from its AOF
 * here, never the suite's), the real API, scaler and agent in-process with a
 * captured logger, a real workerd isolate.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../../agent/agent.ts";
import { createAgentApp } from "../../agent/server.ts";
import type { RunningScaler } from "../../scaler/server.ts";
import { Fleet } from "../../src/fleet/fleet.ts";
import { startTestApi, type TestApi } from "../support/api.ts";
import { uniquePrefix } from "../support/redis.ts";
import { type RedisServer, startRedisServer } from "../support/redis-server.ts";
import { DOMAIN, startTestScaler, waitFor, workerService } from "./support.ts";

const prefix = uniquePrefix("outage-logs");
const OUTAGE_MS = 4_000;
const TTL_MS = 1_000;
type Line = Record<string, unknown>;
const CONSEQUENCES = new Set([
  "no longer the leader",
  "heartbeat found the agent record expired; rejoined the fleet",
  // Logged once per grace (after Redis is back, before the agent heartbeats again).
  "agents without a heartbeat record are presumed alive for one heartbeat TTL; holding the fleet as it is",
]);
const logs = { scaler: [] as Line[], agent: [] as Line[] };
let dir: string;
let stateDir: string;
let server: RedisServer;
let api: TestApi;
let scaler: RunningScaler;
let agent: Agent;
let fleet: Fleet;

const capture = (into: Line[]) =>
  pino(
    { level: "debug" },
    {
      write(line: string) {
        into.push(JSON.parse(line) as Line);
      },
    },
  );

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "skiff-outage-logs-"));
  stateDir = await mkdtemp(join(tmpdir(), "skiff-outage-logs-agent-"));
  server = await startRedisServer({ appendonly: true, dir });
  api = await startTestApi({ prefix, config: { redisUrl: server.url } });
  agent = new Agent({
    redisUrl: server.url,
    redisPrefix: prefix,
    id: "outage-logs-a",
    address: "127.0.0.1",
    containers: false,
    isolateProcesses: 1,
    isolateStateDir: stateDir,
    heartbeatIntervalMs: 200,
    heartbeatTtlMs: TTL_MS,
    resyncIntervalMs: 500,
    drainDelayMs: 100,
    domain: DOMAIN,
    logger: capture(logs.agent),
    registry: new Registry(),
  });
  await agent.start();
  scaler = await startTestScaler(prefix, {
    redisUrl: server.url,
    id: "outage-logs-scaler",
    agentGraceMs: TTL_MS,
    logger: capture(logs.scaler),
  });
  fleet = new Fleet({ url: server.url, prefix });
}, 60_000);

afterAll(async () => {
  await scaler?.stop();
  await agent?.stop();
  await api?.close();
  await fleet?.close();
  await server?.stop();
  for (const d of [dir, stateDir]) if (d) await rm(d, { recursive: true, force: true });
});

describe("logs during a Redis outage", () => {
  it("a scaler and an agent each log one line when Redis is lost, one when it is back, and no stack trace", async () => {
    const svc = workerService("steady", {
      annotations: { "autoscaling.knative.dev/min-scale": "1" },
    });
    expect((await api.call("POST", api.ns("services"), svc)).status).toBe(201);
    await waitFor(
      "one ready instance",
      async () => (await fleet.readEndpoints("default", "steady-00001")).length === 1,
      30_000,
    );
    await scaler.whenLeading();
    const from = { scaler: logs.scaler.length, agent: logs.agent.length };

    const port = server.port;
    server.process.kill("SIGKILL");
    await new Promise((r) => server.process.once("exit", r));
    const lost = (l: Line) => l.redis === "lost";
    await waitFor("both to see Redis lost", () => logs.scaler.some(lost) && logs.agent.some(lost));
    // Readiness means "doing its job", not "Redis answers": a load balancer or
    // supervisor must not drop every scaler and agent at once during a blip.
    const scalerReady = await fetch(`${scaler.adminUrl}/readyz`);
    const agentReady = await createAgentApp(agent).request("/readyz");
    console.log(
      `during the outage: scaler /readyz ${scalerReady.status} "${await scalerReady.text()}", agent /readyz ${agentReady.status} "${await agentReady.text()}"`,
    );
    expect(scalerReady.status).toBe(200);
    expect(agentReady.status).toBe(200);
    // Every loop (passes, scrapes, lease, heartbeat, resync, subscribers) fails a few times meanwhile.
    await sleep(OUTAGE_MS);
    server = await startRedisServer({ appendonly: true, dir, port });
    const back = (l: Line) => l.redis === "back";
    await waitFor(
      "both to see Redis back",
      () => logs.scaler.some(back) && logs.agent.some(back),
      15_000,
    );
    await waitFor("the scaler leads again", () => scaler.isLeader, 15_000);
    await scaler.whenLeading();
    // The loops run again after the return (a first pass, heartbeats, a resync).
    await sleep(2_000);

    for (const component of ["scaler", "agent"] as const) {
      const during = logs[component].slice(from[component]);
      const redisLines = during.filter((l) => l.redis !== undefined);
      const loud = during.filter((l) => (l.level as number) >= 40);
      const stacks = during.filter((l) => JSON.stringify(l).includes("\\n    at "));
      const debug = during.filter((l) => (l.level as number) <= 20);
      console.log(
        [
          `${component}: ${during.length} lines from the kill on (${debug.length} at debug), warn or worse: ${loud.length}, with stack traces: ${stacks.length}`,
          ...loud.map((l) => `  warn+: ${JSON.stringify({ level: l.level, msg: l.msg })}`),
          ...redisLines.map(
            (l) =>
              `  ${JSON.stringify({ level: l.level, redis: l.redis, reason: l.reason, downMs: l.downMs, msg: l.msg })}`,
          ),
        ].join("\n"),
      );
      expect(redisLines.map((l) => l.redis)).toEqual(["lost", "back"]);
      expect(redisLines[1]?.downMs).toBeGreaterThanOrEqual(OUTAGE_MS);
      expect(stacks).toEqual([]);
      // Nothing per failed attempt: the "lost" line is the only warning, apart
      // from one line each for what the outage outlived (the scaler's lease and
      // its agent grace, the agent's heartbeat record): state changes, not attempts.
      expect(loud.map((l) => l.msg).filter((m) => !CONSEQUENCES.has(m as string))).toEqual([
        redisLines[0]?.msg,
      ]);
      expect(loud.length).toBeLessThanOrEqual(3);
      // The attempts are still there for whoever turns debug on.
      expect(debug.length).toBeGreaterThan(0);
    }
    // The instance survived the outage.
    expect(await fleet.readEndpoints("default", "steady-00001")).toHaveLength(1);
  }, 90_000);
});
