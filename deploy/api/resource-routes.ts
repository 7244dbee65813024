/**
 * The Knative resources over Kubernetes-shaped REST paths:
 *
 *   /apis/serving.knative.dev/v1/namespaces/{ns}/{services|configurations|revisions|routes}[/{name}]
 *   /apis/serving.knative.dev/v1/{plural}   (across the namespaces the token may read)
 *
 * Services, Configurations and stand-alone Routes are writable (a Service's
 * own Route changes through its Service); Revisions are read-only
 * (deletable). Every list and
 * get may be a `?watch=true` stream (watch.ts).
 */
import type { Context, Hono } from "hono";
import { apply as mergePatch } from "json-merge-patch";
import type { WriteMode } from "../../src/control/apply.ts";
import {
  deleteConfiguration,
  deleteRevision,
  deleteRoute,
  deleteService,
} from "../../src/control/delete.ts";
import { type ManagedFieldsEntry, managedFieldsOf } from "../../src/control/managed-fields.ts";
import { BadRequestError, ForbiddenError, NotFoundError } from "../../src/errors.ts";
import { isDns1123Label } from "../../src/model/index.ts";
import { API_VERSION, KINDS, type Plural, type Resource } from "../../src/model/types.ts";
import { authorize, principalOf, userName, type Verb } from "./access.ts";
import { APPLY_PATCH, JSON_PATCH, mediaType, readObject, readValue } from "./body.ts";
import { applyJsonPatch } from "./json-patch.ts";
import { normalizedView } from "./prepare.ts";
import { respond } from "./respond.ts";
import { fieldManagerOf, forceOf, serverSideApply } from "./server-side-apply.ts";
import { successStatus } from "./status.ts";
import { KNATIVE_COLUMNS, respondRead, tableFor } from "./table.ts";
import { isWatch, type WatchHub } from "./watch.ts";
import { userView, type WritablePlural, type WriteDeps, writeObject } from "./write.ts";

export const BASE = "/apis/serving.knative.dev/v1";
const PLURALS = Object.keys(KINDS) as Plural[];

export interface ResourceRoutes extends WriteDeps {
  watches: WatchHub;
  /** The request body limit, which also bounds what a JSON Patch may copy. */
  bodyLimitBytes: number;
}

