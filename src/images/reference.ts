/**
 * Image references the way Docker normalises them: `hello` is
 * docker.io/library/hello:latest, `ghcr.io/org/app:v1` names ghcr.io, and a
 * `@sha256:...` suffix pins the bytes whatever the tag says.
 */

export interface ImageRef {
  /** Registry host[:port] ("docker.io" for Docker Hub). */
  registry: string;
  /** Repository path inside the registry ("library/hello" on Docker Hub). */
  repository: string;
  /** The tag ("latest" when neither tag nor digest is given). */
  tag: string | undefined;
  /** sha256:... when the reference is pinned. */
  digest: string | undefined;
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** Parse a reference; undefined when it is not one Docker would accept. */
export function parseImageRef(ref: string): ImageRef | undefined {
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) return undefined;
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!/^[\w][\w.-]{0,127}$/.test(tag)) return undefined;
  }
  const slash = rest.indexOf("/");
  const first = slash < 0 ? "" : rest.slice(0, slash);
  let registry = "docker.io";
  let repository = rest;
  if (slash >= 0 && (first.includes(".") || first.includes(":") || first === "localhost")) {
    registry = first;
    repository = rest.slice(slash + 1);
  }
  if (registry === "index.docker.io" || registry === "registry-1.docker.io") registry = "docker.io";
  if (registry === "docker.io" && !repository.includes("/")) repository = `library/${repository}`;
  if (!/^[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*$/.test(repository)) {
    return undefined;
  }
  if (!tag && !digest) tag = "latest";
  return { registry, repository, tag, digest };
}

/** `registry/repository`, the name a digest is appended to (`name@sha256:...`). */
export function repositoryName(ref: ImageRef): string {
  return `${ref.registry}/${ref.repository}`;
}

/** The registry host of a reference: the first path part when it looks like a host. */
export function registryOf(ref: string): string {
  return parseImageRef(ref)?.registry ?? "docker.io";
}

/** Docker trusts registries on loopback over plain HTTP; so does Skiff. */
export function isLoopbackRegistry(host: string): boolean {
  const name = host.startsWith("[") ? host.slice(0, host.indexOf("]") + 1) : host.split(":")[0];
  return name === "localhost" || name === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(name ?? "");
}
