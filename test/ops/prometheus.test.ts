/**
 * The shipped monitoring (deploy/prometheus/) against a real Skiff: `skiff up
 * --no-containers` on private ports and state, a worker service, traffic and a
 * cold start, scraped by a real Prometheus (Debian's `prometheus`; skipped with
 * a message when it is not installed) that runs the shipped configuration with
 * this test's targets and the shipped rule files. Also: every label set the
 * components export stays bounded (no request paths, hosts or ids).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml, stringify as toYaml } from "yaml";
import { HELLO_WORKER, runCli, type ServerProcess, startCliServer } from "../support/cli.ts";
import { freePort } from "../support/redis-server.ts";
import { tempDirs } from "../support/temp.ts";
import { waitFor } from "../support/wait.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const SHIPPED = join(ROOT, "deploy", "prometheus");
const DASHBOARD = join(ROOT, "deploy", "grafana", "skiff.json");
const SERVICE = "ops-hello";
const HOST = `${SERVICE}.default.localhost`;
const REVISION = `${SERVICE}-00001`;

const prometheusBinary = (() => {
  const r = spawnSync("sh", ["-c", "command -v prometheus"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : undefined;
})();
if (!prometheusBinary) {
  console.warn(
    "test/ops/prometheus.test.ts: no `prometheus` on PATH, the Prometheus tests are skipped (apt-get install prometheus; scripts/test.sh installs it)",
  );
}

const temp = tempDirs("skiff-ops");

interface Skiff {
  proc: ServerProcess;
  apiUrl: string;
  /** The CA `skiff up` generated for its HTTPS API (PEM file). */
  caFile: string;
  token: string;
  gatewayUrl: string;
  /** The admin listeners, http://host:port each. */
  admin: { gateway: string; agent: string; scaler: string };
}

let skiff: Skiff;
let prometheus: ChildProcess | undefined;

/** `skiff up` on OS-chosen ports, isolates only, scale-to-zero shortened so a cold start fits the test. */
async function startSkiff(): Promise<Skiff> {
  const config = join(temp.make("config"), "skiff.yaml");
  writeFileSync(
    config,
    [
      "api: { port: 0 }",
      "gateway: { port: 0, adminPort: 0, resyncIntervalMs: 1000 }",
      `agent: { id: ops-${randomBytes(3).toString("hex")}, port: 0, heartbeatIntervalMs: 250, heartbeatTtlMs: 1500, isolateProcesses: 1 }`,
      "scaler: { port: 0, leaseMs: 1000, resyncIntervalMs: 2000 }",
      "autoscaler: { tickInterval: 500ms, stableWindow: 6s, scaleToZeroGracePeriod: 1s }",
    ].join("\n"),
  );
  const state = temp.make("state");
  const proc = startCliServer(["up", "--no-containers", "--state-dir", state, "--config", config], {
    // Never the developer's own ~/.config or ~/.local/state, Redis or token.
    HOME: temp.make("home"),
    XDG_CONFIG_HOME: temp.make("xdg"),
    REDIS_URL: "",
    SKIFF_TOKEN: "",
    SKIFF_CONFIG: "",
    SKIFF_STATE_DIR: "",
  });
  await proc.waitFor(/Skiff is up/, 60_000);
  const out = proc.output();
  const admin = out.match(/Admin:\s+gateway (\S+), agent (\S+), scaler (\S+)/)!;
  return {
    proc,
    apiUrl: out.match(/API:\s+(\S+)/)![1]!,
    caFile: join(state, "tls", "ca.crt"),
    token: out.match(/Token:\s+(skf_\S+)/)![1]!,
    gatewayUrl: out.match(/Gateway:\s+(\S+)/)![1]!,
    admin: { gateway: admin[1]!, agent: admin[2]!, scaler: admin[3]! },
  };
}

