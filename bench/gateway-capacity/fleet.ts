/**
 * The fleet a gateway-capacity run routes to, written straight into Redis:
 * one agent and `count` services, each with a revision whose one endpoint is
 * the backend; plus what the run reads back (RSS, Redis command counts).
 */
import { readFile } from "node:fs/promises";
import type { Redis } from "ioredis";
import { Agent, request } from "undici";
import { routingKeys } from "../../src/control/routing.ts";
import { createFleet } from "../../src/fleet/fleet.ts";

/** The host every measured request asks for (service "hello"). */
export const HOST = "hello.default.localhost";

const AGENT = {
  id: "bench-agent",
  address: "127.0.0.1",
  runtimes: ["container" as const],
  capacity: { cpuMillis: 2000, memoryBytes: 2 ** 31, maxInstances: 100_000 },
  labels: {},
  startedAt: new Date().toISOString(),
  heartbeatAt: Date.now(),
  version: "bench",
};

/** `count` services svc{i}.default.localhost (the first also as HOST), each a revision with one endpoint. */
export async function populate(
  redis: Redis,
  prefix: string,
  backendPort: number,
  count: number,
): Promise<string[]> {
  const fleet = createFleet({ redis, prefix });
  await fleet.registerAgent(AGENT, 3_600_000);
  const hosts: string[] = [];
  const keys = routingKeys(prefix);
  for (let start = 0; start < count; start += 500) {
    const batch: Promise<unknown>[] = [];
    const fields: string[] = [];
    for (let i = start; i < Math.min(count, start + 500); i++) {
      const revision = `svc${i}-00001`;
      const host = i === 0 ? HOST : `svc${i}.default.localhost`;
      hosts.push(host);
      fields.push(
        host,
        JSON.stringify({
          namespace: "default",
          service: i === 0 ? "hello" : `svc${i}`,
          targets: [{ revision, percent: 100, containerConcurrency: 0, timeoutSeconds: 30 }],
        }),
      );
      batch.push(
        fleet.publishEndpoint("default", revision, {
          instanceId: `${revision}-a`,
          agentId: AGENT.id,
          runtime: "container",
          host: "127.0.0.1",
          port: backendPort,
          protocol: "http1",
          containerConcurrency: 0,
          readyAt: Date.now(),
        }),
      );
    }
    batch.push(redis.hset(keys.hosts, ...fields));
    await Promise.all(batch);
  }
  await fleet.close();
  return hosts;
}

export async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

/** One request to every host (50 at a time), so every route, dispatcher and metric series exists. */
export async function touchAll(url: string, hosts: string[]): Promise<void> {
  const agent = new Agent({ connections: 50 });
  let next = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      while (next < hosts.length) {
        const host = hosts[next++] as string;
        const res = await request(`${url}/`, { headers: { host }, dispatcher: agent });
        await res.body.dump();
        if (res.statusCode !== 200) failed++;
      }
    }),
  );
  await agent.close();
  if (failed > 0) throw new Error(`${failed} of ${hosts.length} hosts did not answer 200`);
}

/** Commands Redis ran since the last CONFIG RESETSTAT (INFO and CONFIG themselves left out). */
export async function redisCommands(redis: Redis): Promise<number> {
  const info = await redis.info("commandstats");
  let calls = 0;
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    if (m[1] === "info" || m[1]?.startsWith("config")) continue;
    calls += Number(m[2]);
  }
  return calls;
}
