/**
 * kn-compatible service flags applied to a Service manifest (the user's view:
 * metadata + spec). Pure, so every flag's meaning is pinned by unit tests.
 */
import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { parseEnv } from "node:util";
import { UsageError } from "../../src/errors.ts";
import type { EnvVar, RevisionTemplate, TrafficTarget } from "../../src/model/types.ts";

export interface ServiceFlags {
  image?: string;
  port?: string;
  env?: string[];
  envFile?: string;
  annotation?: string[];
  label?: string[];
  scaleMin?: string;
  scaleMax?: string;
  scaleTarget?: string;
  scaleInit?: string;
  scaleWindow?: string;
  scaleUtilization?: string;
  scaleMetric?: string;
  concurrencyLimit?: string;
  timeout?: string;
  revisionName?: string;
  traffic?: string[];
  tag?: string[];
  untag?: string[];
  source?: string;
  cmd?: string;
  arg?: string[];
  limit?: string[];
  network?: string;
}

export interface ServiceManifest {
  apiVersion: "serving.knative.dev/v1";
  kind: "Service";
  metadata: {
    name: string;
    namespace: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    resourceVersion?: string;
  };
  spec: { template: RevisionTemplate; traffic?: TrafficTarget[] };
}

const A = "autoscaling.knative.dev/";

/** Flags that change the revision template (and so mint a new revision). */
const TEMPLATE_FLAGS: (keyof ServiceFlags)[] = [
  "image",
  "port",
  "env",
  "envFile",
  "annotation",
  "scaleMin",
  "scaleMax",
  "scaleTarget",
  "scaleInit",
  "scaleWindow",
  "scaleUtilization",
  "scaleMetric",
  "concurrencyLimit",
  "timeout",
  "source",
  "cmd",
  "arg",
  "limit",
  "network",
];

export function touchesTemplate(flags: ServiceFlags): boolean {
  return TEMPLATE_FLAGS.some((f) => {
    const v = flags[f];
    return Array.isArray(v) ? v.length > 0 : v !== undefined;
  });
}

/** A new Service manifest from `skiff service create` flags. */
export function newServiceManifest(
  name: string,
  namespace: string,
  flags: ServiceFlags,
): ServiceManifest {
  if (!flags.image && !flags.source) {
    throw new UsageError(
      "give --image IMAGE for a container, or --source FILE for a worker module",
    );
  }
  const manifest: ServiceManifest = {
    apiVersion: "serving.knative.dev/v1",
    kind: "Service",
    metadata: { name, namespace },
    spec: { template: { metadata: {}, spec: { containerConcurrency: 0, timeoutSeconds: 300 } } },
  };
  // Let the server apply its defaults: only send what the user chose.
  delete (manifest.spec.template.spec as Partial<RevisionTemplate["spec"]>).containerConcurrency;
  delete (manifest.spec.template.spec as Partial<RevisionTemplate["spec"]>).timeoutSeconds;
  return applyServiceFlags(manifest, flags);
}

