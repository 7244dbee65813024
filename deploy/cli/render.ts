/** What people read: the list tables and `describe` pages of Services, Revisions and Routes. */
import type { Revision, Route, Service, TrafficTarget } from "../../src/model/types.ts";
import { Labels } from "../../src/model/types.ts";
import type { InstanceDescription, ServiceDescription } from "../api/describe.ts";
import { age, conditionSummary, readyCell, reasonCell, table } from "./output.ts";

/** A Revision's generation of its Configuration (newest first when sorted descending). */
export function generationOf(r: Revision): number {
  return Number(r.metadata.labels?.[Labels.configurationGeneration] ?? 0);
}

export function serviceTable(items: Service[], allNamespaces: boolean): string {
  const headers = ["NAME", "URL", "LATEST", "AGE", "CONDITIONS", "READY", "REASON"];
  if (allNamespaces) headers.unshift("NAMESPACE");
  return table(
    headers,
    items.map((s) => {
      const row = [
        s.metadata.name,
        s.status.url ?? "",
        s.status.latestCreatedRevisionName ?? "",
        age(s.metadata.creationTimestamp),
        conditionSummary(s),
        readyCell(s),
        reasonCell(s),
      ];
      if (allNamespaces) row.unshift(s.metadata.namespace);
      return row;
    }),
  );
}

/** Revisions newest first, with the traffic and tags their Service gives them. */
export function revisionTable(items: Revision[], services: Map<string, Service>): string {
  const rows = items
    .sort((a, b) => generationOf(b) - generationOf(a))
    .map((r) => {
      const svcName = r.metadata.labels?.[Labels.service] ?? "";
      const traffic = services.get(svcName)?.status.traffic ?? [];
      const mine = traffic.filter((t) => t.revisionName === r.metadata.name);
      const pct = mine.reduce((s, t) => s + (t.percent ?? 0), 0);
      const tags = mine.map((t) => t.tag).filter(Boolean);
      return [
        r.metadata.name,
        svcName,
        mine.length ? `${pct}%` : "",
        tags.join(","),
        String(generationOf(r)),
        age(r.metadata.creationTimestamp),
        conditionSummary(r),
        readyCell(r),
        reasonCell(r),
      ];
    });
  return table(
    ["NAME", "SERVICE", "TRAFFIC", "TAGS", "GENERATION", "AGE", "CONDITIONS", "READY", "REASON"],
    rows,
  );
}

export function routeTable(items: Route[]): string {
  return table(
    ["NAME", "URL", "READY"],
    items.map((r) => [r.metadata.name, r.status.url ?? "", readyCell(r)]),
  );
}

/**
 * `details`: the API's instances and events, or why they could not be read
 * (the page still shows what the Service itself says).
 */
export function describeService(
  svc: Service,
  revisions: Revision[],
  details: ServiceDescription | { error: string },
): string {
  const lines = [
    `Name:       ${svc.metadata.name}`,
    `Namespace:  ${svc.metadata.namespace}`,
    `URL:        ${svc.status.url ?? ""}`,
    `Age:        ${age(svc.metadata.creationTimestamp)}`,
    `Generation: ${svc.metadata.generation} (observed ${svc.status.observedGeneration ?? "-"})`,
    `Latest:     created ${svc.status.latestCreatedRevisionName ?? "-"}, ready ${svc.status.latestReadyRevisionName ?? "-"}`,
    "",
    "Traffic:",
    ...trafficLines(svc.status.traffic ?? svc.spec.traffic),
  ];
  lines.push("", "Revisions:");
  for (const r of revisions.sort((a, b) => generationOf(b) - generationOf(a))) {
    const img = r.spec.containers?.[0]?.image ?? (r.spec.worker ? "worker module" : "");
    lines.push(
      `  ${r.metadata.name}  ${readyCell(r).padEnd(7)}  ${img}  ${age(r.metadata.creationTimestamp)}`,
    );
  }
  lines.push("", "Conditions:", ...conditionLines(svc));
  if ("error" in details) {
    lines.push("", `Instances:  unavailable: ${details.error}`);
    return `${lines.join("\n")}\n`;
  }
  lines.push("", "Instances:", ...instanceLines(details));
  lines.push("", "Events:");
  if (details.events.length === 0) lines.push("  <none>");
  else {
    const rows = details.events.map((e) => [
      age(e.time),
      e.object,
      e.type,
      e.status,
      e.reason ?? "",
      oneLine(e.message ?? ""),
    ]);
    lines.push(indent(table(["AGE", "OBJECT", "TYPE", "STATUS", "REASON", "MESSAGE"], rows)));
  }
  return `${lines.join("\n")}\n`;
}

