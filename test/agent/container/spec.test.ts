/** Pure parts of the container runtime: quantities, spec validation, env and create options. */
import { describe, expect, test } from "vitest";
import { registryOf } from "../../../agent/container/images.ts";
import { ContainerRuntime } from "../../../agent/container/runtime.ts";
import {
  buildCreateOptions,
  buildEnv,
  type CreateContext,
  type InstanceSpecInput,
  InstanceSpecSchema,
  parseWith,
} from "../../../agent/container/spec.ts";
import { ValidationError } from "../../../src/errors.ts";

const ctx: CreateContext = {
  name: "skiff-i1",
  image: "example/app:1",
  address: "127.0.0.2",
  port: 20001,
  owner: "agent-a",
  labelPrefix: "skiff.",
  bindAddressEnv: "HOST",
  capAdd: ["SETUID"],
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
  test("sets the contract's names last so user env cannot override them, and HOST first", () => {
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
      ctx,
    );
    expect(env).toEqual([
      "HOST=0.0.0.0",
      "A=user",
      "B=agent",
      "PORT=20001",
      "K_SERVICE=svc",
      "K_CONFIGURATION=app",
      "K_REVISION=app-00001",
    ]);
  });

  test("leaves K_SERVICE out for a revision that belongs to no service", () => {
    const env = buildEnv(spec(), { ...ctx, bindAddressEnv: null });
    expect(env).toEqual(["PORT=20001", "K_CONFIGURATION=app", "K_REVISION=app-00001"]);
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

  test("labels carry owner, instance and the whole spec for adoption", () => {
    const s = spec();
    const labels = buildCreateOptions(s, ctx).Labels ?? {};
    expect(labels["skiff.owner"]).toBe("agent-a");
    expect(labels["skiff.instance"]).toBe("i1");
    expect(labels["skiff.address"]).toBe("127.0.0.2");
    expect(labels["skiff.port"]).toBe("20001");
    expect(JSON.parse(labels["skiff.spec"] ?? "null")).toEqual(s);
  });
});
