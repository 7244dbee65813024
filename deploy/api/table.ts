/**
 * Server-side printing: when a client asks for a meta.k8s.io Table (kubectl
 * get does, with `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`),
 * answer one with the columns Knative's CRDs declare as printer columns,
 * computed from the same objects a plain read returns. Anything else gets
 * the object or list itself (JSON or YAML, respond.ts).
 */
import type { Context } from "hono";
import type { Plural } from "../../src/model/types.ts";
import { respond } from "./respond.ts";

// biome-ignore lint/suspicious/noExplicitAny: printer columns read any object's fields
type Obj = any;

export interface Column {
  /** As Knative's CRD names it; kubectl prints it upper-cased. */
  name: string;
  type: "string" | "integer" | "date";
  description: string;
  cell(obj: Obj): string | number | undefined;
}

const ready = (obj: Obj) => condition(obj, "Ready");

const readyColumns: Column[] = [
  {
    name: "Ready",
    type: "string",
    description: "The Ready condition's status.",
    cell: (o) => ready(o)?.status,
  },
  {
    name: "Reason",
    type: "string",
    description: "The Ready condition's reason.",
    cell: (o) => ready(o)?.reason,
  },
];

const latestColumns: Column[] = [
  {
    name: "LatestCreated",
    type: "string",
    description: "status.latestCreatedRevisionName",
    cell: (o) => o.status?.latestCreatedRevisionName,
  },
  {
    name: "LatestReady",
    type: "string",
    description: "status.latestReadyRevisionName",
    cell: (o) => o.status?.latestReadyRevisionName,
  },
];

const urlColumn: Column = {
  name: "URL",
  type: "string",
  description: "status.url",
  cell: (o) => o.status?.url,
};

/** Knative's additionalPrinterColumns (config/core/300-resources), kind by kind. */
export const KNATIVE_COLUMNS: Record<Plural, Column[]> = {
  services: [urlColumn, ...latestColumns, ...readyColumns],
  configurations: [...latestColumns, ...readyColumns],
  routes: [urlColumn, ...readyColumns],
  revisions: [
    {
      name: "Config Name",
      type: "string",
      description: "The Configuration the revision was stamped from.",
      cell: (o) => o.metadata?.labels?.["serving.knative.dev/configuration"],
    },
    {
      name: "Generation",
      type: "string",
      description: "The Configuration's generation the revision was stamped from.",
      cell: (o) => o.metadata?.labels?.["serving.knative.dev/configurationGeneration"],
    },
    ...readyColumns,
    {
      name: "Actual Replicas",
      type: "integer",
      description: "status.actualReplicas",
      cell: (o) => o.status?.actualReplicas,
    },
    {
      name: "Desired Replicas",
      type: "integer",
      description: "status.desiredReplicas",
      cell: (o) => o.status?.desiredReplicas,
    },
  ],
};

/**
 * The object or list, or its Table when the client asked for one. `value` is
 * one object or a list (`items`); both become a Table of their rows.
 */
export function respondRead(c: Context, value: Obj, columns: Column[]): Response {
  const toTable = tableFor(c, columns);
  if (!toTable) return respond(c, value);
  return c.json(toTable(Array.isArray(value.items) ? value.items : [value], value.metadata));
}

/**
 * When the client asked for Tables: what turns objects into one (a watch
 * sends each event's object as a one-row Table, as Kubernetes does).
 */
export function tableFor(
  c: Context,
  columns: Column[],
): ((objects: Obj[], listMeta?: Obj) => Obj) | undefined {
  const version = tableVersion(c.req.header("accept"));
  if (!version) return undefined;
  const include = c.req.query("includeObject") ?? "Metadata";
  const columnDefinitions = [
    {
      name: "Name",
      type: "string",
      format: "name",
      description: "Name must be unique within a namespace.",
      priority: 0,
    },
    ...columns.map(({ name, type, description }) => ({
      name,
      type,
      format: "",
      description,
      priority: 0,
    })),
  ];
  return (objects, listMeta) => ({
    kind: "Table",
    apiVersion: `meta.k8s.io/${version}`,
    metadata: { resourceVersion: listMeta?.resourceVersion ?? "" },
    columnDefinitions,
    rows: objects.map((obj) => ({
      cells: [obj.metadata?.name, ...columns.map((col) => col.cell(obj) ?? "")],
      ...(include === "None" ? {} : { object: include === "Object" ? obj : partial(obj) }),
    })),
  });
}

/** "v1" or "v1beta1" when one of the Accept header's media ranges asks for a Table. */
function tableVersion(accept: string | undefined): string | undefined {
  for (const range of (accept ?? "").split(",")) {
    const [type, ...params] = range.split(";").map((s) => s.trim());
    if (type !== "application/json") continue;
    const p = Object.fromEntries(params.map((kv) => kv.split("=").map((s) => s.trim())));
    if (p.as === "Table" && p.g === "meta.k8s.io" && (p.v === "v1" || p.v === "v1beta1"))
      return p.v;
  }
  return undefined;
}

/** What kubectl needs of a row's object: its metadata (namespace for -A, labels for -L). */
function partial(obj: Obj) {
  return {
    kind: "PartialObjectMetadata",
    apiVersion: "meta.k8s.io/v1",
    metadata: obj.metadata,
  };
}

function condition(obj: Obj, type: string): { status?: string; reason?: string } | undefined {
  const list = obj.status?.conditions;
  return Array.isArray(list) ? list.find((c: Obj) => c?.type === type) : undefined;
}
