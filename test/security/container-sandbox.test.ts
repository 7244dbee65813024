/**
 * The container sandbox, read from inside: no capabilities (NET_BIND_SERVICE
 * back only for a port below 1024), no-new-privileges, the image's own user,
 * a pids limit, and CPU/memory limits from the cluster config when the
 * template sets none, written on the Revision at deploy time. A container
 * going over its memory limit is OOM-killed and reported OOMKilled.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { ExitEvent } from "../../agent/container/runtime.ts";
import type { InstanceSpecInput } from "../../agent/container/spec.ts";
import { prepareService } from "../../deploy/api/prepare.ts";
import { parseConfig } from "../../src/config.ts";
import type { Container } from "../../src/model/types.ts";
import { createHarness, get, type Harness } from "../agent/container/harness.ts";
import { serviceManifest } from "../support/fixtures.ts";

let h: Harness;
beforeAll(async () => {
  h = await createHarness("sbx");
});
afterAll(() => h?.cleanup());

/** The template as the deploy API writes it, with this cluster config's limits. */
async function deployedContainer(
  container: Record<string, unknown>,
  limits: Record<string, unknown> = {},
): Promise<Container> {
  const config = parseConfig({ limits });
  const { parsed } = await prepareService(
    serviceManifest("sbx", { spec: { containers: [container] } }),
    { namespace: "default", name: undefined, limits: config.limits },
  );
  return parsed.spec.template.spec.containers?.[0] as Container;
}

function specFor(container: Container): InstanceSpecInput {
  const s = h.spec();
  return { ...s, container };
}

/** "Name:\tvalue" lines of /proc/self/status as a map. */
function statusFields(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split("\n")
      .filter((l) => l.includes(":"))
      .map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trim()]),
  );
}

const PICK = [
  "Uid",
  "Gid",
  "CapInh",
  "CapPrm",
  "CapEff",
  "CapBnd",
  "CapAmb",
  "NoNewPrivs",
  "Seccomp",
];

describe("container sandbox defaults", () => {
  test("the cluster's default limits are written on the Revision when the template sets none, and enforced", async () => {
    const container = await deployedContainer({ image: h.image });
    expect(container.resources).toEqual({
      limits: { cpu: "1", memory: "512Mi" },
      // Written too, so that placement reserves what it did before, not the whole limit.
      requests: { cpu: "100m", memory: "128Mi" },
    });
    // Set limits are the template's own; a request above the default limit raises it.
    const own = await deployedContainer({
      image: h.image,
      resources: { limits: { memory: "64Mi" }, requests: { cpu: "2" } },
    });
    expect(own.resources).toEqual({ limits: { cpu: "2", memory: "64Mi" }, requests: { cpu: "2" } });
    const small = await deployedContainer({ image: h.image }, { revisionMemoryLimit: "64Mi" });
    expect(small.resources?.requests?.memory).toBe("64Mi"); // never above its limit
    const none = await deployedContainer(
      { image: h.image },
      { revisionCpuLimit: null, revisionMemoryLimit: null },
    );
    expect(none.resources).toBeUndefined();

    const rt = h.runtime();
    const started = await rt.start(specFor(container));
    const info = await h.docker.getContainer(started.containerId).inspect();
    console.log(
      `docker inspect: Memory=${info.HostConfig.Memory} NanoCpus=${info.HostConfig.NanoCpus} PidsLimit=${info.HostConfig.PidsLimit}`,
    );
    expect(info.HostConfig.Memory).toBe(512 * 2 ** 20);
    expect(info.HostConfig.MemorySwap).toBe(512 * 2 ** 20);
    expect(info.HostConfig.NanoCpus).toBe(1e9);
    expect(info.HostConfig.MemoryReservation).toBe(128 * 2 ** 20);
    expect(info.HostConfig.PidsLimit).toBe(4096);
  });

  test("a bad default in the cluster config is refused with the field named", () => {
    expect(() => parseConfig({ limits: { revisionMemoryLimit: "lots" } })).toThrow(
      /limits\.revisionMemoryLimit: must be a quantity such as "512Mi", or null for no default/,
    );
  });

  test("inside: no capabilities at all, no-new-privileges, the image's uid (not root)", async () => {
    const rt = h.runtime();
    const started = await rt.start(specFor(await deployedContainer({ image: h.image })));
    const res = await get(`http://127.0.0.1:${started.port}/status`);
    expect(res.status).toBe(200);
    const f = statusFields(res.body);
    console.log(
      `/proc/self/status inside (port 8080): ${PICK.map((k) => `${k}=${f[k]}`).join(" ")}`,
    );
    expect(f.Uid?.split(/\s+/)).toEqual(["65532", "65532", "65532", "65532"]);
    for (const cap of ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]) {
      expect(f[cap]).toBe("0000000000000000");
    }
    expect(f.NoNewPrivs).toBe("1");
    const info = await h.docker.getContainer(started.containerId).inspect();
    expect(info.HostConfig.CapDrop).toEqual(["ALL"]);
    expect(info.HostConfig.CapAdd ?? []).toEqual([]);
    expect(info.HostConfig.SecurityOpt).toEqual(["no-new-privileges:true"]);
    expect(info.Config.User).toBe("65532:65532"); // the image's USER, not forced to 0
  });

  test("a container serving on a port below 1024 gets NET_BIND_SERVICE and nothing else, and serves", async () => {
    const rt = h.runtime();
    const started = await rt.start(
      specFor(await deployedContainer({ image: h.image, ports: [{ containerPort: 80 }] })),
    );
    const f = statusFields((await get(`http://127.0.0.1:${started.port}/status`)).body);
    console.log(`/proc/self/status inside (port 80): ${PICK.map((k) => `${k}=${f[k]}`).join(" ")}`);
    expect(f.CapBnd).toBe("0000000000000400"); // bit 10: CAP_NET_BIND_SERVICE
    expect(f.CapEff).toBe("0000000000000000"); // uid 65532 holds none effective
    expect(f.NoNewPrivs).toBe("1");
  });

  test("a container allocating past the cluster's default memory limit is OOM-killed and reported OOMKilled", async () => {
    const container = await deployedContainer({ image: h.image }, { revisionMemoryLimit: "48Mi" });
    expect(container.resources?.limits?.memory).toBe("48Mi");
    const rt = h.runtime();
    const started = await rt.start(specFor(container));
    const exited = new Promise<ExitEvent>((resolve) => rt.once("exit", resolve));
    await get(`http://127.0.0.1:${started.port}/?bloat=96`).catch(() => {});
    const ev = await exited;
    console.log(`exit: ${ev.reason} (exit code ${ev.exitCode}): ${ev.message.split(";")[0]}`);
    expect(ev.reason).toBe("OOMKilled");
    expect(ev.oomKilled).toBe(true);
    expect(ev.message).toContain("memory limit of 48Mi");
  });
});
