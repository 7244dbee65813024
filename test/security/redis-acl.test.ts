/**
 * Every component under its own restricted Redis user (deploy/redis/acl.ts):
 * a private redis-server loads the generated ACL file (`default` user off),
 * the deploy API, a gateway, the scaler and an agent run as separate `skiff`
 * processes, each with `redis://skiff-ROLE:PASSWORD@...`, and a worker service
 * is deployed and answers through the gateway. Then each role tries what it
 * must not do (printed), and the shipped ACL file is the generator's output.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACL_ROLES, type AclRole, aclUserName, generateAcl } from "../../deploy/redis/acl.ts";
import { connectRedis, quitRedis } from "../../src/redis/connect.ts";
import { type RedisServer, startRedisServer } from "../../src/redis/server.ts";
import {
  apiArgs,
  hit,
  outputs,
  type Proc,
  published,
  scalerArgs,
  spawnSkiff,
  stopAllProcesses,
} from "../e2e/support.ts";
import { HELLO_WORKER, runCli } from "../support/cli.ts";
import { waitFor } from "../support/wait.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const PREFIX = "skiff:";

const passwords = Object.fromEntries(
  [...ACL_ROLES, "admin"].map((r) => [r, randomBytes(16).toString("hex")]),
) as Record<AclRole | "admin", string>;
const dir = mkdtempSync(join(tmpdir(), "skiff-acl-"));
const token = `acl-${randomBytes(12).toString("hex")}`;
let server: RedisServer;
let admin: Redis;
const procs: Proc[] = [];
let apiUrl: string;
let gatewayUrl: string;

const urlFor = (role: AclRole) =>
  `redis://${aclUserName(role)}:${passwords[role]}@127.0.0.1:${server.port}`;
const envFor = (role: AclRole) => ({
  REDIS_URL: urlFor(role),
  SKIFF_REDIS_PREFIX: PREFIX,
  SKIFF_TOKEN: "",
  SKIFF_API_URL: "",
  SKIFF_CONFIG: "",
  HOME: dir,
  XDG_CONFIG_HOME: join(dir, "config"),
  XDG_STATE_HOME: join(dir, "state"),
});

beforeAll(async () => {
  const aclFile = join(dir, "users.acl");
  writeFileSync(aclFile, generateAcl({ prefix: PREFIX, passwords }), { mode: 0o600 });
  server = await startRedisServer({
    dir: join(dir, "redis"),
    aclFile,
    username: aclUserName("admin" as AclRole),
    password: passwords.admin,
  });
  admin = connectRedis(server.url);
  await admin.acl("LOG", "RESET");

  const api = spawnSkiff("api", apiArgs(token), envFor("api"));
  const agent = spawnSkiff(
    "agent",
    [
      "agent",
      "--address",
      "127.0.0.1",
      "--port",
      "0",
      "--no-containers",
      "--isolate-processes",
      "1",
      "--isolate-state-dir",
      join(dir, "isolate"),
      "--heartbeat-interval",
      "250",
      "--heartbeat-ttl",
      "1500",
      "--resync-interval",
      "1000",
    ],
    envFor("agent"),
  );
  const gateway = spawnSkiff(
    "gateway",
    ["gateway", "--port", "0", "--admin-port", "0", "--resync-interval", "1000"],
    envFor("gateway"),
  );
  const scaler = spawnSkiff(
    "scaler",
    scalerArgs("--stable-window", "6s", "--scale-to-zero-grace", "2s"),
    envFor("scaler"),
  );
  procs.push(api, agent, gateway, scaler);
  try {
    apiUrl = (await api.waitFor(/Skiff API listening on (\S+)/))[1]!;
    await agent.waitFor(/Skiff agent \S+ serving on 127\.0\.0\.1/);
    gatewayUrl = (await gateway.waitFor(/Skiff gateway \S+ serving on (\S+)/))[1]!;
    await scaler.waitFor(/health and metrics at (\S+)/);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${outputs(procs)}`);
  }
}, 90_000);

afterAll(async () => {
  await stopAllProcesses();
  if (admin) await quitRedis(admin);
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

/** What the ACL log holds for Skiff's role users (denials), one line each. */
async function denials(): Promise<string[]> {
  const log = (await admin.acl("LOG", "1000")) as unknown[][];
  return log.map((entry) => {
    const e: Record<string, unknown> = {};
    for (let i = 0; i + 1 < entry.length; i += 2) e[String(entry[i])] = entry[i + 1];
    return `${e.username} ${e.reason} ${e.context} ${e.object}`;
  });
}