async function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  // The API is HTTPS with skiff up's own CA; the admin ports are plain HTTP.
  const dispatcher = url.startsWith("https:")
    ? new Agent({ connect: { ca: readFileSync(skiff.caFile) } })
    : undefined;
  const res = await request(url, {
    headers,
    headersTimeout: 60_000,
    bodyTimeout: 60_000,
    ...(dispatcher ? { dispatcher } : {}),
  });
  return { status: res.statusCode, body: await res.body.text() };
}

const hitService = (path = "/", headers: Record<string, string> = {}) =>
  get(`${skiff.gatewayUrl}${path}`, { host: HOST, ...headers });

/** Every component's /metrics text (the API's with the admin token). */
async function scrapeAll(): Promise<Record<string, string>> {
  const auth = { authorization: `Bearer ${skiff.token}` };
  const out: Record<string, string> = {};
  for (const [name, url, headers] of [
    ["api", skiff.apiUrl, auth],
    ["gateway", skiff.admin.gateway, {}],
    ["agent", skiff.admin.agent, {}],
    ["scaler", skiff.admin.scaler, {}],
  ] as const) {
    const r = await get(`${url}/metrics`, headers);
    expect(r.status, `${name} /metrics: ${r.body}`).toBe(200);
    out[name] = r.body;
  }
  return out;
}

/** A series' value in a /metrics text, or undefined when it is not there. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) {
      return Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return undefined;
}

beforeAll(async () => {
  skiff = await startSkiff();
  const created = await runCli(
    ["service", "create", SERVICE, "--source", HELLO_WORKER, "--env", "TARGET=Ops"],
    { env: { SKIFF_API_URL: skiff.apiUrl, SKIFF_TOKEN: skiff.token, SKIFF_CA_FILE: skiff.caFile } },
  );
  expect(created.code, `${created.stdout}\n${created.stderr}\n${skiff.proc.output()}`).toBe(0);
  await waitFor("the service answers through the gateway", async () => {
    const r = await hitService();
    return r.status === 200 && r.body.trim() === "Hello Ops!";
  });
}, 120_000);

afterAll(async () => {
  if (prometheus && prometheus.exitCode === null) {
    const exited = once(prometheus, "exit");
    prometheus.kill("SIGTERM");
    await exited;
  }
  // SIGTERM: `up` stops its workerd processes and its private redis-server.
  await skiff?.proc.kill("SIGTERM");
  temp.removeAll();
}, 60_000);

describe("traffic and a cold start", () => {
  it("serves 20 requests, scales the revision to zero, and a request after that waits for a cold start", async () => {
    for (let i = 0; i < 20; i++) expect((await hitService()).status).toBe(200);
    // The scaler's gauge follows its passes: first see the instance it scales
    // down, else a pass that ran before the instance was ready reads as "zero".
    await waitFor(`the scaler counting ${REVISION}'s ready instance`, async () => {
      const text = (await get(`${skiff.admin.scaler}/metrics`)).body;
      return (sample(text, "skiff_scaler_ready_instances", { revision: REVISION }) ?? 0) >= 1;
    });
    await waitFor(
      `${REVISION} at zero ready instances`,
      async () => {
        const text = (await get(`${skiff.admin.scaler}/metrics`)).body;
        return sample(text, "skiff_scaler_ready_instances", { revision: REVISION }) === 0;
      },
      60_000,
      200,
    );
    const cold = await hitService();
    expect(cold.status).toBe(200);
    const gateway = (await get(`${skiff.admin.gateway}/metrics`)).body;
    const waits = gateway.match(/^skiff_gateway_cold_start_wait_seconds_count\S* (\d+)/m);
    expect(Number(waits?.[1])).toBeGreaterThanOrEqual(1);
  }, 90_000);
});

describe("metric label sets stay bounded", () => {
  const marks: string[] = [];
  const mark = () => {
    const m = `zq${randomBytes(5).toString("hex")}`;
    marks.push(m);
    return m;
  };

  /** 25 rounds of requests, each with fresh paths, hosts, names and request ids. */
  async function distinctRequests(): Promise<void> {
    const auth = { authorization: `Bearer ${skiff.token}` };
    for (let i = 0; i < 25; i++) {
      // A served host with a fresh path, query and request id each time.
      const served = await hitService(`/${mark()}/x?q=${mark()}`, { "x-request-id": mark() });
      expect(served.status).toBe(200);
      // A host no route names (404 from the gateway).
      await get(`${skiff.gatewayUrl}/${mark()}`, { host: `${mark()}.default.localhost` });
      // The API: a route pattern with a fresh name, and a path no route has.
      await get(
        `${skiff.apiUrl}/apis/serving.knative.dev/v1/namespaces/default/services/${mark()}`,
        auth,
      );
      await get(`${skiff.apiUrl}/${mark()}/${mark()}`, { ...auth, "x-request-id": mark() });
    }
  }

  /** The series (name and labels) of every request-labelled metric in a /metrics text. */
  const requestSeries = (text: string) =>
    new Set(
      text
        .split("\n")
        .filter((l) => /^skiff_(gateway_request|api_http_request)/.test(l))
        .map((l) => l.slice(0, l.lastIndexOf(" "))),
    );

  it("after requests to many distinct paths, hosts and request ids, no label value holds any of them", async () => {
    await distinctRequests();
    for (const [component, text] of Object.entries(await scrapeAll())) {
      const values = [...text.matchAll(/[a-zA-Z_]+="((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!);
      const leaked = values.filter((v) => marks.some((m) => v.includes(m)));
      expect(leaked, `${component} /metrics labels`).toEqual([]);
    }
  }, 60_000);

  it("a second round of 100 new paths, hosts and ids adds no request series at all", async () => {
    const before = await scrapeAll();
    await distinctRequests();
    const after = await scrapeAll();
    for (const component of Object.keys(after)) {
      const known = requestSeries(before[component]!);
      const added = [...requestSeries(after[component]!)].filter((k) => !known.has(k));
      console.log(`${component}: ${known.size} request series, ${added.length} added`);
      expect(added, component).toEqual([]);
    }
  }, 60_000);
});

