/** Pure parts of the container runtime: quantities, spec validation, env and create options. */
import { describe, expect, test } from "vitest";
import { ContainerRuntime } from "../../../agent/container/runtime.ts";
import {
  buildCreateOptions,
  buildEnv,
  type CreateContext,
  dockerUser,
  type InstanceSpecInput,
  InstanceSpecSchema,
  nonRootProblem,
  parseWith,
} from "../../../agent/container/spec.ts";
import { ValidationError } from "../../../src/errors.ts";
import { isLoopbackRegistry, parseImageRef, registryOf } from "../../../src/images/reference.ts";

const ctx: CreateContext = {
  name: "skiff-i1",
  image: "example/app:1",
  address: "127.0.0.2",
  port: 20001,
  network: "skiff-c1",
  clusterId: "c1",
  owner: "agent-a",
  labelPrefix: "skiff.",
  capAdd: [],
  pidsLimit: 100,
  tmpfsSize: undefined,
  logMaxSize: "10m",
};

function spec(overrides: Partial<InstanceSpecInput> = {}) {
  return parseWith(
    InstanceSpecSchema,
    {
      instanceId: "i1",
      namespace: "default",
      configuration: "app",
      revision: "app-00001",
      container: { image: "example/app:1" },
      ...overrides,
    },
    { kind: "Instance" },
  );
}

function validationError(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return err as ValidationError;
  }
  throw new Error("expected a ValidationError");
}

describe("image references", () => {
  test("finds the registry host of a reference, Docker Hub when there is none", () => {
    expect(registryOf("nginx:1")).toBe("docker.io");
    expect(registryOf("library/nginx")).toBe("docker.io");
    expect(registryOf("registry.example.com/team/app:2")).toBe("registry.example.com");
    expect(registryOf("localhost:5000/app")).toBe("localhost:5000");
  });

  test("normalises references as Docker does: library/, latest, a digest that pins", () => {
    const digest = `sha256:${"a".repeat(64)}`;
    expect(parseImageRef("nginx")).toEqual({
      registry: "docker.io",
      repository: "library/nginx",
      tag: "latest",
      digest: undefined,
    });
    expect(parseImageRef("127.0.0.1:5000/team/app:v2")).toEqual({
      registry: "127.0.0.1:5000",
      repository: "team/app",
      tag: "v2",
      digest: undefined,
    });
    expect(parseImageRef(`ghcr.io/org/app:1@${digest}`)).toMatchObject({ tag: "1", digest });
    expect(parseImageRef("index.docker.io/me/app")?.registry).toBe("docker.io");
    for (const bad of ["UPPER/case", "app@sha256:short", "a/../b", "app:bad tag"]) {
      expect(parseImageRef(bad)).toBeUndefined();
    }
    expect(["127.0.0.1:5000", "localhost", "[::1]:5000"].map(isLoopbackRegistry)).toEqual([
      true,
      true,
      true,
    ]);
    expect(["ghcr.io", "10.0.0.1:5000", "127.example"].map(isLoopbackRegistry)).toEqual([
      false,
      false,
      false,
    ]);
  });
});

describe("InstanceSpec validation", () => {
  test("defaults containerConcurrency and timeoutSeconds like Knative", () => {
    expect(spec()).toMatchObject({ containerConcurrency: 0, timeoutSeconds: 300 });
  });

  test("names the exact field of a bad memory limit and says how to fix it", () => {
    const err = validationError(() =>
      spec({ container: { image: "x", resources: { limits: { memory: "1Ki" } } } }),
    );
    expect(err.causes).toHaveLength(1);
    expect(err.causes[0]?.field).toBe("container.resources.limits.memory");
    expect(err.causes[0]?.message).toContain("at least 6Mi");
  });

  test("rejects an instanceId that cannot be a container name", () => {
    const err = validationError(() => spec({ instanceId: "no spaces/allowed" }));
    expect(err.causes[0]?.field).toBe("instanceId");
  });

  test("rejects invalid runtime options with the field named", () => {
    const err = validationError(() => new ContainerRuntime({ dataAddress: "localhost" }));
    expect(err.causes[0]?.field).toBe("dataAddress");
  });
});

describe("container environment", () => {
  test("sets the contract's names last so user env cannot override them; PORT is the declared port", () => {
    const env = buildEnv(
      spec({
        service: "svc",
        container: {
          image: "x",
          env: [
            { name: "PORT", value: "1" },
            { name: "HOST", value: "0.0.0.0" },
            { name: "A", value: "user" },
            { name: "B", value: "user" },
          ],
        },
        extraEnv: { B: "agent", K_REVISION: "spoofed" },
      }),
    );
    expect(env).toEqual([
      "HOST=0.0.0.0",
      "A=user",
      "B=agent",
      "PORT=8080",
      "K_SERVICE=svc",
      "K_CONFIGURATION=app",
      "K_REVISION=app-00001",
    ]);
  });

  test("leaves K_SERVICE out for a revision that belongs to no service", () => {
    const env = buildEnv(spec());
    expect(env).toEqual(["PORT=8080", "K_CONFIGURATION=app", "K_REVISION=app-00001"]);
  });

  test("gives the declared containerPort as PORT and never a host address", () => {
    const env = buildEnv(spec({ container: { image: "x", ports: [{ containerPort: 8801 }] } }));
    expect(env).toContain("PORT=8801");
    expect(env.some((e) => e.startsWith("HOST="))).toBe(false);
  });
});