describe("each component with its own restricted Redis user", () => {
  it("deploys a worker through the API and the gateway answers, with no ACL denial on the way", async () => {
    const env = { ...envFor("api"), SKIFF_CONFIG_FILE: "/nonexistent" };
    const created = await runCli(
      [
        "service",
        "create",
        "acl",
        "--source",
        HELLO_WORKER,
        "--env",
        "TARGET=ACL",
        "--api-url",
        apiUrl,
        "--token",
        token,
      ],
      { env },
    );
    expect(created.code, `${created.stderr}\n${outputs(procs)}`).toBe(0);
    await published(admin, PREFIX, "acl.default.localhost", ["acl-00001"]);
    expect(await hit(gatewayUrl, "acl.default.localhost")).toEqual({
      status: 200,
      body: "Hello ACL!",
    });
    // The web console reads hosts, instances and gateway counters as the api user too.
    const login = await fetch(`${apiUrl}/console/login`, {
      method: "POST",
      redirect: "manual",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        origin: new URL(apiUrl).origin,
      },
      body: new URLSearchParams({ token }).toString(),
    });
    expect(login.status).toBe(303);
    const cookie = login.headers.get("set-cookie")!.split(";")[0]!;
    const page = await (await fetch(`${apiUrl}/console`, { headers: { cookie } })).text();
    expect(page).toContain("acl-00001");
    expect(page).toContain('class="host"');
    const rates = await fetch(`${apiUrl}/console/rates`, { headers: { cookie } });
    expect(rates.status).toBe(200);
    expect(Object.keys((await rates.json()) as Record<string, number>)).toEqual(["default/acl"]);
    // kubectl create ns / get ns: the API keeps made namespaces under its own user.
    const auth = { authorization: `Bearer ${token}`, "content-type": "application/json" };
    const made = await fetch(`${apiUrl}/api/v1/namespaces`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ apiVersion: "v1", kind: "Namespace", metadata: { name: "acl-ns" } }),
    });
    expect(made.status, await made.text()).toBe(201);
    const dry = await fetch(`${apiUrl}/api/v1/namespaces?dryRun=All`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ metadata: { name: "acl-ns" } }),
    });
    expect(dry.status).toBe(409);
    const listed = (await (
      await fetch(`${apiUrl}/api/v1/namespaces`, { headers: auth })
    ).json()) as { items: { metadata: { name: string } }[] };
    expect(listed.items.map((n) => n.metadata.name)).toContain("acl-ns");
    const clients = String(await admin.client("LIST"))
      .split("\n")
      .map((l) => / user=(\S+)/.exec(l)?.[1])
      .filter((u): u is string => !!u && u !== aclUserName("admin" as AclRole));
    console.log(`connected users: ${[...new Set(clients)].sort().join(", ")}`);
    for (const role of ACL_ROLES) expect(clients).toContain(aclUserName(role));
    const denied = await denials();
    expect(denied, `ACL denials:\n${denied.join("\n")}\n${outputs(procs)}`).toEqual([]);
  }, 90_000);

  /** Try a command as a role; the reply or error text. */
  async function attempt(role: AclRole, args: string[]): Promise<string> {
    const r = connectRedis(urlFor(role), { maxRetriesPerRequest: 0 });
    try {
      const [command, ...rest] = args as [string, ...string[]];
      const reply = await r.call(command, ...rest);
      return `allowed: ${JSON.stringify(reply)?.slice(0, 60)}`;
    } catch (err) {
      return (err as Error).message.split(" ").slice(0, 9).join(" ");
    } finally {
      await quitRedis(r);
    }
  }

  const forbidden: [AclRole, string, string[]][] = [
    ["gateway", "read a Knative object", ["HGETALL", `${PREFIX}obj:services:default:acl`]],
    ["gateway", "read the API token hash", ["GET", `${PREFIX}auth:token-sha256`]],
    ["gateway", "write a routing entry", ["HSET", `${PREFIX}routing:hosts`, "acl.x", "{}"]],
    ["gateway", "write a desired set", ["HSET", `${PREFIX}fleet:desired:a`, "i", "{}"]],
    [
      "gateway",
      "fake an endpoint",
      ["HSET", `${PREFIX}fleet:endpoints:default:acl-00001`, "i", "{}"],
    ],
    ["gateway", "overwrite the cluster secret", ["HSET", `${PREFIX}cluster`, "secret", "x"]],
    ["gateway", "announce a store event", ["PUBLISH", `${PREFIX}events`, "{}"]],
    ["gateway", "list every key", ["KEYS", "*"]],
    [
      "gateway",
      "read the token hash from a script (undeclared key)",
      ["EVAL", `return redis.call('GET', '${PREFIX}auth:token-sha256')`, "0"],
    ],
    ["agent", "write a routing entry", ["HSET", `${PREFIX}routing:hosts`, "acl.x", "{}"]],
    ["agent", "write its own desired set", ["HSET", `${PREFIX}fleet:desired:a`, "i", "{}"]],
    ["agent", "read the API token hash", ["GET", `${PREFIX}auth:token-sha256`]],
    ["scaler", "read the API token hash", ["GET", `${PREFIX}auth:token-sha256`]],
    ["api", "write a routing entry", ["HSET", `${PREFIX}routing:hosts`, "acl.x", "{}"]],
    ["api", "write a desired set", ["HSET", `${PREFIX}fleet:desired:a`, "i", "{}"]],
    ["api", "publish a routing change", ["PUBLISH", `${PREFIX}routing`, "acl.x"]],
    ["api", "reconfigure Redis", ["CONFIG", "SET", "appendonly", "no"]],
    ["scaler", "wipe everything", ["FLUSHALL"]],
    ["agent", "read another prefix's keys", ["GET", "other:rv"]],
  ];

  it("each role is refused what it does not need (printed)", async () => {
    expect(await admin.exists(`${PREFIX}auth:token-sha256`)).toBe(1);
    const routingBefore = await admin.hgetall(`${PREFIX}routing:hosts`);
    const lines: string[] = [];
    for (const [role, what, args] of forbidden) {
      const got = await attempt(role, args);
      lines.push(`${aclUserName(role).padEnd(14)} ${what.padEnd(52)} ${args[0]} -> ${got}`);
      // A script's own redis.call is refused with "... can't access ..." instead of NOPERM.
      expect(got, `${role}: ${what}`).toMatch(/^NOPERM|can't access/);
    }
    console.log(lines.join("\n"));
    // Those refusals are in the ACL log; the next test wants it to show only its own.
    await admin.acl("LOG", "RESET");
    expect(await admin.hgetall(`${PREFIX}routing:hosts`)).toEqual(routingBefore);
    // What each role does need still works (the same connection path).
    expect(
      await attempt("gateway", ["HGET", `${PREFIX}routing:hosts`, "acl.default.localhost"]),
    ).toMatch(/^allowed/);
  });

  it("scale to zero, activation and a hard concurrency limit (slots) work too, and a graceful stop of every component, with no denial", async () => {
    const env = { ...envFor("api"), SKIFF_CONFIG_FILE: "/nonexistent" };
    const created = await runCli(
      ["service", "create", "limited", "--source", HELLO_WORKER, "--env", "TARGET=Slots"].concat([
        "--concurrency-limit",
        "1",
        "--api-url",
        apiUrl,
        "--token",
        token,
      ]),
      { env },
    );
    expect(created.code, `${created.stderr}\n${outputs(procs)}`).toBe(0);
    await published(admin, PREFIX, "limited.default.localhost", ["limited-00001"]);
    const answers = await Promise.all(
      Array.from({ length: 6 }, () => hit(gatewayUrl, "limited.default.localhost")),
    );
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 200]);

    // "acl" goes to zero (no traffic since the first test), then a request activates it.
    const endpoints = `${PREFIX}fleet:endpoints:default:acl-00001`;
    await waitFor(
      "acl-00001 scaled to zero",
      async () => (await admin.hlen(endpoints)) === 0,
      40_000,
      200,
    );
    expect(await hit(gatewayUrl, "acl.default.localhost")).toEqual({
      status: 200,
      body: "Hello ACL!",
    });

    const codes = await Promise.all(procs.map((p) => p.stop(20_000)));
    expect(codes).toEqual([0, 0, 0, 0]);
    const denied = await denials();
    expect(denied, `ACL denials:\n${denied.join("\n")}\n${outputs(procs)}`).toEqual([]);
  }, 90_000);

  it("the anonymous default user is off", async () => {
    const r = connectRedis(`redis://127.0.0.1:${server.port}`, {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    r.on("error", () => {});
    const got = await r.connect().then(
      () =>
        r.get(`${PREFIX}rv`).then(
          () => "answered",
          (e: Error) => e.message,
        ),
      (e: Error) => e.message,
    );
    r.disconnect();
    console.log(`anonymous: ${got}`);
    expect(got).not.toBe("answered");
  });
});

describe("the shipped ACL file", () => {
  it("deploy/redis/users.acl is generateAcl() for the default prefix", () => {
    const shipped = readFileSync(join(ROOT, "deploy", "redis", "users.acl"), "utf8");
    expect(shipped).toBe(generateAcl({ prefix: "skiff:" }));
  });

  it("skiff redis-acl --prefix P prints the file for that prefix", async () => {
    const r = await runCli(["redis-acl", "--prefix", "team-a:"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(generateAcl({ prefix: "team-a:" }));
    expect(r.stdout).toContain("%R~team-a:routing:hosts");
    expect(r.stdout).not.toContain("skiff:");
  });
});
