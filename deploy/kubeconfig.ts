/**
 * `{state}/kubeconfig`: what kubectl and other Kubernetes clients need to
 * reach this install's deploy API (server, CA, token), in its own file so
 * that `KUBECONFIG=... kubectl get ksvc` works and ~/.kube/config is never
 * touched. Written 0600: it holds the admin token.
 */
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { parse as parseYaml, stringify as toYaml } from "yaml";

export interface KubeconfigInput {
  server: string;
  /** The CA to trust (PEM); absent: the client's system roots. */
  ca?: string | undefined;
  /** Absent (not generated now nor given): the token the file already holds, if any. */
  token?: string | undefined;
  /** Context, cluster and user name. */
  name?: string;
}

/** Writes the file; false when it holds no token (not generated now, given, nor there before). */
export function writeKubeconfig(path: string, input: KubeconfigInput): boolean {
  const name = input.name ?? "skiff";
  const token = input.token ?? previousToken(path);
  const cluster: Record<string, string> = { server: input.server };
  if (input.ca) cluster["certificate-authority-data"] = Buffer.from(input.ca).toString("base64");
  const doc = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name, cluster }],
    users: [{ name, user: token ? { token } : {} }],
    contexts: [{ name, context: { cluster: name, user: name, namespace: "default" } }],
    "current-context": name,
  };
  writeFileSync(path, toYaml(doc), { mode: 0o600 });
  // The mode applies only to a new file: one left looser by hand is tightened.
  chmodSync(path, 0o600);
  return token !== undefined;
}

function previousToken(path: string): string | undefined {
  if (!existsSync(path)) return undefined;
  try {
    const doc = parseYaml(readFileSync(path, "utf8")) as {
      users?: { user?: { token?: unknown } }[];
    };
    const token = doc?.users?.[0]?.user?.token;
    return typeof token === "string" ? token : undefined;
  } catch {
    return undefined;
  }
}
