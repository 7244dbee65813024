/** The cluster's bridge network against the real Docker engine: idempotent creation, never removed in use. */
import { randomBytes } from "node:crypto";
import Docker from "dockerode";
import { afterAll, describe, expect, test } from "vitest";
import { ClusterNetwork } from "../../../agent/container/network.ts";
import { helloImage } from "../../support/images.ts";

const docker = new Docker();
const name = `skiff-t${randomBytes(5).toString("hex")}`;
const created: string[] = [];

async function networksNamed(n: string) {
  return (await docker.listNetworks({ filters: { name: [n] } })).filter((x) => x.Name === n);
}

afterAll(async () => {
  for (const id of created) {
    await docker
      .getContainer(id)
      .remove({ force: true })
      .catch(() => {});
  }
  for (const n of await networksNamed(name)) {
    await docker
      .getNetwork(n.Id)
      .remove()
      .catch(() => {});
  }
});

describe("ClusterNetwork", () => {
  test("agents racing to create the bridge all succeed and settle on one network with icc off", async () => {
    const racers = Array.from(
      { length: 6 },
      () => new ClusterNetwork(docker, { name, labels: { "skiff.cluster": "race" } }),
    );
    const ids = await Promise.all(racers.map((r) => r.ensure()));
    expect(new Set(ids).size).toBe(1);
    const nets = await networksNamed(name);
    expect(nets.map((n) => n.Id)).toEqual([ids[0]]);
    const info = await docker.getNetwork(ids[0] as string).inspect();
    expect(info.Driver).toBe("bridge");
    expect(info.Options?.["com.docker.network.bridge.enable_icc"]).toBe("false");
    // Once it exists, ensure() is a lookup.
    expect(await new ClusterNetwork(docker, { name, labels: {} }).ensure()).toBe(ids[0]);
  });

  test("is never removed while a container is attached, and removed once none is", async () => {
    const net = new ClusterNetwork(docker, { name, labels: {} });
    const id = await net.ensure();
    const image = await helloImage(docker);
    const c = await docker.createContainer({ Image: image, HostConfig: { NetworkMode: id } });
    created.push(c.id);
    await c.start();
    expect(await net.removeIfUnused()).toBe(false);
    expect(await networksNamed(name)).toHaveLength(1);
    await c.remove({ force: true });
    expect(await net.removeIfUnused()).toBe(true);
    expect(await networksNamed(name)).toHaveLength(0);
    // A later ensure() makes it again.
    expect(await net.ensure()).not.toBe(id);
  });
});
