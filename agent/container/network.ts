/**
 * The install's container network: one Docker bridge per cluster
 * (`skiff-<clusterId>`), inter-container traffic off, so that every instance
 * has its own network namespace (its 127.0.0.1 is itself, not the host's) and
 * instances cannot talk to each other over the bridge. Gateways reach an
 * instance only through the port the agent publishes on its data address.
 *
 * Created on first use and shared by every agent of the cluster on the engine.
 * Docker allows two networks of one name, so two agents racing to create it
 * may both succeed; a creator that then sees another's network yields (see
 * #findOrCreate), so that everyone settles on the same one. Removal is left to Docker's rule
 * that a network with containers attached cannot be removed.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type Docker from "dockerode";
import { UnavailableError } from "../../src/errors.ts";
import { dockerMessage, dockerStatus } from "./docker-errors.ts";
import { BridgeFirewall } from "./firewall.ts";

/** Rounds of looking and creating before twins are taken as they are (the oldest). */
const MAX_ROUNDS = 40;
/** 20-70 ms: racers that yielded to each other do not meet again in step. */
const jitter = () => 20 + Math.random() * 50;

export interface ClusterNetworkOptions {
  name: string;
  /** Labels put on the network (managed-by and cluster). */
  labels: Record<string, string>;
  /** Install host firewall rules for the bridge (firewall.ts); absent: none. */
  firewall?: { blockCidrs: string[]; iptables?: string };
}

export class ClusterNetwork {
  readonly name: string;
  readonly #docker: Docker;
  readonly #labels: Record<string, string>;
  readonly #firewall: ClusterNetworkOptions["firewall"];
  #id: Promise<string> | undefined;

  constructor(docker: Docker, options: ClusterNetworkOptions) {
    this.#docker = docker;
    this.name = options.name;
    this.#labels = options.labels;
    this.#firewall = options.firewall;
  }

  /** The Linux bridge device of a network (Docker's `br-<12 hex of id>` unless named). */
  async bridgeOf(id: string): Promise<string> {
    const info = (await this.#docker.getNetwork(id).inspect()) as {
      Options?: Record<string, string>;
    };
    return info.Options?.["com.docker.network.bridge.name"] ?? `br-${id.slice(0, 12)}`;
  }

  #firewallFor(bridge: string): BridgeFirewall | undefined {
    const f = this.#firewall;
    return f ? new BridgeFirewall({ bridge, ...f }) : undefined;
  }

  /** The network's id, creating it when absent (memoised until invalidate()). */
  ensure(): Promise<string> {
    if (!this.#id) {
      const pending = this.#ensure();
      this.#id = pending;
      pending.catch(() => {
        if (this.#id === pending) this.#id = undefined;
      });
    }
    return this.#id;
  }

  /** Forget the memoised id (the network was removed under us): the next ensure() looks again. */
  invalidate(): void {
    this.#id = undefined;
  }

  async #ensure(): Promise<string> {
    const id = await this.#findOrCreate();
    if (this.#firewall) await this.#firewallFor(await this.bridgeOf(id))?.install();
    return id;
  }

  /**
   * Docker can create two networks of one name when two creations race, and
   * a creation that started first may become visible last. So a creator that
   * sees anyone else's network beside its own right after creating yields:
   * it removes its own and looks again. Whoever saw only its own network
   * after its creation was first to be visible, and every later creator sees
   * it. (Two that see each other both yield and try again, with jitter.)
   */
  async #findOrCreate(): Promise<string> {
    for (let round = 0; ; round++) {
      const found = await this.#list();
      if (found.length === 1) return (found[0] as { Id: string }).Id;
      if (found.length > 1) {
        // Twins that outlive the rounds (left by an older agent): the oldest.
        if (round >= MAX_ROUNDS) return (found[0] as { Id: string }).Id;
        // A racer's twin on its way out: look again.
        await sleep(jitter());
        continue;
      }
      if (round >= MAX_ROUNDS) {
        throw new UnavailableError(
          `cannot create Docker network ${this.name}: creations kept racing`,
        );
      }
      let created: string | undefined;
      try {
        const net = await this.#docker.createNetwork({
          Name: this.name,
          Driver: "bridge",
          CheckDuplicate: true,
          Labels: this.#labels,
          Options: {
            // No traffic between containers over the bridge: tenants cannot reach each other.
            "com.docker.network.bridge.enable_icc": "false",
          },
        });
        created = net.id;
      } catch (err) {
        // 409: someone else created it a moment ago; anything else is a real failure.
        if (dockerStatus(err) !== 409) {
          throw new UnavailableError(
            `cannot create Docker network ${this.name}: ${dockerMessage(err)}`,
            { cause: err },
          );
        }
        await sleep(jitter());
        continue;
      }
      const after = await this.#list();
      if (after.every((n) => n.Id === created)) return created;
      await this.#docker
        .getNetwork(created)
        .remove()
        .catch(() => {});
      await sleep(jitter());
    }
  }

  /** The id of the network of that name (the oldest one, should a race have made two). */
  async #find(): Promise<string | undefined> {
    return (await this.#list())[0]?.Id;
  }

  /** The networks of exactly that name, oldest first (then by id). */
  async #list(): Promise<{ Id: string; Created?: string }[]> {
    const nets = await this.#docker.listNetworks({ filters: { name: [this.name] } });
    return nets
      .filter((n) => n.Name === this.name)
      .sort(
        (a, b) =>
          createdKey(a.Created).localeCompare(createdKey(b.Created)) || a.Id.localeCompare(b.Id),
      );
  }

  /**
   * Remove the network when no container is attached to it (Docker refuses
   * otherwise: then it stays). For shutdown and tests; returns whether it went.
   */
  async removeIfUnused(): Promise<boolean> {
    const id = await this.#find();
    this.invalidate();
    if (!id) return false;
    try {
      const info = (await this.#docker.getNetwork(id).inspect()) as {
        Containers?: Record<string, unknown>;
      };
      if (Object.keys(info.Containers ?? {}).length > 0) return false;
      const bridge = await this.bridgeOf(id);
      await this.#docker.getNetwork(id).remove();
      await this.#firewallFor(bridge)?.remove();
      return true;
    } catch {
      return false; // in use (403/409), or gone already
    }
  }
}

/** Whether a docker error says the network a container refers to is gone. */
export function isNetworkGone(err: unknown): boolean {
  return dockerStatus(err) === 404 && /network .* not found/i.test(dockerMessage(err));
}

/** Whether a docker start failed because the published host port is taken. */
export function isPortTaken(err: unknown): boolean {
  return /address already in use|port is already allocated/i.test(dockerMessage(err));
}

/**
 * Docker's creation time (RFC 3339 with nanoseconds, trailing zeros trimmed:
 * ".12Z" and ".123Z") as a key that sorts in time order: the fraction padded
 * to nine digits. Compared as given, ".123Z" sorted before ".12Z" and two
 * racing agents each kept the twin they created.
 */
function createdKey(created: string | undefined): string {
  if (!created) return "";
  return created.replace(
    /(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/,
    (_, fraction: string | undefined, zone) => `.${(fraction ?? "").padEnd(9, "0")}${zone}`,
  );
}
