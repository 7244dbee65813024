/**
 * What a gateway-capacity run measures, each started as its own process and
 * awaited until it answers 200: nginx as the static backend and as the
 * baseline proxy, the gateway (this tree's, or another commit's), and the
 * Node floor proxy.
 */
import type { ChildProcess } from "node:child_process";
import { execFileSync } from "node:child_process";
import { symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { request } from "undici";
import { freePort } from "../../src/redis/server.ts";
import { floorProxySource } from "../floor-proxy.ts";
import { HOST } from "./fleet.ts";
import { firstLine, ROOT, startProcess, tempDir } from "./processes.ts";

const BODY = "Hello Skiff!\n";

async function waitHttp(url: string, host = HOST): Promise<void> {
  for (let i = 0; i < 400; i++) {
    try {
      const res = await request(url, { headers: { host } });
      await res.body.dump();
      if (res.statusCode === 200) return;
    } catch {
      // not yet
    }
    await sleep(25);
  }
  throw new Error(`${url} did not answer 200`);
}

/** nginx answering BODY itself (`backend`) or proxying to `backendPort` with keep-alive (`proxy`). */
export async function startNginx(
  kind: "backend" | "proxy",
  opts: { core?: number; workers?: number; backendPort?: number },
): Promise<{ child: ChildProcess; port: number }> {
  const dir = await tempDir(`skiff-bench-nginx-${kind}-`);
  const port = await freePort();
  const location =
    kind === "backend"
      ? `default_type text/plain; return 200 ${JSON.stringify(BODY)};`
      : `proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;`;
  const conf = `
worker_processes ${opts.workers ?? 1};
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  ${kind === "proxy" ? `upstream backend { server 127.0.0.1:${opts.backendPort}; keepalive 128; }` : ""}
  server {
    listen 127.0.0.1:${port}${opts.workers && opts.workers > 1 ? " reuseport" : ""};
    keepalive_requests 10000000;
    location / { ${location} }
  }
}
`;
  await writeFile(join(dir, "nginx.conf"), conf);
  const child = startProcess(
    "nginx",
    ["-p", dir, "-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log")],
    opts.core,
  );
  await waitHttp(`http://127.0.0.1:${port}/`);
  return { child, port };
}

export interface GatewayProcess {
  child: ChildProcess;
  url: string;
  adminUrl: string;
  /** The process and, for a cluster, its workers. */
  pids: number[];
}

/**
 * A gateway process (this tree's, or another tree's gateway/server.ts): one
 * process without `workers`, else the cluster of gateway/cluster.ts.
 */
export async function startGatewayProcess(opts: {
  root?: string;
  redisUrl: string;
  prefix: string;
  core?: number;
  workers?: number;
  profile?: string;
  v8Flags?: string[];
}): Promise<GatewayProcess> {
  const root = opts.root ?? ROOT;
  const port = await freePort();
  const common = `redisUrl: ${JSON.stringify(opts.redisUrl)}, redisPrefix: ${JSON.stringify(opts.prefix)}, port: ${port}, adminPort: 0`;
  const source =
    opts.workers === undefined
      ? `
import { startGateway } from ${JSON.stringify(`${root}/gateway/server.ts`)};
import { pino } from "pino";
const gw = await startGateway({ ${common}, logger: pino({ level: "warn" }, pino.destination(2)) });
console.log(JSON.stringify({ url: gw.url, adminUrl: gw.adminUrl, pids: [process.pid] }));
process.once("SIGTERM", () => gw.close(1000).then(() => process.exit(0)));
`
      : `
import { startGatewayCluster } from ${JSON.stringify(`${root}/gateway/cluster.ts`)};
const gw = await startGatewayCluster({ workers: ${opts.workers}, gateway: { ${common}, logLevel: "warn" }${opts.v8Flags ? `, v8Flags: ${JSON.stringify(opts.v8Flags)}` : ""} });
console.log(JSON.stringify({ url: gw.url, adminUrl: gw.adminUrl, pids: [process.pid, ...gw.workers.map((w) => w.pid)] }));
process.once("SIGTERM", () => gw.close(1000).then(() => process.exit(0)));
`;
  const flags = opts.profile ? ["--cpu-prof", `--cpu-prof-dir=${opts.profile}`] : [];
  const child = startProcess(
    process.execPath,
    [...flags, "--input-type=module", "-e", source],
    opts.core,
  );
  const line = JSON.parse(await firstLine(child)) as Omit<GatewayProcess, "child">;
  await waitHttp(`${line.url}/`);
  return { child, ...line };
}

/** The Node floor proxy (bench/floor-proxy.ts), pinned to `core`; its URL. */
export async function startFloor(backendPort: number, core: number): Promise<string> {
  const source = floorProxySource(backendPort);
  const child = startProcess(process.execPath, ["--input-type=module", "-e", source], core);
  const url = await firstLine(child);
  await waitHttp(`${url}/`);
  return url;
}

/** This repository's gateway/ and src/ at `ref`, runnable (node_modules linked). */
export async function extractBefore(ref: string): Promise<string | undefined> {
  try {
    execFileSync("git", ["rev-parse", "--verify", `${ref}^{commit}`], {
      cwd: ROOT,
      stdio: "ignore",
    });
  } catch {
    console.log(`(no commit ${ref} in this repository: the "before" row is skipped)`);
    return undefined;
  }
  const dir = await tempDir("skiff-bench-before-");
  const tar = execFileSync("git", ["archive", ref, "gateway", "src", "package.json"], {
    cwd: ROOT,
    maxBuffer: 256 * 2 ** 20,
  });
  execFileSync("tar", ["-x", "-C", dir], { input: tar });
  await symlink(join(ROOT, "node_modules"), join(dir, "node_modules"));
  return dir;
}
