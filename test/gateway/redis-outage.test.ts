/**
 * Issue 11, "a Redis outage longer than ~5 s stops all traffic": a gateway in
 * front of a revision with a live instance keeps routing from memory while
 * its Redis is SIGKILLed for 6 s (longer than the agent's 3 s heartbeat TTL,
 * so the agent cannot heartbeat either) and restarted from its AOF:
 * - zero failed requests, each answered within the revision's own 2 s timeout,
 *   for a plain revision and for one with containerConcurrency 1 (slots are
 *   counted locally while Redis is away);
 * - a revision with no instance gets a clear 503 at once (nothing could
 *   activate it), not a hang;
 * - /readyz stays 200 (it means "can serve");
 * - the gateway logs one line when Redis is lost and one when it is back, and
 *   no stack traces meanwhile.
 * This test starts and kills its own redis-server (never the suite's).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { Registry } from "prom-client";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Gateway, startGateway } from "../../gateway/server.ts";
import { uniquePrefix } from "../support/redis.ts";
import { type RedisServer, startRedisServer } from "../support/redis-server.ts";
import { waitFor } from "../support/wait.ts";
import { type Backend, host, startBackend, TestScaler, testGatewayOptions } from "./support.ts";

const prefix = uniquePrefix("gw-outage");
const AGENT_TTL_MS = 3_000;
const OUTAGE_MS = 6_000;
let dir: string;
let redis: RedisServer;
let scaler: TestScaler;
let stopBeat: () => void;
let gw: Gateway;
const backends: Backend[] = [];
const lines: Record<string, unknown>[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "skiff-gw-outage-"));
  redis = await startRedisServer({ appendonly: true, dir });
  scaler = new TestScaler(prefix, redis.url);
  stopBeat = scaler.heartbeat(AGENT_TTL_MS, 300);
  await scaler.agent(undefined, AGENT_TTL_MS);
  for (const [service, cc] of [
    ["steady", 0],
    ["limited", 1],
  ] as const) {
    const b = await startBackend(service);
    backends.push(b);
    await scaler.route("default", service, [
      { revision: `${service}-00001`, percent: 100, timeoutSeconds: 2, containerConcurrency: cc },
    ]);
    await scaler.endpoint("default", `${service}-00001`, b, { containerConcurrency: cc });
  }
  await scaler.route("default", "cold", [
    { revision: "cold-00001", percent: 100, timeoutSeconds: 30 },
  ]);
  const logger = pino(
    { level: "debug" },
    {
      write(line: string) {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      },
    },
  );
  gw = await startGateway({
    ...testGatewayOptions(prefix, { redisUrl: redis.url }),
    logger,
    registry: new Registry(),
  });
});

afterAll(async () => {
  stopBeat?.();
  await gw?.close(1_000);
  await Promise.all(backends.map((b) => b.close()));
  await scaler?.close();
  await redis?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Tally {
  sent: number;
  failed: number;
  slowest: number;
  failures: string[];
}

describe("a Redis outage", () => {
  it("stops no request to a revision with a live instance, answers a cold one with 503 at once, and logs one line per change", async () => {
    const agent = new Agent({ connections: 8, keepAliveTimeout: 10_000 });
    const get = async (service: string) => {
      const res = await request(`${gw.url}/`, {
        headers: { host: host(service) },
        dispatcher: agent,
        headersTimeout: 10_000,
        bodyTimeout: 10_000,
      });
      return { status: res.statusCode, body: await res.body.text() };
    };
    await waitFor("routable", async () => (await get("steady")).status === 200);
    await waitFor("limited routable", async () => (await get("limited")).status === 200);

    const tallies: Record<string, Tally> = {
      steady: { sent: 0, failed: 0, slowest: 0, failures: [] },
      limited: { sent: 0, failed: 0, slowest: 0, failures: [] },
    };
    let running = true;
    const worker = async (service: string) => {
      const t = tallies[service] as Tally;
      while (running) {
        const started = performance.now();
        try {
          const res = await get(service);
          if (res.status !== 200) {
            t.failed++;
            t.failures.push(`${res.status} ${res.body.trim()}`);
          }
        } catch (err) {
          t.failed++;
          t.failures.push(String(err));
        }
        t.sent++;
        t.slowest = Math.max(t.slowest, performance.now() - started);
        // The load's pace, not a wait.
        await sleep(5);
      }
    };
    const workers = [worker("steady"), worker("steady"), worker("limited"), worker("limited")];
    const sentBy = (service: string) => (tallies[service] as Tally).sent;
    await waitFor("load flowing", () => sentBy("steady") >= 40 && sentBy("limited") >= 40);

    const logsBefore = lines.length;
    const sentBefore = tallies.steady?.sent ?? 0;
    redis.process.kill("SIGKILL");
    await new Promise((r) => redis.process.once("exit", r));
    const killedAt = performance.now();
    // Asserted at the end, after the counts are printed.
    await waitFor(
      "the gateway to see Redis lost",
      () => lines.some((l) => l.redis === "lost"),
      3_000,
    ).catch(() => {});

    // During the outage: readiness and a revision at zero.
    const readyz: number[] = [];
    let coldStatus = 0;
    let coldBody = "";
    let coldMs = 0;
    while (performance.now() - killedAt < OUTAGE_MS) {
      const r = await request(`${gw.adminUrl}/readyz`);
      await r.body.dump();
      readyz.push(r.statusCode);
      if (coldStatus === 0) {
        const t = performance.now();
        const res = await get("cold").catch((err: Error) => ({ status: -1, body: err.message }));
        coldMs = performance.now() - t;
        coldStatus = res.status;
        coldBody = res.body.trim();
      }
      // Sampling readiness through an outage of a fixed length (the length is under test).
      await sleep(250);
    }
    const sentDuringOutage = (tallies.steady?.sent ?? 0) - sentBefore;

    redis = await startRedisServer({ appendonly: true, dir, port: redis.port });
    const restartedAt = performance.now();
    await waitFor(
      "Redis back",
      async () => (await get("steady").catch(() => undefined)) !== undefined,
    );
    await waitFor(
      "the gateway to see Redis back",
      () => lines.some((l) => l.redis === "back"),
      5_000,
    ).catch(() => {});
    const backAfterMs = performance.now() - restartedAt;
    // Traffic goes on after the return too (agent rejoins, gateway resyncs).
    const sentBack = { steady: sentBy("steady"), limited: sentBy("limited") };
    await waitFor(
      "traffic answered after the return",
      () =>
        sentBy("steady") >= sentBack.steady + 100 && sentBy("limited") >= sentBack.limited + 100,
    );
    running = false;
    await Promise.all(workers);
    await agent.close();

    const during = lines.slice(logsBefore);
    const redisLines = during.filter((l) => l.redis !== undefined);
    const loud = during.filter((l) => (l.level as number) >= 40);
    const stacks = during.filter((l) => JSON.stringify(l).includes("\\n    at "));
    console.log(
      [
        `Redis SIGKILLed for ${OUTAGE_MS} ms (agent heartbeat TTL ${AGENT_TTL_MS} ms), restarted from AOF; gateway saw it back ${backAfterMs.toFixed(0)} ms after the restart`,
        ...Object.entries(tallies).map(
          ([s, t]) =>
            `${s}: sent ${t.sent}, failed ${t.failed}, slowest ${t.slowest.toFixed(0)} ms (timeoutSeconds 2)${t.failures.length ? ` e.g. ${t.failures.slice(0, 3).join(" | ")}` : ""}`,
        ),
        `steady requests answered during the outage: ${sentDuringOutage}`,
        `revision at zero during the outage: ${coldStatus} in ${coldMs.toFixed(0)} ms: ${coldBody}`,
        `/readyz during the outage: ${JSON.stringify(Object.fromEntries(readyz.map((s) => [s, readyz.filter((x) => x === s).length])))}`,
        `log lines from the kill on: ${during.length}, warn or worse: ${loud.length}, with stack traces: ${stacks.length}`,
        ...redisLines.map(
          (l) =>
            `  ${JSON.stringify({ level: l.level, redis: l.redis, reason: l.reason, downMs: l.downMs, msg: l.msg })}`,
        ),
      ].join("\n"),
    );
    expect(tallies.steady?.failed).toBe(0);
    expect(tallies.limited?.failed).toBe(0);
    expect(sentDuringOutage).toBeGreaterThan(100);
    expect(coldStatus).toBe(503);
    expect(coldBody).toContain("Redis");
    expect(coldMs).toBeLessThan(1_000);
    expect(new Set(readyz)).toEqual(new Set([200]));
    expect(redisLines.map((l) => l.redis)).toEqual(["lost", "back"]);
    expect(loud.length).toBeLessThanOrEqual(2);
    expect(stacks).toEqual([]);
    // Closing the gateway (and its connection) is not an outage.
    await gw.close(1_000);
    expect(lines.filter((l) => l.redis !== undefined).map((l) => l.redis)).toEqual([
      "lost",
      "back",
    ]);
  }, 60_000);
});
