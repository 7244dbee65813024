/**
 * Two installs on one host, side by side with default settings: two `skiff
 * up`, each with its own state folder (so its own redis-server, password and
 * cluster id), HOME and OS-chosen ports, on the same Docker engine. Neither
 * adopts, stops or restarts the other's containers when it starts, stops or
 * restarts, both serve throughout, and the second does not redirect the CLI
 * settings the first wrote (they share one private XDG_CONFIG_HOME here).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import Docker from "dockerode";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectRedis, quitRedis } from "../../src/redis/connect.ts";
import { HELLO_WORKER, runCli } from "../support/cli.ts";
import { containersOf, removeContainers } from "../support/containers.ts";
import { helloImage } from "../support/images.ts";
import { tempDirs } from "../support/temp.ts";
import {
  hit,
  outputs,
  type Proc,
  published,
  spawnSkiff,
  step,
  stopAllProcesses,
} from "./support.ts";

const docker = new Docker();
const temp = tempDirs("skiff-two");
/** Shared by both: the first writes cli.json, the second must leave it alone. */
const configHome = temp.make("xdg");

interface Install {
  name: string;
  stateDir: string;
  env: Record<string, string>;
  proc?: Proc;
  apiUrl?: string;
  gateway?: string;
  token?: string;
  agentId?: string;
  clusterId?: string;
}

function install(name: string): Install {
  return {
    name,
    stateDir: temp.make(`state-${name}`),
    env: {
      HOME: temp.make(`home-${name}`),
      XDG_CONFIG_HOME: configHome,
      REDIS_URL: "",
      SKIFF_TOKEN: "",
      SKIFF_API_URL: "",
      SKIFF_CONFIG: "",
      SKIFF_STATE_DIR: "",
      SKIFF_REDIS_PREFIX: "",
      // Default settings, except ports: two installs cannot both have 8080.
      SKIFF_API_PORT: "0",
      SKIFF_GATEWAY_PORT: "0",
      SKIFF_GATEWAY_ADMIN_PORT: "0",
      SKIFF_AGENT_PORT: "0",
      SKIFF_SCALER_PORT: "0",
    },
  };
}

const a = install("a");
const b = install("b");
let image: string | undefined;

function stateRedis(i: Install) {
  const port = readFileSync(join(i.stateDir, "redis.port"), "utf8").trim();
  const password = readFileSync(join(i.stateDir, "redis.password"), "utf8").trim();
  const r = connectRedis(`redis://:${password}@127.0.0.1:${port}`, { maxRetriesPerRequest: 1 });
  r.on("error", () => {});
  return r;
}

async function start(i: Install): Promise<void> {
  i.proc = spawnSkiff(`up-${i.name}`, ["up", "--state-dir", i.stateDir, "--no-api-tls"], i.env);
  await i.proc.waitFor(/Skiff is up/, 90_000);
  const out = i.proc.output();
  i.apiUrl = out.match(/API:\s+(\S+)/)![1]!;
  i.gateway = out.match(/Gateway:\s+(\S+)/)![1]!;
  i.token ??= out.match(/Token:\s+(skf_\S+)/)?.[1];
  i.clusterId = out.match(/Cluster:\s+(\S+)/)![1]!;
  const r = stateRedis(i);
  try {
    const agents = await r.zrange("skiff:fleet:agents", "0", "-1");
    expect(agents).toHaveLength(1);
    i.agentId = agents[0]!;
  } finally {
    await quitRedis(r);
  }
}

async function skiff(i: Install, ...args: string[]): Promise<string> {
  const r = await runCli([...args, "--api-url", i.apiUrl!, "--token", i.token!], {
    env: { ...i.env, SKIFF_CONFIG_FILE: "/nonexistent" },
  });
  expect(r.code, `${i.name}: skiff ${args.join(" ")}\n${r.stderr}\n${outputs([i.proc!])}`).toBe(0);
  return r.stdout;
}

/** id -> start time and restart count of the containers an agent owns. */
async function containers(agentId: string): Promise<Record<string, string>> {
  const list = await containersOf(agentId);
  const out: Record<string, string> = {};
  for (const c of list) {
    const info = await docker.getContainer(c.Id).inspect();
    out[c.Id.slice(0, 12)] =
      `${info.State.Status} started ${info.State.StartedAt} restarts ${info.RestartCount}`;
  }
  return out;
}

