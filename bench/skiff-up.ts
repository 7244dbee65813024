/**
 * A private `skiff up` for the benchmarks that measure a whole install: free
 * ports on 127.0.0.1, its own HOME, state folder and config file, the CLI
 * runner and an API client with the settings `up` writes. Nothing of the
 * developer's shell (API URL, token, config) leaks in.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../src/redis/server.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(ROOT, "bin", "skiff.js");

export interface Api {
  url: string;
  token: string;
}

export interface SkiffUp {
  /** The private HOME (the config file and manifests may go here too). */
  home: string;
  stateDir: string;
  ports: { api: number; gateway: number; gatewayAdmin: number; agent: number; scaler: number };
  api: Api;
  /** Run the CLI; wall time and exit code (never throws on a non-zero exit). */
  cli(args: string[]): Promise<{ ms: number; code: number; out: string }>;
  /** Everything `up` printed so far (its log, at `logLevel`). */
  output(): string;
  /** Stop `up` (SIGTERM, waits for its exit) and remove the private folders. */
  stop(): Promise<void>;
}

export interface SkiffUpOptions {
  /** Part of the temporary folder's name. */
  label: string;
  /** The config file's content (`SKIFF_CONFIG`). */
  config: Record<string, unknown>;
  /** Run the container runtime too (Docker); default false: `--no-containers`. */
  containers?: boolean;
  /** `SKIFF_LOG_LEVEL` of `up`; default warn. */
  logLevel?: string;
}

export async function startSkiffUp(options: SkiffUpOptions): Promise<SkiffUp> {
  const home = mkdtempSync(join(tmpdir(), `skiff-bench-${options.label}-`));
  const stateDir = join(home, "state");
  const ports = {
    api: await freePort(),
    gateway: await freePort(),
    gatewayAdmin: await freePort(),
    agent: await freePort(),
    scaler: await freePort(),
  };
  const configFile = join(home, "config.json");
  writeFileSync(configFile, JSON.stringify(options.config));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: home,
    XDG_CONFIG_HOME: join(home, ".config"),
    SKIFF_STATE_DIR: stateDir,
    SKIFF_LOG_LEVEL: options.logLevel ?? "warn",
    SKIFF_CONFIG: configFile,
    SKIFF_GATEWAY_ADMIN_PORT: String(ports.gatewayAdmin),
    SKIFF_AGENT_PORT: String(ports.agent),
    SKIFF_SCALER_PORT: String(ports.scaler),
  };
  for (const k of ["SKIFF_API_URL", "SKIFF_TOKEN", "SKIFF_TOKEN_FILE", "SKIFF_CONFIG_FILE"]) {
    delete env[k];
  }
  const args = [
    BIN,
    "up",
    "--api-port",
    String(ports.api),
    "--gateway-port",
    String(ports.gateway),
    // The bench reads the API with fetch over loopback: plain HTTP.
    "--no-api-tls",
  ];
  if (!options.containers) args.push("--no-containers");
  const child = spawn(process.execPath, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let stopping = false;
  child.stdout!.on("data", (d) => {
    out += d;
  });
  child.stderr!.on("data", (d) => {
    out += d;
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`skiff up did not start:\n${out}`)), 60_000);
      child.stdout!.on("data", () => {
        if (/Skiff is up/.test(out)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once("exit", (code) => reject(new Error(`skiff up exited (${code}):\n${out}`)));
    });
  } catch (err) {
    child.kill("SIGTERM");
    rmSync(home, { recursive: true, force: true });
    throw err;
  }
  // Its later output, for when it fails mid-run.
  child.once("exit", (code, signal) => {
    if (!stopping) console.error(`skiff up exited (${code ?? signal}):\n${out.slice(-4000)}`);
  });
  const settings = JSON.parse(readFileSync(join(home, ".config", "skiff", "cli.json"), "utf8"));

  return {
    home,
    stateDir,
    ports,
    api: { url: settings.apiUrl, token: settings.token },
    cli: (cliArgs) => runCli(env, cliArgs),
    output: () => out,
    async stop() {
      stopping = true;
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
      rmSync(home, { recursive: true, force: true });
    },
  };
}

function runCli(
  env: NodeJS.ProcessEnv,
  args: string[],
): Promise<{ ms: number; code: number; out: string }> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d) => {
    out += d;
  });
  child.stderr.on("data", (d) => {
    out += d;
  });
  return new Promise((resolve) =>
    child.once("exit", (code) => resolve({ ms: performance.now() - t0, code: code ?? -1, out })),
  );
}

/** GET from the deploy API: JSON, or text for /metrics. */
export async function get(api: Api, path: string): Promise<unknown> {
  const res = await fetch(`${api.url}${path}`, {
    headers: { authorization: `Bearer ${api.token}` },
  });
  if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
  return path === "/metrics" ? res.text() : res.json();
}

export interface Listed {
  metadata: { name: string };
  status?: { url?: string; conditions?: { type: string; status: string }[] };
}

export async function services(api: Api, namespace: string): Promise<Listed[]> {
  const list = (await get(
    api,
    `/apis/serving.knative.dev/v1/namespaces/${namespace}/services`,
  )) as {
    items: Listed[];
  };
  return list.items;
}

const isReady = (s: Listed) =>
  s.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;

/**
 * Poll until all `n` services of the namespace are Ready; ms since `t0`, or
 * undefined after `timeoutMs`.
 */
export async function allReady(
  api: Api,
  namespace: string,
  n: number,
  t0: number,
  timeoutMs: number,
): Promise<{ ms: number | undefined; ready: number }> {
  const deadline = performance.now() + timeoutMs;
  let ready = 0;
  while (performance.now() < deadline) {
    ready = (await services(api, namespace)).filter(isReady).length;
    if (ready >= n) return { ms: performance.now() - t0, ready };
    // Listing n services is itself work for the API: poll less often when n is large.
    await new Promise((r) => setTimeout(r, Math.max(100, n)));
  }
  return { ms: undefined, ready };
}
