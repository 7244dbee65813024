/** `skiff up` (what `npm start` runs): a private Redis with AOF plus the API, restartable. */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, describe, expect, it } from "vitest";
import { runCli, type ServerProcess, startCliServer } from "../support/cli.ts";
import { freePort } from "../support/redis-server.ts";

const stateDir = mkdtempSync(join(tmpdir(), "skiff-up-"));
const configHome = mkdtempSync(join(tmpdir(), "skiff-cfg-"));
const env = {
  XDG_CONFIG_HOME: configHome,
  REDIS_URL: "",
  SKIFF_TOKEN: "",
  // Gateway, agent and scaler listeners on OS-chosen ports (the defaults may be taken).
  SKIFF_GATEWAY_PORT: "0",
  SKIFF_GATEWAY_ADMIN_PORT: "0",
  SKIFF_AGENT_PORT: "0",
  SKIFF_SCALER_PORT: "0",
};
let server: ServerProcess | undefined;

afterAll(async () => {
  // SIGTERM: `up` stops its agent's workerd processes and containers on the way out.
  await server?.kill("SIGTERM");
  // Should `up` not have stopped its redis-server (a failed test), stop it.
  try {
    const port = Number(readFileSync(join(stateDir, "redis.port"), "utf8"));
    const r = new Redis(port, "127.0.0.1", { lazyConnect: true, maxRetriesPerRequest: 0 });
    r.on("error", () => {});
    await r.connect();
    await r.shutdown("NOSAVE").catch(() => {});
    r.disconnect();
  } catch {}
});

async function up(apiPort: number) {
  server = startCliServer(["up", "--state-dir", stateDir, "--api-port", String(apiPort)], env);
  await server.waitFor(/API:\s+http:\/\/127\.0\.0\.1:\d+/);
  await server.waitFor(/CLI settings written|Token:.*first start/);
  return server;
}

describe("skiff up", () => {
  it("starts a private Redis and the API, prints the token once, and the CLI works with no flags", async () => {
    const apiPort = await freePort();
    const s = await up(apiPort);
    expect(s.output()).toMatch(
      /Store:\s+started redis-server at redis:\/\/127\.0\.0\.1:\d+ .*append-only/,
    );
    expect(s.output()).toMatch(/Token:\s+skf_\S+\s+\(generated now and shown once\)/);
    const settings = JSON.parse(readFileSync(join(configHome, "skiff", "cli.json"), "utf8"));
    expect(settings.apiUrl).toBe(`http://127.0.0.1:${apiPort}`);
    const created = await runCli(
      ["service", "create", "persist", "--image", "example/p", "--no-wait"],
      {
        env: { ...env, SKIFF_CONFIG_FILE: join(configHome, "skiff", "cli.json") },
      },
    );
    expect(created.code, created.stderr).toBe(0);
  });

  it("after SIGTERM and a new start on the same state folder, nothing is lost and no new token is printed", async () => {
    await server!.kill("SIGTERM");
    const s = await up(await freePort());
    expect(s.output()).not.toMatch(/generated now/);
    const settingsFile = join(configHome, "skiff", "cli.json");
    const settings = JSON.parse(readFileSync(settingsFile, "utf8"));
    const apiUrl = s.output().match(/API:\s+(\S+)/)![1]!;
    const got = await runCli(
      [
        "service",
        "describe",
        "persist",
        "-o",
        "json",
        "--api-url",
        apiUrl,
        "--token",
        settings.token,
      ],
      {
        env: { ...env, SKIFF_CONFIG_FILE: "/nonexistent" },
      },
    );
    expect(got.code, got.stderr).toBe(0);
    expect(JSON.parse(got.stdout).status.latestCreatedRevisionName).toBe("persist-00001");
  });
});

describe("skiff up --redis-url memory://NAME", () => {
  it("runs on the in-process store and says it is kept in memory only", async () => {
    const s = startCliServer(
      [
        "up",
        "--state-dir",
        mkdtempSync(join(tmpdir(), "skiff-up-mem-")),
        "--api-port",
        "0",
        "--redis-url",
        "memory://explicit",
      ],
      { ...env, XDG_CONFIG_HOME: mkdtempSync(join(tmpdir(), "skiff-cfg-")) },
    );
    try {
      await s.waitFor(/CLI settings written/);
      expect(s.output()).toContain(
        "Store:    in-process (memory://explicit), kept in memory only: gone when this process stops",
      );
    } finally {
      await s.kill("SIGTERM");
    }
  });
});