/** Apply update flags to an existing manifest (a copy is returned). */
export function applyServiceFlags(input: ServiceManifest, flags: ServiceFlags): ServiceManifest {
  const m = structuredClone(input);
  const template = m.spec.template;
  template.metadata ??= {};
  const spec = template.spec as Partial<RevisionTemplate["spec"]>;

  if (flags.image !== undefined && flags.source !== undefined) {
    throw new UsageError(
      "--image and --source exclude each other: a revision is a container or a worker",
    );
  }
  if (flags.image !== undefined) {
    delete spec.worker;
    const c = spec.containers?.[0] ?? { image: flags.image };
    c.image = flags.image;
    spec.containers = [c];
  }
  if (flags.source !== undefined) {
    delete spec.containers;
    const text = readText(flags.source, "--source");
    const ext = extname(flags.source).toLowerCase();
    if (![".js", ".mjs", ".ts", ".mts"].includes(ext)) {
      throw new UsageError(`--source ${flags.source}: expected a .js, .mjs or .ts module`);
    }
    spec.worker = {
      ...(spec.worker?.env ? { env: spec.worker.env } : {}),
      ...(spec.worker?.network ? { network: spec.worker.network } : {}),
      source: text,
      language: ext === ".ts" || ext === ".mts" ? "typescript" : "javascript",
    };
  }
  const isWorker = spec.worker !== undefined;
  const container = spec.containers?.[0];
  if (!isWorker && !container && touchesTemplate(flags)) {
    throw new UsageError("the service has no container or worker yet; give --image or --source");
  }

  // Environment: --env-file first, then --env (so a flag can override the file).
  const envChanges: [string, string | undefined][] = [];
  if (flags.envFile) {
    const parsed = parseEnv(readText(flags.envFile, "--env-file"));
    for (const [k, v] of Object.entries(parsed)) envChanges.push([k, v]);
  }
  for (const item of flags.env ?? []) envChanges.push(parseKeyValue(item, "--env", true));
  if (envChanges.length) {
    const target = isWorker ? spec.worker! : container!;
    target.env = applyEnv(target.env ?? [], envChanges);
    if (!target.env.length) delete target.env;
  }

  if (flags.port !== undefined && container) {
    const { name, port } = parsePort(flags.port);
    container.ports = [{ containerPort: port, ...(name ? { name } : {}) }];
  } else if (flags.port !== undefined) {
    throw new UsageError("--port applies to containers; a worker has no port");
  }
  if (flags.cmd !== undefined) {
    if (!container) throw new UsageError("--cmd applies to containers");
    container.command = [flags.cmd];
  }
  if (flags.arg?.length) {
    if (!container) throw new UsageError("--arg applies to containers");
    container.args = flags.arg;
  }
  if (flags.limit?.length) {
    const limits: Record<string, string> = {};
    for (const item of flags.limit) {
      const [k, v] = parseKeyValue(item, "--limit", false);
      if (k !== "cpu" && k !== "memory")
        throw new UsageError(`--limit ${item}: use cpu=QUANTITY or memory=QUANTITY`);
      limits[k] = v!;
    }
    const target = isWorker ? spec.worker! : container!;
    target.resources = { ...target.resources, limits: { ...target.resources?.limits, ...limits } };
  }
  if (flags.network !== undefined) {
    if (!isWorker) throw new UsageError("--network applies to workers (--source)");
    if (flags.network !== "none" && flags.network !== "internet") {
      throw new UsageError(`--network ${flags.network}: use none or internet`);
    }
    spec.worker!.network = flags.network;
  }
  if (flags.concurrencyLimit !== undefined)
    spec.containerConcurrency = toInt(flags.concurrencyLimit, "--concurrency-limit");
  if (flags.timeout !== undefined) spec.timeoutSeconds = toInt(flags.timeout, "--timeout");

  const annotations: [string, string | undefined][] = [];
  for (const item of flags.annotation ?? [])
    annotations.push(parseKeyValue(item, "--annotation", true));
  const scale: [keyof ServiceFlags, string][] = [
    ["scaleMin", "min-scale"],
    ["scaleMax", "max-scale"],
    ["scaleTarget", "target"],
    ["scaleInit", "initial-scale"],
    ["scaleWindow", "window"],
    ["scaleUtilization", "target-utilization-percentage"],
    ["scaleMetric", "metric"],
  ];
  for (const [flag, key] of scale) {
    const v = flags[flag];
    if (typeof v === "string") annotations.push([A + key, v]);
  }
  if (annotations.length) {
    const next = { ...template.metadata.annotations };
    for (const [k, v] of annotations) {
      if (v === undefined) delete next[k];
      else next[k] = v;
    }
    template.metadata.annotations = next;
    if (!Object.keys(next).length) delete template.metadata.annotations;
  }
  for (const item of flags.label ?? []) {
    const [k, v] = parseKeyValue(item, "--label", true);
    const labels = { ...m.metadata.labels };
    if (v === undefined) delete labels[k];
    else labels[k] = v;
    m.metadata.labels = labels;
  }

  // A user-chosen revision name must change with the template: drop the old one
  // unless a new one is given (what kn does).
  if (flags.revisionName !== undefined) template.metadata.name = flags.revisionName;
  else if (touchesTemplate(flags)) delete template.metadata.name;

  if (flags.traffic?.length || flags.tag?.length || flags.untag?.length) {
    m.spec.traffic = applyTraffic(m.spec.traffic ?? [], flags);
  }
  return m;
}

/**
 * kn's traffic flags: --traffic REF=PCT (REF a revision, a tag or @latest; all
 * unmentioned targets drop to 0), --tag REV=TAG, --untag TAG. Targets left with
 * 0% and no tag disappear.
 */
