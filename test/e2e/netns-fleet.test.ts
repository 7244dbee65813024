/**
 * A fleet on separate (virtual) hosts: network namespaces on one machine, one
 * switch between them, addresses that exist only inside them
 * (test/support/netns.ts). Redis, the API, a gateway and the scaler run on
 * "core"; an agent runs on each of "host-a" and "host-b", each with its own
 * data address, so the gateway reaches every instance over the (virtual)
 * wire, as on a real fleet, not over loopback. A worker service with two
 * instances is served from an instance on each host; then host-a's link is
 * cut: its instances move to host-b, and the requests that failed meanwhile
 * are counted (allowed: those that were on their way to host-a).
 *
 * Everything the test sends runs inside the namespaces (`ip netns exec`): the
 * CLI and the load generator on core. Needs root and iproute2 (CI has both).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.ts";
import {
  createTestNetwork,
  inNetns,
  netnsUnavailable,
  type TestNetwork,
} from "../support/netns.ts";
import { waitFor } from "../support/wait.ts";
import {
  agentArgs,
  apiArgs,
  gatewayArgs,
  outputs,
  type Proc,
  scalerArgs,
  spawnSkiff,
  stopAllProcesses,
} from "./support.ts";

const unavailable = netnsUnavailable();
const REDIS_PORT = 6390;
const suffix = randomBytes(3).toString("hex");
const prefix = `skiff-netns-${suffix}:`;
const token = `netns-${randomBytes(12).toString("hex")}`;
const SERVICE = "across";
const HOST = `${SERVICE}.default.localhost`;

let net: TestNetwork;
let dir: string;
let redis: ChildProcess | undefined;
let apiUrl: string;
let gatewayUrl: string;
const procs: Proc[] = [];
const agentIds = { a: `netns-a-${suffix}`, b: `netns-b-${suffix}` };

const core = () => net.hosts.core!;
const env = () => ({
  REDIS_URL: `redis://${core().address}:${REDIS_PORT}`,
  SKIFF_REDIS_PREFIX: prefix,
  SKIFF_TOKEN: "",
  SKIFF_API_URL: "",
  SKIFF_CONFIG: "",
});

/** redis-cli against core's Redis, from core. */
function redisCli(...args: string[]): string {
  const [command, argv] = inNetns(core().netns, [
    "redis-cli",
    "-h",
    core().address,
    "-p",
    String(REDIS_PORT),
    ...args,
  ]);
  return execFileSync(command, argv, { encoding: "utf8" });
}

/** Ready endpoints of the service's first revision per agent id (live agents only). */
function instancesByAgent(): Record<string, number> {
  const lines = redisCli("HVALS", `${prefix}fleet:endpoints:default:${SERVICE}-00001`)
    .split("\n")
    .filter((l) => l.startsWith("{"));
  const out: Record<string, number> = {};
  for (const line of lines) {
    const { agentId } = JSON.parse(line) as { agentId: string };
    if (redisCli("EXISTS", `${prefix}fleet:agent:${agentId}`).trim() !== "1") continue;
    out[agentId] = (out[agentId] ?? 0) + 1;
  }
  return out;
}

async function skiff(...args: string[]): Promise<string> {
  const r = await runCli(args, {
    env: { ...env(), SKIFF_API_URL: apiUrl, SKIFF_TOKEN: token },
    netns: core().netns,
  });
  if (r.code !== 0) {
    throw new Error(
      `skiff ${args.join(" ")}: ${r.code}\n${r.stdout}${r.stderr}\n${outputs(procs)}`,
    );
  }
  return r.stdout;
}

/**
 * Closed-loop load from core: `connections` loops, each request bounded by
 * 10 s, the whole by `maxMs` and `maxRequests`; prints its counts as a JSON
 * line every 100 ms and once more when it ends (SIGTERM ends it).
 */
const LOAD = `
import { Agent, request } from "node:http";
const [url, host, connections, maxMs, maxRequests] = JSON.parse(process.argv[1]);
const agent = new Agent({ keepAlive: true, maxSockets: connections });
const c = { sent: 0, ok: 0, failed: 0, inflight: 0, samples: [] };
let stop = false;
const deadline = Date.now() + maxMs;
const print = () => console.log(JSON.stringify(c));
process.on("SIGTERM", () => { stop = true; });
// fetch() would not send our Host header: node:http does.
const one = () => new Promise((resolve) => {
  const req = request(url, { headers: { host }, agent, timeout: 10000 }, (res) => {
    let body = "";
    res.setEncoding("utf8");
    res.on("data", (d) => { body += d; });
    res.on("end", () => resolve({ status: res.statusCode, body }));
    res.on("error", (err) => resolve({ status: 0, body: err.message }));
  });
  req.on("timeout", () => req.destroy(new Error("no answer within 10 s")));
  req.on("error", (err) => resolve({ status: 0, body: err.message }));
  req.end();
});
const loop = async () => {
  while (!stop && Date.now() < deadline && c.sent < maxRequests) {
    c.sent++; c.inflight++;
    const { status, body } = await one();
    if (status === 200) c.ok++;
    else { c.failed++; if (c.samples.length < 5) c.samples.push(status + " " + body.slice(0, 200)); }
    c.inflight--;
  }
};
const timer = setInterval(print, 100);
await Promise.all(Array.from({ length: connections }, loop));
clearInterval(timer);
print();
agent.destroy();
`;

