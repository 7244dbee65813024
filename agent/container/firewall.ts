/**
 * Optional host firewall for the cluster's bridge (agent flag
 * `containerFirewall`). On one host the control plane listens on 127.0.0.1,
 * which a container's own network namespace already hides. On a fleet it
 * listens on routable addresses that a container could reach through the
 * bridge's NAT, so:
 *
 *   DOCKER-USER (forwarded: to other hosts)
 *     -i <bridge> conntrack RELATED,ESTABLISHED  RETURN   answers to gateways pass
 *     -i <bridge> -d <each blocked CIDR>          DROP     the fleet's control network
 *   INPUT (to this host's own addresses: Redis, admin ports, workerd, other tenants' published ports)
 *     -i <bridge> conntrack RELATED,ESTABLISHED  ACCEPT
 *     -i <bridge>                                 DROP
 *
 * Every rule names only this bridge (and carries a comment with its name), so
 * nothing else on the host is affected; install is idempotent and remove takes
 * out exactly these rules. Needs root and iptables with Docker's DOCKER-USER chain.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { SkiffError } from "../../src/errors.ts";

const run = promisify(execFile);

export interface FirewallRule {
  chain: "DOCKER-USER" | "INPUT";
  spec: string[];
}

/** The rules for one bridge, in evaluation order per chain. */
export function firewallRules(bridge: string, blockCidrs: string[]): FirewallRule[] {
  const tag = ["-m", "comment", "--comment", `skiff:${bridge}`];
  const established = ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"];
  return [
    { chain: "DOCKER-USER", spec: ["-i", bridge, ...established, ...tag, "-j", "RETURN"] },
    ...blockCidrs.map(
      (cidr): FirewallRule => ({
        chain: "DOCKER-USER",
        spec: ["-i", bridge, "-d", cidr, ...tag, "-j", "DROP"],
      }),
    ),
    { chain: "INPUT", spec: ["-i", bridge, ...established, ...tag, "-j", "ACCEPT"] },
    { chain: "INPUT", spec: ["-i", bridge, ...tag, "-j", "DROP"] },
  ];
}

export class BridgeFirewall {
  readonly bridge: string;
  readonly rules: FirewallRule[];
  readonly #iptables: string;

  constructor(options: { bridge: string; blockCidrs: string[]; iptables?: string }) {
    this.bridge = options.bridge;
    this.rules = firewallRules(options.bridge, options.blockCidrs);
    this.#iptables = options.iptables ?? "iptables";
  }

  /** Make the rules present, in order, at the top of their chains (idempotent). */
  async install(): Promise<void> {
    const present = await Promise.all(this.rules.map((r) => this.#has(r)));
    if (present.every(Boolean)) return;
    await this.remove();
    // Inserting each at position 1 in reverse keeps the listed order.
    for (const rule of [...this.rules].reverse()) {
      await this.#iptablesRun(["-I", rule.chain, "1", ...rule.spec]);
    }
  }

  /** Take out exactly these rules (every copy of each). */
  async remove(): Promise<void> {
    for (const rule of this.rules) {
      while (await this.#has(rule)) await this.#iptablesRun(["-D", rule.chain, ...rule.spec]);
    }
  }

  async #has(rule: FirewallRule): Promise<boolean> {
    try {
      await run(this.#iptables, ["-w", "-C", rule.chain, ...rule.spec]);
      return true;
    } catch {
      return false;
    }
  }

  async #iptablesRun(args: string[]): Promise<void> {
    try {
      await run(this.#iptables, ["-w", ...args]);
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new SkiffError(
        "UNAVAILABLE",
        `cannot install the container firewall for bridge ${this.bridge} (${this.#iptables} ${args.join(" ")}): ` +
          `${(e.stderr || e.message).trim()}; the agent needs root and Docker's iptables chains ` +
          "(DOCKER-USER), or leave containerFirewall unset and add the rules yourself",
        { cause: err },
      );
    }
  }
}
