/**
 * Hosts as network namespaces on one machine: each host a namespace with its
 * own loopback and one veth link to a switch (a bridge in a namespace of its
 * own), addressed in a private /24 that exists only inside these namespaces.
 * Nothing is added to the machine's own namespace (no address, no route), so
 * no traffic of the test can leave them. Names carry a random suffix, and
 * destroy() removes every namespace (and with them their links).
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";

export interface TestHost {
  /** The namespace's name (for `ip netns exec`). */
  netns: string;
  address: string;
}

export interface TestNetwork {
  hosts: Record<string, TestHost>;
  /** Take a host's link down: it can reach nobody and nobody reaches it. */
  cut(host: string): void;
  /** Bring a host's link back. */
  restore(host: string): void;
  destroy(): void;
}

const ip = (...args: string[]) => execFileSync("ip", args, { stdio: "pipe" });

/**
 * The command line that runs `argv` inside network namespace `netns` (a test
 * host), or as is without one. `ip netns exec` execs: the pid stays the
 * process's, so signals and process groups work as for a direct spawn.
 */
export function inNetns(netns: string | undefined, argv: string[]): [string, string[]] {
  return netns ? ["ip", ["netns", "exec", netns, ...argv]] : [argv[0] as string, argv.slice(1)];
}

/** Why these tests cannot run here, or undefined when they can (root and iproute2). */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "network namespaces need root";
  try {
    ip("netns", "list");
  } catch {
    return "the ip command (iproute2) is missing";
  }
  return undefined;
}

/** One namespace per host name, all on one switch; `subnet` is the /24's first three octets. */
export function createTestNetwork(names: string[], subnet = "10.77.0"): TestNetwork {
  const id = randomBytes(3).toString("hex");
  const sw = `sk-${id}-sw`;
  const made: string[] = [];
  const hosts: Record<string, TestHost> = {};
  const links = new Map<string, string>();
  const destroy = () => {
    for (const ns of made.splice(0).reverse()) {
      try {
        ip("netns", "delete", ns);
      } catch {}
    }
  };
  try {
    ip("netns", "add", sw);
    made.push(sw);
    ip("-n", sw, "link", "add", "br0", "type", "bridge");
    ip("-n", sw, "link", "set", "br0", "up");
    names.forEach((name, i) => {
      const netns = `sk-${id}-${i}`;
      ip("netns", "add", netns);
      made.push(netns);
      const address = `${subnet}.${i + 1}`;
      // Created inside the namespaces: no link ever appears in the machine's own.
      ip(
        "link",
        "add",
        "eth0",
        "netns",
        netns,
        "type",
        "veth",
        "peer",
        "name",
        `p${i}`,
        "netns",
        sw,
      );
      ip("-n", sw, "link", "set", `p${i}`, "master", "br0");
      ip("-n", sw, "link", "set", `p${i}`, "up");
      ip("-n", netns, "link", "set", "lo", "up");
      ip("-n", netns, "addr", "add", `${address}/24`, "dev", "eth0");
      ip("-n", netns, "link", "set", "eth0", "up");
      hosts[name] = { netns, address };
      links.set(name, `p${i}`);
    });
  } catch (err) {
    destroy();
    throw err;
  }
  const setLink = (host: string, state: "up" | "down") => {
    const port = links.get(host);
    if (!port) throw new Error(`no test host ${host}`);
    ip("-n", sw, "link", "set", port, state);
  };
  return {
    hosts,
    cut: (host) => setLink(host, "down"),
    restore: (host) => setLink(host, "up"),
    destroy,
  };
}
