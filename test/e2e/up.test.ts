/**
 * End to end with `skiff up` (what `npm start` runs) as a child process: its
 * private redis-server with AOF under a temporary state folder, the deploy
 * API, gateway, scaler and agent in one process, real Docker and workerd, and
 * the `skiff` CLI with the settings file `up` writes (XDG_CONFIG_HOME is a
 * temporary folder too). Every port is 0 (chosen by the OS, printed by `up`).
 *
 * Shortened by configuration (so the walkthrough fits in seconds): autoscaler
 * stable window 6 s (Knative's minimum), scale-to-zero grace 3 s, decisions
 * every 500 ms, agent heartbeat 250 ms.
 */
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectRedis } from "../../src/redis/connect.ts";
import { HELLO_WORKER, runCli, watchOutput } from "../support/cli.ts";
import { containersOf, removeContainers } from "../support/containers.ts";
import { helloImage } from "../support/images.ts";
import { connect, redisUrl, uniquePrefix } from "../support/redis.ts";
import { tempDirs } from "../support/temp.ts";
import { waitFor } from "../support/wait.ts";
import { hit, type Proc, published, spawnSkiff, step, stopAllProcesses, tally } from "./support.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

const temp = tempDirs("skiff-e2e");

/** The environment of a clean machine: no Redis, token or config from the developer's shell. */
const clean = {
  // Never the developer's own ~/.config or ~/.local/state.
  HOME: temp.make("home"),
  REDIS_URL: "",
  SKIFF_TOKEN: "",
  SKIFF_API_URL: "",
  SKIFF_CONFIG: "",
  SKIFF_STATE_DIR: "",
};

/** up's private redis-server, with the password it keeps in the state folder. */
function stateRedisUrl(stateDir: string): string {
  const port = Number(readFileSync(join(stateDir, "redis.port"), "utf8"));
  const password = readFileSync(join(stateDir, "redis.password"), "utf8").trim();
  return `redis://:${password}@127.0.0.1:${port}`;
}