export function registerResourceRoutes(app: Hono, options: ResourceRoutes): void {
  const { store, watches, logger } = options;

  // Across namespaces: only the objects of namespaces the token may read.
  app.get(`${BASE}/:plural`, async (c) => {
    const plural = pluralOf(c.req.param("plural"));
    const principal = principalOf(c);
    const labels = labelSelector(c.req.query("labelSelector"));
    const fields = fieldSelector(c.req.query("fieldSelector"));
    // metadata.namespace=NS: the same as the namespace's own path (and authorized so).
    const namespace = fields.namespace;
    if (namespace !== undefined) authorize(principal, "list", plural, namespace);
    if (isWatch(c.req.query("watch")))
      return watches.open(c, principal, {
        plural,
        namespace,
        name: fields.name,
        labels,
        table: tableFor(c, KNATIVE_COLUMNS[plural]),
      });
    const items =
      principal.kind === "admin" || namespace !== undefined
        ? await store.list(plural, namespace, { labels })
        : (
            await Promise.all(principal.namespaces.map((n) => store.list(plural, n, { labels })))
          ).flat();
    return respondRead(c, listOf(plural, named(items, fields.name)), KNATIVE_COLUMNS[plural]);
  });

  const ns = `${BASE}/namespaces/:ns/:plural`;
  app.get(ns, async (c) => {
    const plural = pluralOf(c.req.param("plural"));
    const namespace = namespaceOf(c, plural, "list");
    const labels = labelSelector(c.req.query("labelSelector"));
    const fields = fieldSelector(c.req.query("fieldSelector"));
    if (fields.namespace !== undefined && fields.namespace !== namespace) {
      throw new BadRequestError(
        `fieldSelector metadata.namespace=${fields.namespace} contradicts the path's namespace "${namespace}"`,
      );
    }
    if (isWatch(c.req.query("watch")))
      return watches.open(c, principalOf(c), {
        plural,
        namespace,
        name: fields.name,
        labels,
        table: tableFor(c, KNATIVE_COLUMNS[plural]),
      });
    const items = await store.list(plural, namespace, { labels });
    return respondRead(c, listOf(plural, named(items, fields.name)), KNATIVE_COLUMNS[plural]);
  });
  app.get(`${ns}/:name`, async (c) => {
    const plural = pluralOf(c.req.param("plural"));
    const namespace = namespaceOf(c, plural, "get");
    const name = c.req.param("name");
    if (isWatch(c.req.query("watch")))
      return watches.open(c, principalOf(c), {
        plural,
        namespace,
        name,
        table: tableFor(c, KNATIVE_COLUMNS[plural]),
      });
    const obj = await store.get(plural, namespace, name);
    if (!obj) throw notFound(plural, namespace, name);
    return respondRead(c, obj, KNATIVE_COLUMNS[plural]);
  });

  app.post(ns, async (c) => {
    const plural = writable(pluralOf(c.req.param("plural")), "create");
    return write(c, plural, namespaceOf(c, plural, "create"), undefined, "create");
  });
  app.put(`${ns}/:name`, async (c) => {
    const plural = writable(pluralOf(c.req.param("plural")), "replace");
    return write(c, plural, namespaceOf(c, plural, "update"), c.req.param("name"), "replace");
  });
  app.patch(`${ns}/:name`, async (c) => {
    const plural = writable(pluralOf(c.req.param("plural")), "patch");
    const namespace = namespaceOf(c, plural, "patch");
    const name = c.req.param("name");
    const type = mediaType(c.req.header("content-type"));
    const isApply = type === APPLY_PATCH;
    const force = forceOf(c.req.query("force"), isApply);
    const patch = await readValue(c);
    const current = await store.get(plural, namespace, name);
    if (isApply) {
      const applied = asObject(patch);
      // An apply creates what is missing (its own precondition: a create).
      const { object, managedFields } = serverSideApply({
        live: current && userView(current),
        managed: current ? managedFieldsOf(current) : [],
        applied,
        manager: fieldManagerOf(c.req.query("fieldManager")),
        force,
        apiVersion: API_VERSION,
        kind: plural,
        name,
        normalize: (obj) =>
          normalizedView(plural, obj, {
            namespace,
            name,
            limits: options.limits,
            ...(options.scaling ? { scaling: options.scaling } : {}),
          }),
      });
      return writeAndAnswer(c, plural, namespace, name, object, current ? "replace" : "create", {
        managedFields,
      });
    }
    if (!current) throw notFound(plural, namespace, name);
    // A JSON Patch sees the whole object (a `test` may read status); the
    // write then ignores what is not the user's, as a PUT does.
    const patched =
      type === JSON_PATCH
        ? applyJsonPatch(current as unknown as Record<string, unknown>, patch, {
            maxBytes: options.bodyLimitBytes,
          })
        : // A merge patch applies to the user's view of the object (status is not theirs).
          (mergePatch(userView(current), structuredClone(asObject(patch))) as Record<
            string,
            unknown
          >);
    return writeAndAnswer(c, plural, namespace, name, patched, "replace");
  });
  app.delete(`${ns}/:name`, async (c) => {
    const plural = pluralOf(c.req.param("plural"));
    const namespace = namespaceOf(c, plural, "delete");
    const name = c.req.param("name");
    const dryRun = await deleteDryRun(c);
    const remove =
      plural === "services"
        ? deleteService
        : plural === "configurations"
          ? deleteConfiguration
          : plural === "revisions"
            ? deleteRevision
            : deleteRoute;
    await store.transact((tx) => remove(tx, namespace, name), { dryRun });
    logger.info({ kind: plural, namespace, name, dryRun }, "deleted");
    return respond(
      c,
      successStatus(`${plural} "${name}" deleted`, {
        name,
        group: "serving.knative.dev",
        kind: plural,
      }),
    );
  });

  async function write(
    c: Context,
    plural: WritablePlural,
    namespace: string,
    name: string | undefined,
    mode: WriteMode,
  ): Promise<Response> {
    const body = await readObject(c);
    return writeAndAnswer(c, plural, namespace, name, body, mode);
  }

  async function writeAndAnswer(
    c: Context,
    plural: WritablePlural,
    namespace: string,
    name: string | undefined,
    body: Record<string, unknown>,
    mode: WriteMode,
    extra: { managedFields?: ManagedFieldsEntry[] } = {},
  ): Promise<Response> {
    const result = await writeObject(options, {
      plural,
      namespace,
      name,
      body,
      mode,
      dryRun: isDryRun(c),
      ...extra,
      user: userName(principalOf(c)),
    });
    return respond(c, result, mode === "create" ? 201 : 200);
  }
}

/** A merge patch or apply configuration: one mapping. */
function asObject(value: unknown): Record<string, unknown> {
  if (typeof value === "object" && value !== null && !Array.isArray(value))
    return value as Record<string, unknown>;
  throw new BadRequestError(
    `this patch must be one object (a mapping), not ${Array.isArray(value) ? "a list (a list of operations is a JSON Patch: Content-Type application/json-patch+json)" : typeof value === "object" ? "null" : `a ${typeof value}`}`,
  );
}