/**
 * Every skiff_* metric name the shipped rules' and dashboard's expressions
 * query (recording rules' own skiff:* names are checked where they are used).
 */
function referencedMetrics(): string[] {
  const exprs: string[] = [];
  for (const f of readdirSync(SHIPPED).filter((f) => f.endsWith(".rules.yml"))) {
    const rules = parseYaml(readFileSync(join(SHIPPED, f), "utf8")) as {
      groups: { rules: { expr: string }[] }[];
    };
    for (const g of rules.groups) for (const r of g.rules) exprs.push(r.expr);
  }
  const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as {
    panels: { targets?: { expr: string }[] }[];
    templating: { list: { query?: unknown }[] };
  };
  for (const p of dashboard.panels) for (const t of p.targets ?? []) exprs.push(t.expr);
  for (const v of dashboard.templating.list) if (typeof v.query === "string") exprs.push(v.query);
  const names = new Set<string>();
  for (const e of exprs) for (const m of e.matchAll(/\bskiff_[a-z0-9_]+/g)) names.add(m[0]);
  return [...names].sort();
}

describe.skipIf(!prometheusBinary)(
  "a real Prometheus with the shipped configuration and rules",
  () => {
    let promUrl: string;

    /** The shipped prometheus.yml with this test's targets, token and a 1 s interval. */
    function derivedConfig(dir: string): string {
      const shipped = parseYaml(readFileSync(join(SHIPPED, "prometheus.yml"), "utf8"));
      const jobs = shipped.scrape_configs as Record<string, unknown>[];
      expect(jobs.map((j) => j.job_name)).toEqual([
        "skiff-api",
        "skiff-gateway",
        "skiff-scaler",
        "skiff-agent",
      ]);
      const hostPort = (url: string) => new URL(url).host;
      const targets: Record<string, string> = {
        "skiff-api": hostPort(skiff.apiUrl),
        "skiff-gateway": hostPort(skiff.admin.gateway),
        "skiff-scaler": hostPort(skiff.admin.scaler),
        "skiff-agent": hostPort(skiff.admin.agent),
      };
      mkdirSync(join(dir, "targets"));
      const tokenFile = join(dir, "skiff-api.token");
      writeFileSync(tokenFile, skiff.token, { mode: 0o400 });
      for (const job of jobs) {
        const sd = job.file_sd_configs as { files: string[] }[];
        for (const c of sd) {
          c.files = c.files.map((f) => {
            const file = join(dir, f);
            writeFileSync(file, toYaml([{ targets: [targets[job.job_name as string]] }]));
            return file;
          });
        }
        const auth = job.authorization as { credentials_file?: string } | undefined;
        if (auth?.credentials_file) auth.credentials_file = tokenFile;
        const tls = job.tls_config as { ca_file?: string } | undefined;
        if (tls?.ca_file) tls.ca_file = skiff.caFile;
      }
      shipped.global = {
        ...shipped.global,
        scrape_interval: "1s",
        scrape_timeout: "1s",
        evaluation_interval: "1s",
      };
      shipped.rule_files = (shipped.rule_files as string[]).map((f) => join(SHIPPED, f));
      const file = join(dir, "prometheus.yml");
      writeFileSync(file, toYaml(shipped));
      return file;
    }

    async function query(
      expr: string,
    ): Promise<{ metric: Record<string, string>; value: number }[]> {
      const r = await get(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
      const body = JSON.parse(r.body);
      expect(body.status, `${expr}: ${r.body}`).toBe("success");
      return body.data.result.map(
        (s: { metric: Record<string, string>; value: [number, string] }) => ({
          metric: s.metric,
          value: Number(s.value[1]),
        }),
      );
    }

    /** Waits until the query returns at least one series and `ok` holds for it; returns them. */
    const until = (expr: string, ok: (values: number[]) => boolean = () => true) =>
      waitFor(
        expr,
        async () => {
          const result = await query(expr);
          return result.length > 0 && ok(result.map((s) => s.value)) && result;
        },
        30_000,
        250,
      );

    beforeAll(async () => {
      const dir = temp.make("prometheus");
      const config = derivedConfig(dir);
      const port = await freePort();
      promUrl = `http://127.0.0.1:${port}`;
      prometheus = spawn(
        prometheusBinary!,
        [
          `--config.file=${config}`,
          `--storage.tsdb.path=${join(dir, "data")}`,
          `--web.listen-address=127.0.0.1:${port}`,
          "--log.level=warn",
        ],
        { stdio: ["ignore", "ignore", "pipe"] },
      );
      let log = "";
      prometheus.stderr!.on("data", (d) => {
        log += d;
      });
      await waitFor(
        `Prometheus ready at ${promUrl}`,
        async () => {
          if (prometheus!.exitCode !== null) throw new Error(`prometheus exited: ${log}`);
          return (await get(`${promUrl}/-/ready`)).status === 200;
        },
        30_000,
        100,
      );
    }, 60_000);

    it("scrapes every component: up is 1 for the api, gateway, scaler and agent jobs", async () => {
      const up = await until(
        'up{job=~"skiff-.*"}',
        (v) => v.length === 4 && v.every((x) => x === 1),
      );
      expect(up.map((s) => s.metric.job).sort()).toEqual([
        "skiff-agent",
        "skiff-api",
        "skiff-gateway",
        "skiff-scaler",
      ]);
    });

    it("has the key series with sane values: requests of the service, its cold start, one leader, Redis up everywhere", async () => {
      // The traffic above: 20 + 25 requests and a cold start, at least.
      await until(
        `sum(skiff_gateway_requests_total{namespace="default",service="${SERVICE}",code="200"})`,
        ([v]) => v! >= 45,
      );
      await until("sum(skiff_gateway_cold_start_wait_seconds_count)", ([v]) => v! >= 1);
      await until('sum(skiff_agent_cold_start_seconds_count{runtime="isolate"})', ([v]) => v! >= 2);
      // A rate needs increases Prometheus saw: requests while it scrapes.
      await waitFor(
        "a median latency of the service from requests Prometheus saw",
        async () => {
          for (let i = 0; i < 5; i++) expect((await hitService()).status).toBe(200);
          const [median] = await query(
            `histogram_quantile(0.5, sum by (le) (rate(skiff_gateway_request_duration_seconds_bucket{service="${SERVICE}"}[1m])))`,
          );
          return median && Number.isFinite(median.value) && median.value > 0 && median.value < 5;
        },
        30_000,
        500,
      );
      await until("sum(skiff_scaler_leader)", ([v]) => v === 1);
      const redis = await until("skiff_redis_up", (v) => v.length === 4 && v.every((x) => x === 1));
      expect(redis.map((s) => s.metric.job).sort()).toEqual([
        "skiff-agent",
        "skiff-api",
        "skiff-gateway",
        "skiff-scaler",
      ]);
      await until('skiff_agent_capacity{resource="instances"}', ([v]) => v! > 0);
      await until('sum(skiff_api_http_requests_total{method="POST"})', ([v]) => v! >= 1);
      // The recording rule: the leader's view of the revision.
      await until(`skiff:revision_desired_instances{revision="${REVISION}"}`, ([v]) => v! >= 0);
    }, 120_000);

    it("every metric the shipped rules and dashboard query is one a component declares", async () => {
      const names = referencedMetrics();
      expect(names.length).toBeGreaterThan(10);
      // Scraped HELP/TYPE lines: a labelled counter with nothing counted yet
      // (no failures, no retries) has no samples, but its component declares it.
      const declared = await waitFor("metadata of the scraped targets", async () => {
        const body = JSON.parse((await get(`${promUrl}/api/v1/metadata`)).body);
        const found = new Set(Object.keys(body.data as Record<string, unknown>));
        return found.has("skiff_scaler_leader") && found;
      });
      const base = (n: string) => n.replace(/_(bucket|count|sum)$/, "");
      expect(names.filter((n) => !declared.has(n) && !declared.has(base(n)))).toEqual([]);
    });

    it("every dashboard query is valid PromQL that Prometheus evaluates", async () => {
      const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as {
        panels: { title: string; targets?: { expr: string }[] }[];
      };
      const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
      expect(exprs.length).toBeGreaterThan(15);
      for (const expr of exprs) {
        // Grafana's variables, as Grafana would fill them in.
        await query(
          expr
            .replaceAll("$__rate_interval", "1m")
            .replaceAll("$namespace", ".*")
            .replaceAll("$service", ".*"),
        );
      }
    });

    it("its alerts fire on the exported series, with their labels, after their `for` (promtool test rules)", () => {
      const r = spawnSync(
        join(dirname(prometheusBinary!), "promtool"),
        ["test", "rules", join(ROOT, "test", "ops", "skiff-rules.promtest.yml")],
        { encoding: "utf8" },
      );
      expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    });

    it("loads the shipped rule files: /api/v1/rules lists their groups, every rule evaluates", async () => {
      const groups = await waitFor(
        "every rule evaluated without error",
        async () => {
          const body = JSON.parse((await get(`${promUrl}/api/v1/rules`)).body);
          const gs = body.data.groups as {
            name: string;
            file: string;
            rules: { name: string; health: string; lastError?: string }[];
          }[];
          return gs.every((g) => g.rules.every((r) => r.health === "ok")) && gs;
        },
        30_000,
        250,
      );
      expect(groups.map((g) => g.name).sort()).toEqual(["skiff-alerts", "skiff-recording"]);
      const alerts = groups.find((g) => g.name === "skiff-alerts")!.rules.map((r) => r.name);
      expect(alerts).toEqual(
        expect.arrayContaining([
          "SkiffRevisionNoReadyInstance",
          "SkiffService5xxRatioHigh",
          "SkiffAgentDown",
          "SkiffScalerNoLeader",
          "SkiffRedisUnreachable",
          "SkiffColdStartSlow",
        ]),
      );
    });
  },
);