/** Per revision, per host (id and data address), one line per instance. */
function instanceLines(d: ServiceDescription): string[] {
  const lines: string[] = [];
  for (const r of d.revisions) {
    if (r.hosts.length === 0) {
      lines.push(`  ${r.name}: none`);
      continue;
    }
    lines.push(`  ${r.name}:`);
    for (const h of r.hosts) {
      const where = `${h.id}${h.address ? ` (${h.address})` : ""}${h.live ? "" : " [not reporting]"}`;
      lines.push(`    host ${where}:`);
      const rows = h.instances.map(instanceRow);
      for (const row of table(
        ["INSTANCE", "PHASE", "RUNTIME", "SINCE", "RESTARTS", "LAST FAILURE"],
        rows,
      )
        .trimEnd()
        .split("\n")) {
        lines.push(`      ${row}`);
      }
    }
  }
  return lines;
}

function instanceRow(i: InstanceDescription): string[] {
  const phase = i.reason ? `${i.phase} (${i.reason})` : i.phase;
  const f = i.lastFailure;
  return [
    i.id,
    phase,
    i.runtime,
    age(i.since),
    String(i.restarts),
    // The first line only: the whole message (with its last log lines) is in the events.
    f ? `${age(f.at)} ago ${f.reason}: ${f.message.split("\n")[0]}` : "",
  ];
}

/** A table cell: a multi-line message (a crash's last log lines) joined with " | ". */
function oneLine(text: string): string {
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean)
    .join(" | ");
}

function indent(text: string): string {
  return text
    .trimEnd()
    .split("\n")
    .map((l) => `  ${l}`)
    .join("\n");
}

export function describeRevision(r: Revision): string {
  const c = r.spec.containers?.[0];
  const env = c?.env ?? r.spec.worker?.env ?? [];
  const lines = [
    `Name:        ${r.metadata.name}`,
    `Namespace:   ${r.metadata.namespace}`,
    `Service:     ${r.metadata.labels?.[Labels.service] ?? "-"}`,
    `Generation:  ${generationOf(r)}`,
    `Age:         ${age(r.metadata.creationTimestamp)}`,
    c
      ? `Image:       ${c.image}`
      : `Worker:      ${r.status.workerArtifact?.bytes ?? "?"} bytes compiled`,
    `Concurrency: ${r.spec.containerConcurrency === 0 ? "unlimited" : r.spec.containerConcurrency}`,
    `Timeout:     ${r.spec.timeoutSeconds}s`,
    `Instances:   ${r.status.actualReplicas ?? 0} ready / ${r.status.desiredReplicas ?? 0} desired`,
  ];
  const digest = r.status.containerStatuses?.[0]?.imageDigest ?? r.status.imageDigest;
  if (c && digest) lines.push(`Digest:      ${digest}`);
  if (env.length) lines.push(`Env:         ${env.map((e) => `${e.name}=${e.value}`).join(", ")}`);
  const ann = Object.entries(r.metadata.annotations ?? {});
  if (ann.length) lines.push(`Annotations: ${ann.map(([k, v]) => `${k}=${v}`).join(", ")}`);
  lines.push("", "Conditions:", ...conditionLines(r));
  return `${lines.join("\n")}\n`;
}

export function describeRoute(r: Route): string {
  const lines = [
    `Name:      ${r.metadata.name}`,
    `Namespace: ${r.metadata.namespace}`,
    `URL:       ${r.status.url ?? ""}`,
    "",
    "Traffic:",
    ...trafficLines(r.status.traffic ?? r.spec.traffic),
  ];
  lines.push("", "Conditions:", ...conditionLines(r));
  return `${lines.join("\n")}\n`;
}

function trafficLines(traffic: TrafficTarget[]): string[] {
  return traffic.map((t) => {
    const who = t.latestRevision
      ? `@latest (${t.revisionName ?? "none ready yet"})`
      : t.revisionName;
    return `  ${String(t.percent ?? 0).padStart(3)}%  ${who}${t.tag ? `  #${t.tag} ${t.url ?? ""}` : ""}`;
  });
}

function conditionLines(obj: Service | Revision | Route): string[] {
  return (obj.status.conditions ?? []).map(
    (c) =>
      `  ${c.type.padEnd(20)} ${c.status.padEnd(7)} ${c.reason ?? ""}${c.message ? `: ${c.message}` : ""}`,
  );
}