interface LoadCounts {
  sent: number;
  ok: number;
  failed: number;
  inflight: number;
  samples: string[];
}

function startLoad(connections: number) {
  const [command, argv] = inNetns(core().netns, [
    process.execPath,
    "--input-type=module",
    "-e",
    LOAD,
    JSON.stringify([gatewayUrl, HOST, connections, 90_000, 50_000]),
  ]);
  const child = spawn(command, argv, { stdio: ["ignore", "pipe", "inherit"] });
  let last: LoadCounts = { sent: 0, ok: 0, failed: 0, inflight: 0, samples: [] };
  let partial = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk: string) => {
    const lines = (partial + chunk).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) if (line.startsWith("{")) last = JSON.parse(line) as LoadCounts;
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    current: () => last,
    async stop(): Promise<LoadCounts> {
      child.kill("SIGTERM");
      await exited;
      return last;
    },
  };
}

beforeAll(async () => {
  if (unavailable) return;
  net = createTestNetwork(["core", "host-a", "host-b"]);
  dir = mkdtempSync(join(tmpdir(), "skiff-netns-"));
  const [command, argv] = inNetns(core().netns, [
    "redis-server",
    "--bind",
    core().address,
    "--port",
    String(REDIS_PORT),
    "--save",
    "",
    "--appendonly",
    "no",
    "--protected-mode",
    "no",
    "--dir",
    dir,
  ]);
  redis = spawn(command, argv, { stdio: "ignore" });
  await waitFor(
    "core's Redis",
    () => {
      try {
        return redisCli("PING").trim() === "PONG";
      } catch {
        return false;
      }
    },
    10_000,
  );

  const onCore = core().netns;
  const api = spawnSkiff("api", apiArgs(token, "--host", "127.0.0.1"), env(), onCore);
  const gateway = spawnSkiff(
    "gateway",
    [...gatewayArgs(`netns-gw-${suffix}`), "--host", "127.0.0.1"],
    env(),
    onCore,
  );
  const scaler = spawnSkiff(
    "scaler",
    scalerArgs("--id", `netns-s-${suffix}`, "--stable-window", "6s", "--resync-interval", "2000"),
    env(),
    onCore,
  );
  const agents = (["a", "b"] as const).map((h) => {
    const host = net.hosts[`host-${h}`]!;
    return spawnSkiff(
      `agent-${h}`,
      [...agentArgs(agentIds[h], host.address), "--no-containers"],
      env(),
      host.netns,
    );
  });
  procs.push(api, gateway, scaler, ...agents);
  apiUrl = (await api.waitFor(/Skiff API listening on (\S+)/))[1]!;
  gatewayUrl = (await gateway.waitFor(/Skiff gateway \S+ serving on (\S+)/))[1]!;
  await scaler.waitFor(/health and metrics at (\S+)/);
  for (const a of agents) await a.waitFor(/Skiff agent \S+ serving on 10\./);
}, 120_000);

afterAll(async () => {
  if (unavailable) return;
  await stopAllProcesses(5_000);
  redis?.kill("SIGKILL");
  net?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe.skipIf(unavailable)(
  `a fleet on separate network namespaces${unavailable ? ` (skipped: ${unavailable})` : ""}`,
  () => {
    it("serves a worker from an instance on each host, and moves host-a's to host-b when its link is cut", async () => {
      const source = join(dir, "across.js");
      writeFileSync(
        source,
        `export default { fetch: () => new Response("across " + Date.now()) };\n`,
      );
      await skiff(
        "service",
        "create",
        SERVICE,
        "--source",
        source,
        "--scale-min",
        "2",
        "--timeout",
        "5",
      );
      await waitFor(
        "an instance on each host",
        () => {
          const by = instancesByAgent();
          return by[agentIds.a] === 1 && by[agentIds.b] === 1;
        },
        60_000,
        100,
      );

      const load = startLoad(4);
      try {
        await waitFor(
          "traffic through the gateway",
          () => {
            const c = load.current();
            if (c.failed > 0)
              throw new Error(`requests failed before any fault: ${JSON.stringify(c)}`);
            return c.ok >= 200;
          },
          30_000,
          50,
        );
        const before = load.current();
        expect(before.failed).toBe(0);

        const cutAt = performance.now();
        net.cut("host-a");
        await waitFor(
          "host-a's instance replaced on host-b",
          () => {
            const by = instancesByAgent();
            return by[agentIds.a] === undefined && by[agentIds.b] === 2;
          },
          60_000,
          100,
        );
        const movedMs = performance.now() - cutAt;
        const atMove = load.current();
        await waitFor(
          "traffic on after the move",
          () => load.current().ok >= atMove.ok + 200,
          30_000,
          50,
        );
        const counts = await load.stop();
        console.log(
          `[netns fleet] link cut: sent ${counts.sent}, ok ${counts.ok}, failed ${counts.failed}, instances moved after ${Math.round(movedMs)} ms; failures: ${JSON.stringify(counts.samples)}`,
        );
        // Allowed failures: requests on their way to host-a when its link went
        // (each of the 4 loops had at most one there, plus one that chose host-a
        // before the gateway saw it gone); the rest were served.
        expect(counts.failed).toBeLessThanOrEqual(8);
        expect(counts.ok).toBeGreaterThan(before.ok + 200);
      } finally {
        await load.stop();
      }
    }, 180_000);
  },
);
