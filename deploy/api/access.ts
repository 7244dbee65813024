/**
 * Who may do what: bearer authentication against the token store, and the
 * namespace/role check every resource route makes. `view` reads, `edit`
 * reads and writes, the admin does everything (tokens and /metrics included).
 * Refusals are Kubernetes Status objects naming the verb, the resource and
 * the namespace that were refused.
 */
import type { Context, MiddlewareHandler } from "hono";
import {
  BadRequestError,
  ForbiddenError,
  UnauthorizedError,
  ValidationError,
} from "../../src/errors.ts";
import { child, Issues, readArray, readObject, readString } from "../../src/model/fields.ts";
import { checkDns1123Label } from "../../src/model/names.ts";
import { type Principal, ROLES, type Role, type TokenRecord, type TokenStore } from "./token.ts";

export const TOKEN_API_VERSION = "skiff.dev/v1";
export const TOKENS_PATH = "/apis/skiff.dev/v1/tokens";
/** Most namespaces one token may name. */
export const MAX_TOKEN_NAMESPACES = 100;

export type Verb = "get" | "list" | "create" | "update" | "patch" | "delete";

const READS: readonly Verb[] = ["get", "list"];

/** Reads `Authorization: Bearer <token>` and sets c.var.principal; 401/400 otherwise. */
export function authenticate(tokens: TokenStore): MiddlewareHandler {
  return async (c, next) => {
    const header = c.req.header("authorization");
    if (!header) {
      throw new UnauthorizedError(
        "missing bearer token; set SKIFF_TOKEN, pass --token-file FILE, or run skiff login",
      );
    }
    const m = /^Bearer[ \t]+([A-Za-z0-9._~+/=-]+)[ \t]*$/i.exec(header);
    if (!m) {
      throw new BadRequestError(
        "malformed Authorization header; expected: Authorization: Bearer <token>",
      );
    }
    const principal = await tokens.authenticate(m[1]!);
    if (!principal) throw new UnauthorizedError("invalid bearer token (unknown or revoked)");
    c.set("principal", principal);
    await next();
  };
}

export function principalOf(c: Context): Principal {
  const p = c.get("principal") as Principal | undefined;
  // The middleware runs before every route that asks; reaching here without it is our bug.
  if (!p) throw new Error("internal: route without authentication");
  return p;
}

/**
 * The identity Knative's creator/lastModifier annotations record: the admin
 * token as "skiff:admin" (token names are DNS labels, so no token can take
 * it), a namespaced token by its name.
 */
export function userName(p: Principal): string {
  return p.kind === "admin" ? "skiff:admin" : p.name;
}

export function describePrincipal(p: Principal): string {
  return p.kind === "admin"
    ? "the admin token"
    : `token "${p.name}" (role ${p.role} in namespace${p.namespaces.length === 1 ? "" : "s"} ${p.namespaces.join(", ")})`;
}

/** May `p` do `verb` in `namespace`? */
export function allowed(p: Principal, verb: Verb, namespace: string): boolean {
  if (p.kind === "admin") return true;
  if (!p.namespaces.includes(namespace)) return false;
  return READS.includes(verb) || p.role === "edit";
}

/** Throws a 403 naming what was refused and what would allow it. */
export function authorize(
  p: Principal,
  verb: Verb,
  resource: string,
  namespace: string,
  group = "serving.knative.dev",
): void {
  if (allowed(p, verb, namespace)) return;
  const why =
    p.kind === "token" && p.namespaces.includes(namespace)
      ? `its role "${p.role}" only reads; a token with role "edit" may ${verb}`
      : `it is not scoped to namespace "${namespace}"`;
  throw new ForbiddenError(
    `${resource} is forbidden: ${describePrincipal(p)} cannot ${verb} resource "${resource}" in API group "${group}" in the namespace "${namespace}": ${why}`,
    { kind: resource },
  );
}

/** Admin-only endpoints (tokens, /metrics). */
export function requireAdmin(p: Principal, what: string): void {
  if (p.kind === "admin") return;
  throw new ForbiddenError(
    `${what} is forbidden: ${describePrincipal(p)} is not the admin token; only the admin token may use it`,
  );
}

export interface TokenSpec {
  name: string;
  role: Role;
  namespaces: string[];
}

/** Validate a Token body: { apiVersion: skiff.dev/v1, kind: Token, metadata: {name}, spec: {role, namespaces} }. */
export function parseTokenBody(body: unknown): TokenSpec {
  const issues = new Issues();
  const root = readObject(body, "", issues, {
    known: ["apiVersion", "kind", "metadata", "spec"],
    ignored: ["status"],
  });
  let name: string | undefined;
  let role: Role | undefined;
  let namespaces: string[] | undefined;
  if (root) {
    const apiVersion = readString(root.apiVersion, "apiVersion", issues);
    if (apiVersion !== undefined && apiVersion !== TOKEN_API_VERSION)
      issues.add("apiVersion", `must be "${TOKEN_API_VERSION}" (got "${apiVersion}")`);
    const kind = readString(root.kind, "kind", issues);
    if (kind !== undefined && kind !== "Token")
      issues.add("kind", `must be "Token" (got "${kind}")`);
    const meta = readObject(
      root.metadata,
      "metadata",
      issues,
      { known: ["name"], ignored: ["creationTimestamp"] },
      { required: true },
    );
    name = readString(meta?.name, "metadata.name", issues, { required: true, maxLength: 63 });
    if (name !== undefined) {
      const bad = checkDns1123Label(name);
      if (bad !== undefined) {
        issues.add("metadata.name", bad);
        name = undefined;
      }
    }
    const spec = readObject(
      root.spec,
      "spec",
      issues,
      { known: ["role", "namespaces"] },
      { required: true },
    );
    const r = readString(spec?.role, child("spec", "role"), issues, { required: true });
    if (r !== undefined && !(ROLES as string[]).includes(r)) {
      issues.add("spec.role", `must be one of ${ROLES.join(", ")} (got "${r.slice(0, 40)}")`);
    } else role = r as Role | undefined;
    const list = readArray(spec?.namespaces, "spec.namespaces", issues, {
      required: true,
      maxItems: MAX_TOKEN_NAMESPACES,
    });
    if (list !== undefined) {
      if (list.length === 0) issues.add("spec.namespaces", "name at least one namespace");
      const out: string[] = [];
      list.forEach((v, i) => {
        const ns = readString(v, `spec.namespaces[${i}]`, issues, { required: true });
        if (ns === undefined) return;
        const bad = checkDns1123Label(ns);
        if (bad !== undefined) issues.add(`spec.namespaces[${i}]`, bad);
        else if (!out.includes(ns)) out.push(ns);
      });
      namespaces = out;
    }
  }
  if (issues.count > 0 || !name || !role || !namespaces) {
    if (issues.count === 0) issues.add("(root)", "not a valid Token");
    throw ValidationError.of(issues.causes, { kind: "tokens", name });
  }
  return { name, role, namespaces };
}

/** A token as the API shows it; the secret only in the answer to its creation. */
export function tokenObject(record: TokenRecord, secret?: string) {
  return {
    apiVersion: TOKEN_API_VERSION,
    kind: "Token",
    metadata: { name: record.name, creationTimestamp: record.creationTimestamp },
    spec: { role: record.role, namespaces: record.namespaces },
    ...(secret ? { status: { token: secret } } : {}),
  };
}