export function applyTraffic(
  current: TrafficTarget[],
  flags: Pick<ServiceFlags, "traffic" | "tag" | "untag">,
): TrafficTarget[] {
  let targets: TrafficTarget[] = (
    current.length ? current : [{ latestRevision: true, percent: 100 }]
  ).map((t) => stripStatusFields(t));
  for (const tag of flags.untag ?? []) {
    const t = targets.find((x) => x.tag === tag);
    if (!t) throw new UsageError(`--untag ${tag}: no traffic target has that tag`);
    delete t.tag;
  }
  for (const item of flags.tag ?? []) {
    const [ref, tag] = parseKeyValue(item, "--tag", false) as [string, string];
    if (targets.some((x) => x.tag === tag)) {
      throw new UsageError(`--tag ${item}: tag "${tag}" is already used; --untag ${tag} first`);
    }
    const latest = ref === "@latest";
    const match = targets.find((x) => !x.tag && (latest ? isLatest(x) : x.revisionName === ref));
    if (match) match.tag = tag;
    else
      targets.push(
        latest ? { tag, latestRevision: true, percent: 0 } : { tag, revisionName: ref, percent: 0 },
      );
  }
  if (flags.traffic?.length) {
    const seen = new Set<string>();
    for (const t of targets) t.percent = 0;
    for (const item of flags.traffic) {
      const [ref, pctText] = parseKeyValue(item, "--traffic", false) as [string, string];
      if (seen.has(ref)) throw new UsageError(`--traffic ${item}: ${ref} is given twice`);
      seen.add(ref);
      const percent = Number(pctText.replace(/%$/, ""));
      if (!Number.isInteger(percent) || percent < 0 || percent > 100) {
        throw new UsageError(`--traffic ${item}: the percent must be a whole number from 0 to 100`);
      }
      const latest = ref === "@latest";
      const match =
        targets.find((x) => x.tag === ref) ??
        targets.find((x) => (latest ? isLatest(x) : x.revisionName === ref) && !x.tag) ??
        targets.find((x) => (latest ? isLatest(x) : x.revisionName === ref));
      if (match) match.percent = percent;
      else
        targets.push(latest ? { latestRevision: true, percent } : { revisionName: ref, percent });
    }
    const sum = targets.reduce((s, t) => s + (t.percent ?? 0), 0);
    if (sum !== 100) {
      throw new UsageError(`--traffic percents add up to ${sum}, they must add up to 100`);
    }
  }
  targets = targets.filter((t) => (t.percent ?? 0) > 0 || t.tag);
  return targets.map((t) => {
    const out: TrafficTarget = {};
    if (t.tag) out.tag = t.tag;
    if (t.revisionName) out.revisionName = t.revisionName;
    out.latestRevision = !t.revisionName;
    out.percent = t.percent ?? 0;
    return out;
  });
}

function isLatest(t: TrafficTarget): boolean {
  return !t.revisionName || t.latestRevision === true;
}

function stripStatusFields(t: TrafficTarget): TrafficTarget {
  const { url: _url, configurationName: _c, ...rest } = t;
  return { ...rest };
}

function applyEnv(env: EnvVar[], changes: [string, string | undefined][]): EnvVar[] {
  const out = env.map((e) => ({ ...e }));
  for (const [name, value] of changes) {
    const i = out.findIndex((e) => e.name === name);
    if (value === undefined) {
      if (i >= 0) out.splice(i, 1);
    } else if (i >= 0) out[i]!.value = value;
    else out.push({ name, value });
  }
  return out;
}

/** `K=V`, or `K-` to remove when `removable`. */
export function parseKeyValue(
  item: string,
  flag: string,
  removable: boolean,
): [string, string | undefined] {
  const eq = item.indexOf("=");
  if (eq < 0) {
    if (removable && item.endsWith("-") && item.length > 1) return [item.slice(0, -1), undefined];
    throw new UsageError(
      `${flag} ${item}: expected KEY=VALUE${removable ? " (or KEY- to remove)" : ""}`,
    );
  }
  const key = item.slice(0, eq);
  if (!key) throw new UsageError(`${flag} ${item}: the key before '=' is empty`);
  return [key, item.slice(eq + 1)];
}

/** kn's --port: `8080` or `h2c:8080` / `http1:8080`. */
export function parsePort(value: string): { name?: string; port: number } {
  const m = /^(?:(h2c|http1):)?(\d+)$/.exec(value);
  const port = Number(m?.[2]);
  if (!m || port < 1 || port > 65535) {
    throw new UsageError(
      `--port ${value}: expected a port number 1-65535, optionally prefixed h2c: or http1:`,
    );
  }
  return m[1] ? { name: m[1], port } : { port };
}

function toInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new UsageError(`${flag} ${value}: expected a whole number`);
  return n;
}

function readText(path: string, flag: string): string {
  try {
    return path === "-" ? readFileSync(0, "utf8") : readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(`${flag} ${path}: ${(err as Error).message}`);
  }
}