describe("docker create options", () => {
  test("maps command to Entrypoint and args to Cmd like Kubernetes", () => {
    const withBoth = buildCreateOptions(
      spec({ container: { image: "x", command: ["/bin/app"], args: ["-v"] } }),
      ctx,
    );
    expect(withBoth.Entrypoint).toEqual(["/bin/app"]);
    expect(withBoth.Cmd).toEqual(["-v"]);
    const imageDefaults = buildCreateOptions(spec(), ctx);
    expect(imageDefaults).not.toHaveProperty("Entrypoint");
    expect(imageDefaults).not.toHaveProperty("Cmd");
  });

  test("turns limits and requests into Docker's numbers and disables swap", () => {
    const opts = buildCreateOptions(
      spec({
        container: {
          image: "x",
          resources: {
            limits: { cpu: "1500m", memory: "256Mi" },
            requests: { cpu: "250m", memory: "64Mi" },
          },
        },
      }),
      ctx,
    );
    expect(opts.HostConfig).toMatchObject({
      NanoCpus: 1_500_000_000,
      Memory: 256 * 2 ** 20,
      MemorySwap: 256 * 2 ** 20,
      CpuShares: 256,
      MemoryReservation: 64 * 2 ** 20,
    });
  });

  test("runs on the cluster's bridge with the declared port published on the data address", () => {
    const opts = buildCreateOptions(
      spec({ container: { image: "x", ports: [{ containerPort: 8801 }] } }),
      ctx,
    );
    expect(opts.HostConfig?.NetworkMode).toBe("skiff-c1");
    expect(opts.ExposedPorts).toEqual({ "8801/tcp": {} });
    expect(opts.HostConfig?.PortBindings).toEqual({
      "8801/tcp": [{ HostIp: "127.0.0.2", HostPort: "20001" }],
    });
  });

  test("in a network sandbox: joins its namespace, publishes nothing itself, names it in a label", () => {
    const opts = buildCreateOptions(spec(), { ...ctx, sandbox: "abc123" });
    expect(opts.HostConfig?.NetworkMode).toBe("container:abc123");
    expect(opts.HostConfig).not.toHaveProperty("PortBindings");
    expect(opts).not.toHaveProperty("ExposedPorts");
    expect(opts.Labels?.["skiff.sandbox"]).toBe("abc123");
    // The endpoint it is reached at is the sandbox's port.
    expect(opts.Labels?.["skiff.port"]).toBe("20001");
  });

  test("drops every capability and adds back NET_BIND_SERVICE only for a port below 1024", () => {
    const high = buildCreateOptions(spec(), ctx).HostConfig;
    expect(high?.CapDrop).toEqual(["ALL"]);
    expect(high?.CapAdd).toEqual([]);
    expect(high?.SecurityOpt).toEqual(["no-new-privileges:true"]);
    expect(high).not.toHaveProperty("User");
    const low = buildCreateOptions(
      spec({ container: { image: "x", ports: [{ containerPort: 80 }] } }),
      ctx,
    ).HostConfig;
    expect(low?.CapAdd).toEqual(["NET_BIND_SERVICE"]);
    const extra = buildCreateOptions(spec(), { ...ctx, capAdd: ["cap_chown"] }).HostConfig;
    expect(extra?.CapAdd).toEqual(["CHOWN"]);
  });

  test("securityContext becomes Docker's User; runAsNonRoot is checked against the image's USER", () => {
    const withSc = (securityContext: Record<string, unknown>) =>
      spec({ container: { image: "x", securityContext } });
    expect(buildCreateOptions(spec(), ctx).User).toBeUndefined();
    expect(buildCreateOptions(withSc({ runAsUser: 2020 }), ctx).User).toBe("2020");
    expect(buildCreateOptions(withSc({ runAsUser: 2020, runAsGroup: 7 }), ctx).User).toBe("2020:7");
    // A group alone keeps the image's user.
    expect(
      buildCreateOptions(withSc({ runAsGroup: 7 }), { ...ctx, imageUser: "65532:65532" }).User,
    ).toBe("65532:7");
    expect(dockerUser(withSc({ runAsGroup: 7 }).container)).toBe("0:7");

    const nonRoot = withSc({ runAsNonRoot: true }).container;
    expect(nonRootProblem(nonRoot, "")).toMatch(/will run as root/);
    expect(nonRootProblem(nonRoot, "root")).toMatch(/will run as root/);
    expect(nonRootProblem(nonRoot, "0:0")).toMatch(/will run as root/);
    expect(nonRootProblem(nonRoot, "nobody")).toMatch(/non-numeric user \(nobody\)/);
    expect(nonRootProblem(nonRoot, "65532:65532")).toBeUndefined();
    expect(nonRootProblem(withSc({ runAsNonRoot: true, runAsUser: 5 }).container, "")).toBe(
      undefined,
    );
    expect(nonRootProblem(withSc({ runAsUser: 0 }).container, "")).toBeUndefined();
  });

  test("labels carry cluster, owner, instance and the whole spec for adoption", () => {
    const s = spec();
    const labels = buildCreateOptions(s, ctx).Labels ?? {};
    expect(labels["skiff.cluster"]).toBe("c1");
    expect(labels["skiff.owner"]).toBe("agent-a");
    expect(labels["skiff.instance"]).toBe("i1");
    expect(labels["skiff.address"]).toBe("127.0.0.2");
    expect(labels["skiff.port"]).toBe("20001");
    expect(JSON.parse(labels["skiff.spec"] ?? "null")).toEqual(s);
  });
});