async function serves(i: Install): Promise<void> {
  const r = stateRedis(i);
  try {
    await published(r, "skiff:", `w.default.localhost`, ["w-00001"]);
  } finally {
    await quitRedis(r);
  }
  expect(await hit(i.gateway!, "w.default.localhost")).toEqual({
    status: 200,
    body: `Hello ${i.name.toUpperCase()}!`,
  });
  if (image) {
    expect(await hit(i.gateway!, "c.default.localhost")).toEqual({
      status: 200,
      body: `Hello ${i.name.toUpperCase()}!`,
    });
  }
}

beforeAll(async () => {
  image = await docker
    .ping()
    .then(() => helloImage(docker))
    .catch(() => undefined);
  if (!image) console.log("no Docker engine: isolates only");
}, 120_000);

afterAll(async () => {
  await stopAllProcesses();
  await removeContainers([a.agentId, b.agentId].filter((x): x is string => !!x));
  // A failed test may leave an install's redis-server running (its own process group).
  for (const i of [a, b]) {
    try {
      const r = stateRedis(i);
      await r.shutdown("NOSAVE").catch(() => {});
      r.disconnect();
    } catch {}
  }
  temp.removeAll();
}, 90_000);

/** The steps the tests build on: each test runs the ones it needs (once in all). */
const started = step(async () => {
  await start(a);
  await start(b);
});
const deployed = step(async () => {
  await started();
  // Default autoscaling would scale them to zero between the steps below.
  const minOne = ["--scale-min", "1"];
  for (const i of [a, b]) {
    const target = `TARGET=${i.name.toUpperCase()}`;
    await skiff(i, "service", "create", "w", "--source", HELLO_WORKER, "--env", target, ...minOne);
    if (image)
      await skiff(i, "service", "create", "c", "--image", image, "--env", target, ...minOne);
  }
});

describe("two skiff up on one host", () => {
  it("start side by side with different cluster and agent ids; only the first writes the shared CLI settings", async () => {
    await started();
    console.log(
      `a: cluster ${a.clusterId} agent ${a.agentId}; b: cluster ${b.clusterId} agent ${b.agentId}`,
    );
    expect(a.clusterId).not.toBe(b.clusterId);
    expect(a.agentId).not.toBe(b.agentId);
    const settings = JSON.parse(readFileSync(join(configHome, "skiff", "cli.json"), "utf8"));
    expect(settings).toMatchObject({ apiUrl: a.apiUrl, cluster: a.clusterId });
    expect(b.proc!.output()).toMatch(
      /CLI:\s+\S+cli\.json left as is: it points at another Skiff install/,
    );
    expect(b.proc!.output()).toContain(`SKIFF_API_URL=${b.apiUrl}`);
  }, 200_000);

  it("both serve a worker and a container of their own", async () => {
    await deployed();
    for (const i of [a, b]) await serves(i);
    if (image) {
      expect(Object.keys(await containers(a.agentId!))).toHaveLength(1);
      expect(Object.keys(await containers(b.agentId!))).toHaveLength(1);
    }
  }, 360_000);

  it("stopping and restarting one never touches the other's containers, and both keep serving", async () => {
    await deployed();
    const aBefore = await containers(a.agentId!);
    console.log(`a's containers: ${JSON.stringify(aBefore)}`);

    expect(await b.proc!.stop(30_000)).toBe(0);
    expect(await containers(b.agentId!)).toEqual({});
    expect(await containers(a.agentId!)).toEqual(aBefore);
    await serves(a);

    await start(b);
    await skiff(b, "service", "list");
    await serves(b);
    expect(await containers(a.agentId!)).toEqual(aBefore);
    const bNow = await containers(b.agentId!);

    expect(await a.proc!.stop(30_000)).toBe(0);
    expect(await containers(a.agentId!)).toEqual({});
    expect(await containers(b.agentId!)).toEqual(bNow);
    await serves(b);
    console.log(`b's containers after a stopped: ${JSON.stringify(bNow)}`);
    expect(await b.proc!.stop(30_000)).toBe(0);
  }, 480_000);
});
