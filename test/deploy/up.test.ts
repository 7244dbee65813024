/**
 * `skiff up` (what `npm start` runs): a private Redis with AOF and a generated
 * password plus the API, restartable; the CLI settings it writes only for itself.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cliSettingsForUp } from "../../deploy/cli/commands/servers.ts";
import { connectRedis, quitRedis } from "../../src/redis/connect.ts";
import { startRedisServer } from "../../src/redis/server.ts";
import { runCli, type ServerProcess, startCliServer } from "../support/cli.ts";
import { freePort } from "../support/redis-server.ts";

const stateDir = mkdtempSync(join(tmpdir(), "skiff-up-"));
const configHome = mkdtempSync(join(tmpdir(), "skiff-cfg-"));
const env = {
  // Never the developer's own ~/.config or ~/.local/state.
  HOME: mkdtempSync(join(tmpdir(), "skiff-home-")),
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
    const r = stateRedis({ lazyConnect: true });
    await r.connect();
    await r.shutdown("NOSAVE").catch(() => {});
    r.disconnect();
  } catch {}
  // The state folders hold the generated CA's private key and the token.
  for (const d of [stateDir, configHome, env.HOME]) rmSync(d, { recursive: true, force: true });
});

/** Send inline commands on a plain TCP connection; one reply line each. */
function rawRedis(port: number, commands: string[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    let data = "";
    socket.on("data", (d) => {
      data += d;
      const lines = data.split("\r\n").filter(Boolean);
      if (lines.length >= commands.length) {
        socket.end();
        resolve(lines.slice(0, commands.length));
      }
    });
    socket.on("error", reject);
    socket.write(commands.map((c) => `${c}\r\n`).join(""));
  });
}

/** A connection to up's private redis-server, with the password from the state folder unless told. */
function stateRedis(options: { password?: string; lazyConnect?: boolean } = {}) {
  const port = Number(readFileSync(join(stateDir, "redis.port"), "utf8"));
  const password =
    options.password ?? readFileSync(join(stateDir, "redis.password"), "utf8").trim();
  const r = connectRedis(`redis://${password ? `:${password}@` : ""}127.0.0.1:${port}`, {
    lazyConnect: options.lazyConnect ?? false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  r.on("error", () => {});
  return r;
}

async function up(apiPort: number) {
  server = startCliServer(["up", "--state-dir", stateDir, "--api-port", String(apiPort)], env);
  // HTTPS by default, with a CA generated into the state folder.
  await server.waitFor(/API:\s+https:\/\/127\.0\.0\.1:\d+/);
  await server.waitFor(/CLI:\s+settings written|Token:.*first start/);
  return server;
}

describe("skiff up", () => {
  it("starts a private Redis and the API, prints the token once, and the CLI works with no flags", async () => {
    const apiPort = await freePort();
    const s = await up(apiPort);
    expect(s.output()).toMatch(
      /Store:\s+started redis-server at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+\/? .*append-only, password in \S+redis\.password/,
    );
    expect(s.output()).toMatch(/Token:\s+skf_\S+\s+\(generated now and shown once\)/);
    const settings = JSON.parse(readFileSync(join(configHome, "skiff", "cli.json"), "utf8"));
    expect(settings.apiUrl).toBe(`https://127.0.0.1:${apiPort}`);
    expect(settings.caFile).toBe(join(stateDir, "tls", "ca.crt"));
    const created = await runCli(
      ["service", "create", "persist", "--image", "example/p", "--no-wait"],
      {
        env: { ...env, SKIFF_CONFIG_FILE: join(configHome, "skiff", "cli.json") },
      },
    );
    expect(created.code, created.stderr).toBe(0);
  });

  it("its redis-server wants the generated password (file mode 0600, never printed) and runs in protected mode", async () => {
    const file = join(stateDir, "redis.password");
    const password = readFileSync(file, "utf8").trim();
    expect(password).toMatch(/^[0-9a-f]{48}$/);
    const mode = statSync(file).mode & 0o777;
    console.log(`redis.password mode ${mode.toString(8)}`);
    expect(mode).toBe(0o600);
    expect(server!.output()).not.toContain(password);

    // Plain RESP, as anything on the host (or a container sharing its network) would send it.
    const port = Number(readFileSync(join(stateDir, "redis.port"), "utf8"));
    const tried = ["GET skiff:cluster", "AUTH guessed", "KEYS *"];
    const replies = await rawRedis(port, tried);
    console.log(tried.map((c, i) => `${c} -> ${replies[i]}`).join("\n"));
    expect(replies[0]).toMatch(/^-NOAUTH/);
    expect(replies[1]).toMatch(/^-WRONGPASS/);
    expect(replies[2]).toMatch(/^-NOAUTH/);

    const r = stateRedis();
    try {
      expect(await r.config("GET", "protected-mode")).toEqual(["protected-mode", "yes"]);
      expect(await r.hget("skiff:cluster", "id")).toMatch(/^[0-9a-f]{12}$/);
    } finally {
      await quitRedis(r);
    }
  });

  it("after SIGTERM and a new start on the same state folder, nothing is lost and no new token is printed", async () => {
    const password = readFileSync(join(stateDir, "redis.password"), "utf8");
    await server!.kill("SIGTERM");
    const s = await up(await freePort());
    expect(s.output()).not.toMatch(/generated now/);
    expect(readFileSync(join(stateDir, "redis.password"), "utf8")).toBe(password);
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
        // No settings: the CA the state folder keeps (the same one as before the restart).
        env: {
          ...env,
          SKIFF_CONFIG_FILE: "/nonexistent",
          SKIFF_CA_FILE: join(stateDir, "tls", "ca.crt"),
        },
      },
    );
    expect(got.code, got.stderr).toBe(0);
    expect(JSON.parse(got.stdout).status.latestCreatedRevisionName).toBe("persist-00001");
  });
});

