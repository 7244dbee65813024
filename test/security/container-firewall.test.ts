/**
 * The optional bridge firewall (runtime option `firewall`, agent option
 * `containerFirewall`): rules that keep containers off the host's own
 * addresses and the fleet's control network, scoped to this file's own bridge
 * and removed with it. Only the rules are checked: no traffic is sent to a
 * non-loopback address. Needs root and iptables (skipped otherwise).
 */
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { BridgeFirewall, firewallRules } from "../../agent/container/firewall.ts";
import { createHarness, get, type Harness } from "../agent/container/harness.ts";

function iptables(...args: string[]): string {
  return execFileSync("iptables", ["-w", ...args], { encoding: "utf8" });
}

const usable = (() => {
  try {
    iptables("-S", "DOCKER-USER");
    return process.getuid?.() === 0;
  } catch {
    return false;
  }
})();

let h: Harness;
const bridges: string[] = [];
beforeAll(async () => {
  h = await createHarness("fw");
});
afterAll(async () => {
  await h?.cleanup();
  // Should a test fail half-way: never leave a rule of ours behind.
  for (const bridge of bridges)
    await new BridgeFirewall({ bridge, blockCidrs: ["192.0.2.0/24"] }).remove();
});

describe("rules", () => {
  test("are scoped to one bridge and let answers out before dropping", () => {
    const rules = firewallRules("br-0123456789ab", ["10.0.0.0/24"]);
    expect(rules.map((r) => `${r.chain} ${r.spec.join(" ")}`)).toEqual([
      "DOCKER-USER -i br-0123456789ab -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment skiff:br-0123456789ab -j RETURN",
      "DOCKER-USER -i br-0123456789ab -d 10.0.0.0/24 -m comment --comment skiff:br-0123456789ab -j DROP",
      "INPUT -i br-0123456789ab -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment skiff:br-0123456789ab -j ACCEPT",
      "INPUT -i br-0123456789ab -m comment --comment skiff:br-0123456789ab -j DROP",
    ]);
  });
});

describe.skipIf(!usable)("installed by the runtime", () => {
  test("on the bridge's creation, idempotently; the published port still serves; removed with the bridge", async () => {
    // 192.0.2.0/24 is TEST-NET-1 (documentation only): a rule for it affects no real traffic.
    const firewall = { blockCidrs: ["192.0.2.0/24"] };
    const rt = h.runtime({ firewall });
    const started = await rt.start(h.spec());
    const net = await h.docker.getNetwork(`skiff-${h.clusterId}`).inspect();
    const bridge = `br-${net.Id.slice(0, 12)}`;
    bridges.push(bridge);
    const ours = () =>
      [...iptables("-S", "DOCKER-USER").split("\n"), ...iptables("-S", "INPUT").split("\n")].filter(
        (l) => l.includes(`skiff:${bridge}`),
      );
    console.log(`rules for ${bridge}:\n${ours().join("\n")}`);
    expect(ours()).toHaveLength(4);
    // A second runtime of the same cluster finds them in place: no duplicates.
    const again = h.runtime({ firewall });
    await again.start(h.spec());
    expect(ours()).toHaveLength(4);
    // Gateways still reach the instance through its published port (answers pass INPUT).
    expect((await get(`http://127.0.0.1:${started.port}/`)).status).toBe(200);

    // When the last instance is gone, closing removes the unused bridge and exactly its rules.
    await rt.stop(started.instanceId, { graceSeconds: 0 });
    await Promise.all(again.list().map((i) => again.stop(i.instanceId, { graceSeconds: 0 })));
    await again.close();
    await rt.close();
    expect(ours()).toEqual([]);
    expect(await h.docker.listNetworks({ filters: { name: [`skiff-${h.clusterId}`] } })).toEqual(
      [],
    );
  });
});