function pluralOf(value: string): Plural {
  if ((PLURALS as string[]).includes(value)) return value as Plural;
  throw new NotFoundError(
    `the server could not find the requested resource: "${value}" is not one of ${PLURALS.join(", ")}`,
  );
}

/** The URL's namespace, once the caller's token may `verb` `plural` there (else 403). */
function namespaceOf(c: Context, plural: Plural, verb: Verb): string {
  const ns = c.req.param("ns") ?? "";
  if (!isDns1123Label(ns)) {
    throw new BadRequestError(
      `namespace "${ns.slice(0, 80)}" is not a valid name: use lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters`,
    );
  }
  authorize(principalOf(c), verb, plural, ns);
  return ns;
}

function writable(plural: Plural, verb: string): WritablePlural {
  if (plural !== "revisions") return plural;
  throw new ForbiddenError(
    `revisions cannot be ${verb === "create" ? "created" : "changed"} directly: they are immutable snapshots created from a Configuration's template; change the Service or Configuration instead`,
    { kind: "revisions" },
  );
}

function notFound(plural: Plural, namespace: string, name: string): NotFoundError {
  return new NotFoundError(`${plural} "${name}" not found in namespace "${namespace}"`, {
    kind: plural,
    name,
  });
}

function isDryRun(c: Context): boolean {
  const value = c.req.query("dryRun");
  if (value === undefined) return false;
  if (value === "All") return true;
  throw new BadRequestError(`dryRun must be "All" when given, not "${value}"`);
}

/**
 * A DELETE's dry run: `?dryRun=All`, or `dryRun: ["All"]` in a DeleteOptions
 * body, where client-go (kubectl delete --dry-run=server) puts it. Read
 * before anything is deleted: a dry run must never delete.
 */
async function deleteDryRun(c: Context): Promise<boolean> {
  const query = isDryRun(c);
  if (!(await c.req.text()).trim()) return query;
  const dryRun = (await readObject(c)).dryRun;
  if (dryRun === undefined || dryRun === null) return query;
  if (Array.isArray(dryRun) && dryRun.every((v) => v === "All")) return query || dryRun.length > 0;
  throw new BadRequestError('DeleteOptions.dryRun must be ["All"] when given');
}

/**
 * Field selectors as Kubernetes serves them for custom resources: equality
 * on metadata.name and metadata.namespace (kubectl wait and get
 * --field-selector send them; ignoring one would answer for other objects).
 */
function fieldSelector(value: string | undefined): { name?: string; namespace?: string } {
  const out: { name?: string; namespace?: string } = {};
  if (!value) return out;
  for (const part of value.split(",")) {
    const m = /^\s*(metadata\.name|metadata\.namespace)\s*==?\s*([^=\s]*)\s*$/.exec(part);
    if (!m) {
      throw new BadRequestError(
        `unsupported fieldSelector term "${part.slice(0, 80)}"; only metadata.name=NAME and metadata.namespace=NS are supported`,
      );
    }
    if (m[1] === "metadata.name") out.name = m[2]!;
    else out.namespace = m[2]!;
  }
  if (out.namespace !== undefined && !isDns1123Label(out.namespace)) {
    throw new BadRequestError(
      `fieldSelector metadata.namespace: "${out.namespace.slice(0, 80)}" is not a valid namespace`,
    );
  }
  return out;
}

function named<T extends Resource>(items: T[], name: string | undefined): T[] {
  return name === undefined ? items : items.filter((o) => o.metadata.name === name);
}

/** Equality-only label selectors: `a=b,c==d`. */
function labelSelector(value: string | undefined): Record<string, string> | undefined {
  if (!value) return undefined;
  const out: Record<string, string> = {};
  for (const part of value.split(",")) {
    const m = /^\s*([^=!\s]+)\s*==?\s*([^=\s]*)\s*$/.exec(part);
    if (!m) {
      throw new BadRequestError(
        `unsupported labelSelector term "${part}"; only equality terms like key=value are supported`,
      );
    }
    out[m[1]!] = m[2]!;
  }
  return out;
}

function listOf(plural: Plural, items: Resource[]) {
  return {
    apiVersion: API_VERSION,
    kind: `${KINDS[plural]}List`,
    metadata: {},
    items: items.sort((a, b) =>
      a.metadata.namespace === b.metadata.namespace
        ? a.metadata.name.localeCompare(b.metadata.name)
        : a.metadata.namespace.localeCompare(b.metadata.namespace),
    ),
  };
}