describe("skiff up after a Skiff without Redis passwords", () => {
  it("stops the old password-less redis-server of its state folder and serves the same data with a password", async () => {
    const dir = mkdtempSync(join(tmpdir(), "skiff-up-legacy-"));
    const old = await startRedisServer({
      dir: join(dir, "redis"),
      appendonly: true,
      detached: true,
    });
    const s0 = connectRedis(old.url);
    await s0.set("skiff:legacy", "kept");
    await quitRedis(s0);
    writeFileSync(join(dir, "redis.port"), `${old.port}\n`);
    const s = startCliServer(["up", "--state-dir", dir, "--api-port", "0"], {
      ...env,
      XDG_CONFIG_HOME: mkdtempSync(join(tmpdir(), "skiff-cfg-")),
    });
    try {
      await s.waitFor(/CLI:\s+settings written/);
      expect(s.output()).toMatch(/Store:\s+started redis-server at redis:\/\/:\*\*\*@/);
      const port = Number(readFileSync(join(dir, "redis.port"), "utf8"));
      const [refused] = await rawRedis(port, ["GET skiff:legacy"]);
      expect(refused).toMatch(/^-NOAUTH/);
      const password = readFileSync(join(dir, "redis.password"), "utf8").trim();
      const r = connectRedis(`redis://:${password}@127.0.0.1:${port}`);
      try {
        expect(await r.get("skiff:legacy")).toBe("kept");
      } finally {
        await quitRedis(r);
      }
    } finally {
      await s.kill("SIGTERM");
      await old.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("skiff up over HTTPS (the default)", () => {
  it("serves the API over HTTPS with a generated CA; the CLI and kubectl (its kubeconfig) trust it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "skiff-up-tls-"));
    const home = mkdtempSync(join(tmpdir(), "skiff-cfg-"));
    const s = startCliServer(
      [
        "up",
        "--state-dir",
        dir,
        "--api-port",
        "0",
        "--redis-url",
        "memory://tls",
        "--no-containers",
      ],
      { ...env, XDG_CONFIG_HOME: home },
    );
    try {
      await s.waitFor(/CLI:\s+settings written/);
      expect(s.output()).toMatch(/API:\s+https:\/\/127\.0\.0\.1:\d+/);
      expect(s.output()).toContain(`kubectl:  export KUBECONFIG=${join(dir, "kubeconfig")}`);
      for (const key of ["tls/ca.key", "tls/api.key", "kubeconfig"]) {
        expect(statSync(join(dir, key)).mode & 0o777, key).toBe(0o600);
      }
      const settings = JSON.parse(readFileSync(join(home, "skiff", "cli.json"), "utf8"));
      expect(settings.caFile).toBe(join(dir, "tls", "ca.crt"));
      // The CLI with no flags: the URL, token and CA from the settings `up` wrote.
      const cliEnv = { ...env, SKIFF_CONFIG_FILE: join(home, "skiff", "cli.json") };
      const created = await runCli(
        [
          "service",
          "create",
          "hello",
          "--image",
          "ghcr.io/knative/helloworld-go:latest",
          "--no-wait",
        ],
        { env: cliEnv },
      );
      expect(created.code, created.stderr).toBe(0);
      if (existsSync("/usr/bin/kubectl")) {
        const out = execFileSync("/usr/bin/kubectl", ["get", "ksvc"], {
          env: { PATH: process.env.PATH ?? "", HOME: home, KUBECONFIG: join(dir, "kubeconfig") },
          encoding: "utf8",
        });
        expect(out).toMatch(/^NAME\s+URL\s+LATESTCREATED/);
        expect(out).toMatch(/\nhello\s+http:\/\/hello\.default\.localhost/);
        // An isolate becomes Ready on this host's agent: kubectl wait sees it through a watch.
        const file = join(dir, "hi.yaml");
        writeFileSync(
          file,
          [
            "apiVersion: serving.knative.dev/v1",
            "kind: Service",
            "metadata: { name: hi }",
            "spec:",
            "  template:",
            "    spec:",
            "      worker:",
            "        source: 'export default { fetch() { return new Response(\"hi\") } }'",
          ].join("\n"),
        );
        const kenv = {
          PATH: process.env.PATH ?? "",
          HOME: home,
          KUBECONFIG: join(dir, "kubeconfig"),
        };
        execFileSync("/usr/bin/kubectl", ["apply", "-f", file], { env: kenv });
        const waited = execFileSync(
          "/usr/bin/kubectl",
          ["wait", "--for=condition=Ready", "ksvc/hi", "--timeout=60s"],
          { env: kenv, encoding: "utf8" },
        );
        expect(waited).toMatch(/service\.serving\.knative\.dev\/hi condition met/);
      }
      // Without the CA the same API is refused: the trust comes from the settings.
      const bare = await runCli(["service", "list"], {
        env: {
          ...cliEnv,
          SKIFF_CONFIG_FILE: join(home, "none.json"),
          SKIFF_API_URL: settings.apiUrl,
          SKIFF_TOKEN: settings.token,
        },
      });
      expect(bare.code).not.toBe(0);
    } finally {
      await s.kill("SIGTERM");
      // The state (CA key, token kubeconfig) and the CLI settings.
      for (const d of [dir, home]) rmSync(d, { recursive: true, force: true });
    }
  });
});

describe("skiff up --redis-url memory://NAME", () => {
  it("runs on the in-process store and says it is kept in memory only", async () => {
    const dirs = [
      mkdtempSync(join(tmpdir(), "skiff-up-mem-")),
      mkdtempSync(join(tmpdir(), "skiff-cfg-")),
    ];
    const s = startCliServer(
      ["up", "--state-dir", dirs[0]!, "--api-port", "0", "--redis-url", "memory://explicit"],
      { ...env, XDG_CONFIG_HOME: dirs[1]! },
    );
    try {
      await s.waitFor(/CLI:\s+settings written/);
      expect(s.output()).toContain(
        "Store:    in-process (memory://explicit), kept in memory only: gone when this process stops",
      );
    } finally {
      await s.kill("SIGTERM");
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  });
});

describe("the CLI settings skiff up writes: only its own", () => {
  const up = { apiUrl: "http://127.0.0.1:18090", clusterId: "aaaaaaaaaaaa", token: "skf_mine" };
  const fresh = () => join(mkdtempSync(join(tmpdir(), "skiff-cfg-")), "skiff", "cli.json");
  const read = (path: string) => JSON.parse(readFileSync(path, "utf8"));

  it("writes an absent file, naming the cluster", () => {
    const path = fresh();
    expect(cliSettingsForUp(up, path)).toBe(`CLI:      settings written to ${path}`);
    expect(read(path)).toEqual({ apiUrl: up.apiUrl, token: "skf_mine", cluster: up.clusterId });
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it("rewrites its own file (same cluster; or same API URL as `skiff login` wrote it), keeping the saved token", () => {
    const path = fresh();
    cliSettingsForUp(up, path);
    // A restart: new API port, token not shown again.
    const again = { apiUrl: "http://127.0.0.1:18091", clusterId: up.clusterId };
    expect(cliSettingsForUp(again, path)).toMatch(/settings written/);
    expect(read(path)).toEqual({ apiUrl: again.apiUrl, token: "skf_mine", cluster: up.clusterId });

    writeFileSync(path, JSON.stringify({ apiUrl: up.apiUrl, token: "skf_login" }));
    expect(cliSettingsForUp({ ...up, token: undefined }, path)).toMatch(/settings written/);
    expect(read(path)).toEqual({ apiUrl: up.apiUrl, token: "skf_login", cluster: up.clusterId });
  });

  it("leaves another install's file as is and says how to reach this one", () => {
    const path = fresh();
    cliSettingsForUp(
      { apiUrl: "http://127.0.0.1:8090", clusterId: "bbbbbbbbbbbb", token: "skf_b" },
      path,
    );
    const before = readFileSync(path, "utf8");
    const said = cliSettingsForUp(up, path);
    console.log(said);
    expect(readFileSync(path, "utf8")).toBe(before);
    expect(said).toContain("another Skiff install (cluster bbbbbbbbbbbb");
    expect(said).toContain(`--api-url ${up.apiUrl}`);
    expect(said).toContain(`SKIFF_API_URL=${up.apiUrl}`);
    expect(said).toContain(`skiff login --api-url ${up.apiUrl}`);
    expect(said).not.toContain("skf_mine");

    // `skiff login` to another API, and a file that is not settings: also left alone.
    writeFileSync(path, JSON.stringify({ apiUrl: "http://10.0.0.5:8090", token: "skf_x" }));
    expect(cliSettingsForUp(up, path)).toContain("another API (http://10.0.0.5:8090)");
    writeFileSync(path, "not json");
    expect(cliSettingsForUp(up, path)).toMatch(/left as is: it is not a settings file/);
    expect(readFileSync(path, "utf8")).toBe("not json");
  });
});
