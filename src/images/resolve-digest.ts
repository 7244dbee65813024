/**
 * Tag-to-digest resolution (Knative's revision reconciler does the same with
 * go-containerregistry): one HEAD of the manifest through the Registry HTTP
 * API v2, answering the registry's Bearer (token service) or Basic challenge
 * with the configured credentials. The digest is what every instance of the
 * revision then pulls and runs, even if the tag moves later.
 */
import { createHash } from "node:crypto";
import { type ErrorCode, SkiffError } from "../errors.ts";
import { type ImageRef, isLoopbackRegistry } from "./reference.ts";

export interface ResolveOptions {
  username?: string | undefined;
  password?: string | undefined;
  /** Plain HTTP (always so for a loopback registry, as Docker does). */
  insecure?: boolean | undefined;
  timeoutMs: number;
}

const FAILURE_CODES = {
  "not-found": "NOT_FOUND",
  unauthorized: "UNAUTHORIZED",
  unreachable: "UNAVAILABLE",
  registry: "UNAVAILABLE",
} as const satisfies Record<string, ErrorCode>;

/** Why a tag could not be resolved; the message is what the Revision shows. */
export class DigestResolveError extends SkiffError {
  constructor(failure: keyof typeof FAILURE_CODES, message: string, options?: { cause?: unknown }) {
    super(FAILURE_CODES[failure], message, options);
    this.name = "DigestResolveError";
  }
}

const ACCEPT = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");

/** A manifest is small; a registry sending more is not one. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** sha256:... of the manifest `ref`'s tag names now. */
export async function resolveDigest(ref: ImageRef, o: ResolveOptions): Promise<string> {
  if (ref.digest) return ref.digest;
  const host = ref.registry === "docker.io" ? "registry-1.docker.io" : ref.registry;
  const scheme = o.insecure === true || isLoopbackRegistry(ref.registry) ? "http" : "https";
  const url = `${scheme}://${host}/v2/${ref.repository}/manifests/${ref.tag ?? "latest"}`;
  const signal = AbortSignal.timeout(o.timeoutMs);
  const what = `${ref.registry}/${ref.repository}:${ref.tag}`;
  const basic =
    o.username === undefined
      ? undefined
      : `Basic ${Buffer.from(`${o.username}:${o.password ?? ""}`).toString("base64")}`;

  const get = async (method: "HEAD" | "GET", authorization?: string) => {
    try {
      return await fetch(url, {
        method,
        signal,
        redirect: "follow",
        headers: { accept: ACCEPT, ...(authorization ? { authorization } : {}) },
      });
    } catch (err) {
      throw new DigestResolveError(
        "unreachable",
        `registry ${ref.registry} did not answer (${(err as Error).message})`,
        { cause: err },
      );
    }
  };

  let authorization: string | undefined;
  let res = await get("HEAD");
  if (res.status === 401) {
    authorization = await answerChallenge(res.headers.get("www-authenticate"), basic, signal, ref);
    if (authorization) res = await get("HEAD", authorization);
  }
  // Some registries leave the digest header off HEAD: hash the manifest itself.
  if (res.ok && !res.headers.get("docker-content-digest")) res = await get("GET", authorization);
  if (res.status === 401 || res.status === 403) {
    await res.body?.cancel();
    throw new DigestResolveError(
      "unauthorized",
      basic
        ? `registry ${ref.registry} refused the credentials of images.registries["${ref.registry}"] for ${what} (HTTP ${res.status})`
        : `registry ${ref.registry} wants credentials for ${what} (HTTP ${res.status}); set images.registries["${ref.registry}"].username and password`,
    );
  }
  if (res.status === 404) {
    await res.body?.cancel();
    throw new DigestResolveError(
      "not-found",
      `${what} does not exist: no tag ${ref.tag} in repository ${ref.repository} on ${ref.registry}`,
    );
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new DigestResolveError(
      "registry",
      `registry ${ref.registry} answered HTTP ${res.status}`,
    );
  }
  const header = res.headers.get("docker-content-digest");
  if (header) {
    await res.body?.cancel();
    if (/^sha256:[0-9a-f]{64}$/.test(header)) return header;
    throw new DigestResolveError("registry", `registry ${ref.registry} sent a bad digest`);
  }
  const body = Buffer.from(await res.arrayBuffer());
  if (body.length > MAX_MANIFEST_BYTES) {
    throw new DigestResolveError("registry", `registry ${ref.registry} sent an oversized manifest`);
  }
  return `sha256:${createHash("sha256").update(body).digest("hex")}`;
}

/** The Authorization header a 401's challenge asks for, or undefined when none can be given. */
async function answerChallenge(
  challenge: string | null,
  basic: string | undefined,
  signal: AbortSignal,
  ref: ImageRef,
): Promise<string | undefined> {
  if (!challenge) return basic;
  const [scheme] = challenge.split(/\s+/, 1);
  if (scheme?.toLowerCase() === "basic") return basic;
  if (scheme?.toLowerCase() !== "bearer") return undefined;
  const params = Object.fromEntries(
    [...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]),
  );
  const realm = params.realm;
  if (!realm || !/^https?:\/\//.test(realm)) return undefined;
  const token = new URL(realm);
  if (params.service) token.searchParams.set("service", params.service);
  token.searchParams.set("scope", params.scope ?? `repository:${ref.repository}:pull`);
  let res: Response;
  try {
    res = await fetch(token, { signal, headers: basic ? { authorization: basic } : {} });
  } catch (err) {
    throw new DigestResolveError(
      "unreachable",
      `the token service of ${ref.registry} did not answer (${(err as Error).message})`,
      { cause: err },
    );
  }
  if (!res.ok) {
    await res.body?.cancel();
    // No token: the manifest request stays a 401, which says so.
    return undefined;
  }
  const body = (await res.json().catch(() => ({}))) as { token?: string; access_token?: string };
  const value = body.token ?? body.access_token;
  return value ? `Bearer ${value}` : undefined;
}