/** Stop a private redis-server that a killed `up` left behind in this state folder. */
async function shutdownStateRedis(stateDir: string): Promise<void> {
  try {
    const r = connectRedis(stateRedisUrl(stateDir), {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    r.on("error", () => {});
    await r.connect();
    await r.shutdown("NOSAVE").catch(() => {});
    r.disconnect();
  } catch {}
}

const agentIds: string[] = [];
const stateDirs: string[] = [];
/** Process groups of `npm start` runs: whatever a failed test left in them goes in afterAll. */
const npmGroups: number[] = [];

afterAll(async () => {
  for (const g of npmGroups) {
    try {
      process.kill(-g, "SIGKILL");
    } catch {}
  }
  await stopAllProcesses();
  await removeContainers(agentIds);
  for (const dir of stateDirs) await shutdownStateRedis(dir);
  temp.removeAll();
}, 90_000);

/** A config file for `up`: every listener on an OS-chosen port, the given agent id. */
function upConfig(agentId: string, extra = ""): string {
  const file = join(temp.make("config"), "skiff.yaml");
  writeFileSync(
    file,
    [
      "api: { port: 0 }",
      "gateway: { adminPort: 0, resyncIntervalMs: 1000 }",
      `agent: { id: ${agentId}, port: 0, heartbeatIntervalMs: 250, heartbeatTtlMs: 1500, isolateProcesses: 1 }`,
      "scaler: { port: 0, leaseMs: 1000, resyncIntervalMs: 2000 }",
      "autoscaler: { tickInterval: 500ms }",
      extra,
    ].join("\n"),
  );
  return file;
}

/** `skiff up` on OS-chosen ports with a state folder and the config above. */
function upArgs(stateDir: string, agentId: string, ...extra: string[]): string[] {
  // Plain HTTP on loopback: these tests drive the API with fetch, not a CA.
  const ports = ["--api-port", "0", "--gateway-port", "0", "--no-api-tls"];
  return ["up", "--state-dir", stateDir, "--config", upConfig(agentId), ...ports, ...extra];
}

// Alone (-t), a test also runs the steps it builds on: more time than the default.
describe("the walkthrough with skiff up", { timeout: 90_000 }, () => {
  const agentId = `e2e-up-${randomBytes(3).toString("hex")}`;
  const stateDir = temp.make("state");
  const configHome = temp.make("xdg");
  const cliEnv = { ...clean, SKIFF_CONFIG_FILE: join(configHome, "skiff", "cli.json") };
  let up: Proc;
  let gateway: string;
  let image: string;
  /** up's private Redis, to see when the scaler has published a routing table. */
  let redis: Redis;

  beforeAll(async () => {
    agentIds.push(agentId);
    stateDirs.push(stateDir);
    image = await helloImage();
    up = spawnSkiff(
      "up",
      upArgs(stateDir, agentId, "--stable-window", "6s", "--scale-to-zero-grace", "3s"),
      { ...clean, XDG_CONFIG_HOME: configHome },
    );
    await up.waitFor(/Skiff is up/, 60_000);
    gateway = up.output().match(/Gateway:\s+(\S+)/)![1]!;
    redis = connectRedis(stateRedisUrl(stateDir), { maxRetriesPerRequest: 1 });
    redis.on("error", () => {}); // it goes away with `up` in the last test
  }, 90_000);

  afterAll(() => redis?.disconnect());

  async function skiff(...args: string[]) {
    const r = await runCli(args, { env: cliEnv });
    expect(r.code, `skiff ${args.join(" ")}\n${r.stdout}\n${r.stderr}\n${up.output()}`).toBe(0);
    return r.stdout;
  }

  // The walkthrough's steps: each test runs the ones it builds on (once in all).
  const created = step(async () => {
    const started = Date.now();
    const out = await skiff(
      "service",
      "create",
      "hello",
      "--image",
      image,
      "--env",
      "TARGET=World",
    );
    console.log(`service create hello (container) until Ready: ${Date.now() - started} ms`);
    await published(redis, "skiff:", "hello.default.localhost", ["hello-00001"]);
    return out;
  });
  const pinnedThenUpdated = step(async () => {
    await created();
    await skiff("service", "update", "hello", "--traffic", "hello-00001=100");
    await skiff("service", "update", "hello", "--env", "TARGET=Knative");
  });

  it("prints the store, API, token, gateway, service URL pattern and runtimes, and writes the CLI settings", () => {
    const out = up.output();
    expect(out).toMatch(
      /Store:\s+started redis-server at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+\/? .*append-only/,
    );
    expect(out).toMatch(/API:\s+http:\/\/127\.0\.0\.1:\d+/);
    expect(out).toMatch(/Token:\s+skf_\S+\s+\(generated now and shown once\)/);
    expect(out).toMatch(/Gateway:\s+http:\/\/127\.0\.0\.1:\d+/);
    const port = gateway.split(":").at(-1);
    expect(out).toContain(`Services: http://{name}.default.localhost:${port}`);
    expect(out).toMatch(/Runtimes:\s+isolates and containers/);
    expect(out).toMatch(/Scaling:\s+stable window 6s, scale to zero after 3s/);
    const settings = JSON.parse(readFileSync(cliEnv.SKIFF_CONFIG_FILE, "utf8"));
    expect(settings.apiUrl).toBe(out.match(/API:\s+(\S+)/)![1]);
    expect(settings.token).toMatch(/^skf_/);
  });

  it("service create hello --image ... --env TARGET=World waits until Ready, and the gateway answers Hello World!", async () => {
    const out = await created();
    expect(out).toMatch(/Service 'hello' created .*hello-00001/);
    expect(out).toContain("http://hello.default.localhost");
    const svc = JSON.parse(await skiff("service", "describe", "hello", "-o", "json"));
    expect(svc.status.conditions.find((c: { type: string }) => c.type === "Ready").status).toBe(
      "True",
    );
    await published(redis, "skiff:", "hello.default.localhost", ["hello-00001"]);
    expect(await hit(gateway, "hello.default.localhost")).toEqual({
      status: 200,
      body: "Hello World!",
    });
  });

  it("after pinning traffic to hello-00001, --env TARGET=Knative makes hello-00002 and answers stay Hello World!", async () => {
    await pinnedThenUpdated();
    const svc = JSON.parse(await skiff("service", "describe", "hello", "-o", "json"));
    expect(svc.status.latestCreatedRevisionName).toBe("hello-00002");
    expect(svc.status.latestReadyRevisionName).toBe("hello-00002");
    expect(svc.status.traffic).toEqual([
      { revisionName: "hello-00001", latestRevision: false, percent: 100 },
    ]);
    expect(await skiff("revision", "list")).toMatch(/hello-00002/);
    expect(await tally(gateway, "hello.default.localhost", 20)).toEqual({ "Hello World!": 20 });
  });

  it("--traffic hello-00001=50 --traffic @latest=50 serves both answers within binomial bounds", async () => {
    await pinnedThenUpdated();
    await skiff(
      "service",
      "update",
      "hello",
      "--traffic",
      "hello-00001=50",
      "--traffic",
      "@latest=50",
    );
    // Every request below must see the 50/50 table (see `published`).
    const returned = Date.now();
    await published(redis, "skiff:", "hello.default.localhost", ["hello-00001", "hello-00002"]);
    console.log(`50/50 table published ${Date.now() - returned - 200} ms after the CLI returned`);
    const n = 200;
    const counts = await tally(gateway, "hello.default.localhost", n);
    console.log(`50/50 split over ${n} requests: ${JSON.stringify(counts)}`);
    expect(Object.keys(counts).sort()).toEqual(["Hello Knative!", "Hello World!"]);
    // Binomial(200, 0.5): mean 100, sd 7.07; [70, 130] is +-4.2 sd (p ~ 3e-5 of a false alarm).
    expect(counts["Hello World!"]).toBeGreaterThanOrEqual(70);
    expect(counts["Hello World!"]).toBeLessThanOrEqual(130);
  });

  it("--tag hello-00002=canary answers Hello Knative! at canary-hello.default.localhost", async () => {
    await pinnedThenUpdated();
    const out = await skiff("service", "update", "hello", "--tag", "hello-00002=canary");
    expect(out).toContain("http://hello.default.localhost");
    const route = JSON.parse(await skiff("route", "describe", "hello", "-o", "json"));
    expect(route.status.traffic).toContainEqual(
      expect.objectContaining({
        revisionName: "hello-00002",
        tag: "canary",
        url: "http://canary-hello.default.localhost",
      }),
    );
    await published(redis, "skiff:", "canary-hello.default.localhost", ["hello-00002"]);
    expect(await tally(gateway, "canary-hello.default.localhost", 10)).toEqual({
      "Hello Knative!": 10,
    });
  });

  it("a worker service from examples/workers/hello.ts answers through the same gateway", async () => {
    const started = Date.now();
    await skiff("service", "create", "hello-ts", "--source", HELLO_WORKER, "--env", "TARGET=Skiff");
    console.log(`service create hello-ts (worker) until Ready: ${Date.now() - started} ms`);
    await published(redis, "skiff:", "hello-ts.default.localhost", ["hello-ts-00001"]);
    expect(await hit(gateway, "hello-ts.default.localhost")).toEqual({
      status: 200,
      body: "Hello Skiff!",
    });
  });

  it("SIGTERM stops everything: exit 0, its containers removed", async () => {
    await created();
    expect((await containersOf(agentId)).length).toBeGreaterThan(0);
    redis.disconnect();
    const started = Date.now();
    expect(await up.stop(30_000)).toBe(0);
    console.log(`skiff up stopped gracefully in ${Date.now() - started} ms`);
    expect(await containersOf(agentId)).toEqual([]);
  });
});

describe("skiff up on a machine without Docker", () => {
  it("with no Docker engine it offers isolates only, says so, and a container service reports RuntimeUnavailable", async () => {
    const agentId = `e2e-nodocker-${randomBytes(3).toString("hex")}`;
    const prefix = uniquePrefix("e2e-up");
    agentIds.push(agentId);
    const configHome = temp.make("xdg");
    const up = spawnSkiff(
      "up-no-docker",
      upArgs(temp.make("state"), agentId, "--docker-socket", "/nonexistent/docker.sock"),
      {
        ...clean,
        // The run's Redis this time (REDIS_URL given: no private redis-server).
        REDIS_URL: redisUrl(),
        SKIFF_REDIS_PREFIX: prefix,
        XDG_CONFIG_HOME: configHome,
      },
    );
    await up.waitFor(/Skiff is up/, 60_000);
    expect(up.output()).toMatch(/Store:\s+Redis at redis:\/\/127\.0\.0\.1:\d+/);
    const notice = up.output().match(/^Runtimes:.*$/m)![0];
    expect(notice).toMatch(
      /isolates only: no Docker engine answered at \/nonexistent\/docker.sock/,
    );
    const env = { ...clean, SKIFF_CONFIG_FILE: join(configHome, "skiff", "cli.json") };

    const failed = await runCli(
      ["service", "create", "c", "--image", "skiff-test/hello:any", "--wait-timeout", "30"],
      { env },
    );
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toMatch(
      /Error: service "c" failed: Revision "c-00001" failed with message: no live agent offers the container runtime \(agents: e2e-nodocker-\w+ \[isolate\]\)/,
    );
    const rev = JSON.parse(
      (await runCli(["revision", "describe", "c-00001", "-o", "json"], { env })).stdout,
    );
    expect(rev.status.conditions).toContainEqual(
      expect.objectContaining({ type: "Ready", status: "False", reason: "RuntimeUnavailable" }),
    );

    const worker = await runCli(["service", "create", "w", "--source", HELLO_WORKER], { env });
    expect(worker.code, worker.stderr).toBe(0);
    const gateway = up.output().match(/Gateway:\s+(\S+)/)![1]!;
    const redis = connect();
    try {
      await published(redis, prefix, "w.default.localhost", ["w-00001"]);
    } finally {
      redis.disconnect();
    }
    expect(await hit(gateway, "w.default.localhost")).toEqual({
      status: 200,
      body: "Hello World!",
    });
    expect(await up.stop(30_000)).toBe(0);
  }, 90_000);
});

describe("skiff up without redis-server: the in-process store", () => {
  const agentId = `e2e-mem-${randomBytes(3).toString("hex")}`;
  const stateDir = temp.make("state-mem");
  const configHome = temp.make("xdg");
  const cliEnv = { ...clean, SKIFF_CONFIG_FILE: join(configHome, "skiff", "cli.json") };
  const args = upArgs(stateDir, agentId);
  // No redis-server on PATH (nothing is: node is started by its full path).
  const env = { ...clean, PATH: "/nonexistent", XDG_CONFIG_HOME: configHome };

  async function skiff(up: Proc, ...argv: string[]) {
    const r = await runCli(argv, { env: cliEnv });
    expect(r.code, `skiff ${argv.join(" ")}\n${r.stdout}\n${r.stderr}\n${up.output()}`).toBe(0);
    return r.stdout;
  }

  it("says it uses the in-process store, serves a worker and a container, and keeps them across a restart", async () => {
    agentIds.push(agentId);
    const image = await helloImage();
    let up = spawnSkiff("up-memory", args, env);
    await up.waitFor(/Skiff is up/, 60_000);
    const file = join(stateDir, "store.json");
    expect(up.output()).toContain(
      `Store:    in-process (redis-server is not on PATH), saved to ${file}; install redis-server (or pass --redis-url) for a store that separate processes can share`,
    );
    let gateway = up.output().match(/Gateway:\s+(\S+)/)![1]!;

    // `service create` waits for Ready, and a Route is Ready only once the
    // scaler has published its traffic: the gateway serves right away.
    await skiff(up, "service", "create", "w", "--source", HELLO_WORKER, "--env", "TARGET=Memory");
    expect(await hit(gateway, "w.default.localhost")).toEqual({
      status: 200,
      body: "Hello Memory!",
    });
    await skiff(up, "service", "create", "hello", "--image", image, "--env", "TARGET=World");
    expect(await hit(gateway, "hello.default.localhost")).toEqual({
      status: 200,
      body: "Hello World!",
    });

    expect(await up.stop(30_000)).toBe(0);
    expect(await containersOf(agentId)).toEqual([]);
    expect(JSON.parse(readFileSync(file, "utf8")).version).toBe(1);

    up = spawnSkiff("up-memory-again", args, env);
    await up.waitFor(/Skiff is up/, 60_000);
    expect(up.output()).toMatch(/Store:\s+in-process .*, \d+ keys restored;/);
    gateway = up.output().match(/Gateway:\s+(\S+)/)![1]!;
    const list = await skiff(up, "service", "list");
    expect(list).toMatch(/^hello\s/m);
    expect(list).toMatch(/^w\s/m);
    // The restored routes are served at once: the gateway holds the first
    // request while the scaler places an instance again.
    expect(await hit(gateway, "w.default.localhost")).toEqual({
      status: 200,
      body: "Hello Memory!",
    });
    expect(await hit(gateway, "hello.default.localhost")).toEqual({
      status: 200,
      body: "Hello World!",
    });
    expect(await up.stop(30_000)).toBe(0);
  }, 180_000);
});

describe("npm start and a terminal's Ctrl-C", () => {
  /** Whether any process of the group still runs. */
  const groupAlive = (pgid: number) => {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch {
      return false;
    }
  };

  /**
   * A terminal's environment: without the npm_* settings of the `npx vitest`
   * running us (with them npm runs the script with piped stdio and does not
   * forward signals, unlike from a terminal).
   */
  const terminalEnv = () =>
    Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) && k !== "INIT_CWD"),
    );

  /** `npm start` in its own process group (as a terminal runs a foreground job). */
  async function npmStart(label: string) {
    const stateDir = temp.make(`state-${label}`);
    const child = spawn("npm", ["start", "--", "--no-containers", "--state-dir", stateDir], {
      cwd: ROOT,
      env: {
        ...terminalEnv(),
        ...clean,
        XDG_CONFIG_HOME: temp.make("xdg"),
        SKIFF_LOG_LEVEL: "info",
        SKIFF_API_PORT: "0",
        SKIFF_GATEWAY_PORT: "0",
        SKIFF_GATEWAY_ADMIN_PORT: "0",
        SKIFF_AGENT_PORT: "0",
        SKIFF_SCALER_PORT: "0",
        npm_config_update_notifier: "false",
      },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    stateDirs.push(stateDir);
    npmGroups.push(child.pid!);
    const watched = watchOutput(child, { name: label, defaultTimeoutMs: 60_000 });
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    await watched.waitFor(/Skiff is up/);
    const redisPort = Number(readFileSync(join(stateDir, "redis.port"), "utf8"));
    return { child, watched, exited, redisPort, pgid: child.pid! };
  }

  async function stoppedCleanly(run: Awaited<ReturnType<typeof npmStart>>, signal: string) {
    await run.exited;
    await waitFor("every process of the group gone", () => !groupAlive(run.pgid), 10_000).catch(
      (err: Error) => {
        const left = spawnSync("ps", ["-o", "pid,ppid,stat,args", "-g", String(run.pgid)]);
        throw new Error(`${err.message}\n${left.stdout}\n${run.watched.output().slice(-3000)}`);
      },
    );
    // Gone: nothing to clean up in afterAll (and its id may be reused by then).
    npmGroups.splice(npmGroups.indexOf(run.pgid), 1);
    const out = run.watched.output();
    const lines = out.split("\n").filter((l) => l.startsWith("skiff:"));
    console.log(`${signal}: ${lines.join(" | ")}`);
    expect(lines, out.slice(-4000)).toEqual([`skiff: ${signal}, shutting down`]);
    expect(out).toContain('"msg":"agent stopped"');
    expect(out).toContain('"msg":"gateway stopped"');
    expect(await answers(run.redisPort)).toBe(false);
  }

  /** Whether something still listens on the port (up's redis-server must have stopped). */
  const answers = (port: number) =>
    new Promise<boolean>((resolve) => {
      const s = createConnection({ host: "127.0.0.1", port });
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });

  it("SIGINT to the whole process group (Ctrl-C) reaches skiff once and stops it gracefully, nothing left behind", async () => {
    const run = await npmStart("npm-ctrl-c");
    process.kill(-run.pgid, "SIGINT");
    await stoppedCleanly(run, "SIGINT");
  }, 90_000);

  it("SIGTERM to npm alone (a supervisor) reaches skiff too: no orphan keeps running", async () => {
    const run = await npmStart("npm-term");
    process.kill(run.pgid, "SIGTERM");
    await stoppedCleanly(run, "SIGTERM");
  }, 90_000);
});
