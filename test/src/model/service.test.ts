import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { ValidationError } from "../../../src/errors.ts";
import {
  type ParseContext,
  parseConfiguration,
  parseScaling,
  parseService,
  servingProtocol,
} from "../../../src/model/index.ts";
import { causesOf, expectCause } from "./support.ts";

const KNATIVE_HELLO = `
apiVersion: serving.knative.dev/v1
kind: Service
metadata: { name: hello, namespace: default }
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/min-scale: "1"
        autoscaling.knative.dev/max-scale: "10"
        autoscaling.knative.dev/target: "10"
        autoscaling.knative.dev/metric: concurrency
        autoscaling.knative.dev/window: 40s
        autoscaling.knative.dev/panic-threshold-percentage: "150"
    spec:
      containerConcurrency: 0
      containers:
        - image: ghcr.io/knative/helloworld-go:latest
          ports: [{ containerPort: 8080 }]
          env: [{ name: TARGET, value: World }]
`;

const ctx: ParseContext = { namespace: "default" };

/** A minimal valid Service body, with `patch` merged into the template spec's container. */
function service(container: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: "serving.knative.dev/v1",
    kind: "Service",
    metadata: { name: "hello" },
    spec: { template: { spec: { containers: [{ image: "nginx", ...container }], ...extra } } },
  };
}
const failService = (body: unknown, c: ParseContext = ctx) => causesOf(() => parseService(body, c));
const C0 = "spec.template.spec.containers[0]";

describe("the Knative hello Service manifest", () => {
  it("parses as is, with defaults applied and annotations stored as given", () => {
    const s = parseService(parseYaml(KNATIVE_HELLO), ctx);
    expect(s.metadata).toEqual({ name: "hello", namespace: "default" });
    expect(s.spec.template.spec).toEqual({
      containerConcurrency: 0,
      timeoutSeconds: 300,
      containers: [
        {
          image: "ghcr.io/knative/helloworld-go:latest",
          ports: [{ containerPort: 8080 }],
          env: [{ name: "TARGET", value: "World" }],
        },
      ],
    });
    expect(s.spec.template.metadata.annotations?.["autoscaling.knative.dev/window"]).toBe("40s");
    expect(s.spec.traffic).toEqual([{ latestRevision: true, percent: 100 }]);
  });

  it("its autoscaling settings come out right", () => {
    const s = parseService(parseYaml(KNATIVE_HELLO), ctx);
    expect(parseScaling(s.spec.template.metadata.annotations, s.spec.template.spec)).toMatchObject({
      metric: "concurrency",
      minScale: 1,
      maxScale: 10,
      target: 10,
      effectiveTarget: 7,
      stableWindowMs: 40_000,
      panicWindowMs: 4_000,
      panicThresholdPercentage: 150,
    });
  });

  it("a full GET-shaped object (status, uid, generation...) round-trips", () => {
    const body = {
      ...parseYaml(KNATIVE_HELLO),
      status: { observedGeneration: 1, conditions: [] },
    };
    body.metadata = {
      ...body.metadata,
      uid: "u",
      generation: 3,
      resourceVersion: "17",
      creationTimestamp: "2025-01-01T00:00:00Z",
    };
    const s = parseService(body, { namespace: "default", name: "hello" });
    expect(s.metadata.resourceVersion).toBe("17");
    expect(s.spec.template.spec.containers?.[0]?.image).toBe(
      "ghcr.io/knative/helloworld-go:latest",
    );
  });
});

describe("envelope", () => {
  it("apiVersion must be serving.knative.dev/v1", () => {
    expectCause(
      failService({ ...service(), apiVersion: "v1" }),
      "apiVersion",
      'must be "serving.knative.dev/v1" (got "v1")',
    );
  });
  it("kind must match the endpoint", () => {
    expectCause(
      failService({ ...service(), kind: "Route" }),
      "kind",
      'must be "Service" for this endpoint (got "Route")',
    );
  });
  it("apiVersion and kind may be omitted", () => {
    const { apiVersion: _a, kind: _k, ...rest } = service();
    expect(parseService(rest, ctx).metadata.name).toBe("hello");
  });
  it("a non-object body is refused", () => {
    expectCause(failService([1, 2]), "(root)", "must be an object");
  });
  it("an unknown top-level field gets a did-you-mean", () => {
    expectCause(failService({ ...service(), spce: {} }), "spce", 'did you mean "spec"?');
  });
  it("the error is a ValidationError naming the kind and name", () => {
    try {
      parseService(service({ image: "" }), ctx);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).message).toContain('Service "hello" is invalid');
      expect((err as ValidationError).status).toBe(422);
    }
  });
});

describe("metadata", () => {
  it("name is required when the URL has none", () => {
    expectCause(failService({ ...service(), metadata: {} }), "metadata.name", "required");
  });
  it("name comes from the URL when the body has none", () => {
    expect(
      parseService({ ...service(), metadata: {} }, { namespace: "default", name: "hello" }).metadata
        .name,
    ).toBe("hello");
  });
  it("a body name different from the URL name is refused", () => {
    expectCause(
      failService(service(), { namespace: "default", name: "other" }),
      "metadata.name",
      'does not match the name in the URL ("other")',
    );
  });
  it("name must be a DNS-1035 label", () => {
    expectCause(
      failService({ ...service(), metadata: { name: "1hello" } }),
      "metadata.name",
      "DNS-1035",
    );
  });
  it("name must leave room for the revision suffix", () => {
    expectCause(
      failService({ ...service(), metadata: { name: `a${"b".repeat(57)}` } }),
      "metadata.name",
      "no more than 57 characters",
    );
  });
  it("a body namespace different from the URL namespace is refused", () => {
    expectCause(
      failService({ ...service(), metadata: { name: "hello", namespace: "prod" } }),
      "metadata.namespace",
      'does not match the namespace in the URL ("default")',
    );
  });
  it("label values must be strings (unquoted YAML numbers are named)", () => {
    expectCause(
      failService({ ...service(), metadata: { name: "hello", labels: { tier: 1 } } }),
      "metadata.labels[tier]",
      'must be a string (got the number 1); quote it: "1"',
    );
  });
  it("generateName completes a missing name with 5 characters, as the Kubernetes API server does", () => {
    const body = { ...service(), metadata: { generateName: "hello-" } };
    const a = parseService(body, ctx).metadata.name;
    const b = parseService(body, ctx).metadata.name;
    expect(a).toMatch(/^hello-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
    expect(a).not.toBe(b);
    // A given name wins; a long prefix is cut so revision names still fit.
    expect(
      parseService({ ...service(), metadata: { name: "x", generateName: "h-" } }, ctx).metadata
        .name,
    ).toBe("x");
    const long = parseService({ ...service(), metadata: { generateName: "a".repeat(80) } }, ctx);
    expect(long.metadata.name).toHaveLength(57);
    expectCause(
      failService({ ...service(), metadata: { generateName: "Bad_" } }),
      "metadata.generateName",
      "",
    );
  });
  it("annotations over the size limit are refused", () => {
    const body = {
      ...service(),
      metadata: { name: "hello", annotations: { big: "x".repeat(200) } },
    };
    expectCause(
      causesOf(() =>
        parseService(body, { namespace: "default", limits: { maxAnnotationsBytes: 100 } }),
      ),
      "metadata.annotations",
      "over the limit of 100",
    );
  });
});

describe("template", () => {
  it("neither containers nor worker is an error", () => {
    expectCause(
      failService({ metadata: { name: "hello" }, spec: { template: { spec: {} } } }),
      "spec.template.spec",
      'set "containers"',
    );
  });
  it("both containers and worker is an error", () => {
    expectCause(
      failService(service({}, { worker: { source: "x" } })),
      "spec.template.spec",
      "not both",
    );
  });
  it("zero containers is an error", () => {
    const body = { metadata: { name: "hello" }, spec: { template: { spec: { containers: [] } } } };
    expectCause(failService(body), "spec.template.spec.containers", "exactly one container");
  });
  it("two containers is an error", () => {
    const body = {
      metadata: { name: "hello" },
      spec: { template: { spec: { containers: [{ image: "a" }, { image: "b" }] } } },
    };
    expectCause(
      failService(body),
      "spec.template.spec.containers",
      "exactly one container (got 2)",
    );
  });
  it("a worker template parses and keeps its source", () => {
    const body = {
      metadata: { name: "hello" },
      spec: { template: { spec: { worker: { source: "export default {}" } } } },
    };
    expect(parseService(body, ctx).spec.template.spec.worker).toEqual({
      source: "export default {}",
    });
  });
  it("worker errors carry worker paths", () => {
    const body = {
      metadata: { name: "hello" },
      spec: { template: { spec: { worker: { source: "x", network: "lan" } } } },
    };
    expectCause(failService(body), "spec.template.spec.worker.network", 'must be "none"');
  });
  it("containerConcurrency must be 0..1000", () => {
    expectCause(
      failService(service({}, { containerConcurrency: 1001 })),
      "spec.template.spec.containerConcurrency",
      "between 0 and 1000",
    );
  });
  it("containerConcurrency must be an integer, not a string", () => {
    expectCause(
      failService(service({}, { containerConcurrency: "10" })),
      "spec.template.spec.containerConcurrency",
      "write it without quotes: 10",
    );
  });
  it("timeoutSeconds must be 1..600", () => {
    expectCause(
      failService(service({}, { timeoutSeconds: 601 })),
      "spec.template.spec.timeoutSeconds",
      "between 1 and 600",
    );
    expectCause(
      failService(service({}, { timeoutSeconds: 0 })),
      "spec.template.spec.timeoutSeconds",
      "between 1 and 600",
    );
  });
  it("responseStartTimeoutSeconds must not exceed timeoutSeconds", () => {
    expectCause(
      failService(service({}, { timeoutSeconds: 10, responseStartTimeoutSeconds: 20 })),
      "spec.template.spec.responseStartTimeoutSeconds",
      "at most timeoutSeconds (10)",
    );
  });
  it("idleTimeoutSeconds must be positive", () => {
    expectCause(
      failService(service({}, { idleTimeoutSeconds: 0 })),
      "spec.template.spec.idleTimeoutSeconds",
      "between 1 and 600",
    );
  });
  it("unsupported pod fields say so", () => {
    expectCause(
      failService(service({}, { volumes: [] })),
      "spec.template.spec.volumes",
      "not supported by Skiff",
    );
  });
  it("template.metadata.name must start with <service>-", () => {
    const body = {
      metadata: { name: "hello" },
      spec: {
        template: { metadata: { name: "other-v1" }, spec: { containers: [{ image: "a" }] } },
      },
    };
    expectCause(failService(body), "spec.template.metadata.name", 'must start with "hello-"');
  });
  it("template.metadata.name may be <service>-anything", () => {
    const body = {
      metadata: { name: "hello" },
      spec: {
        template: { metadata: { name: "hello-v2" }, spec: { containers: [{ image: "a" }] } },
      },
    };
    expect(parseService(body, ctx).spec.template.metadata.name).toBe("hello-v2");
  });
  it("template.metadata.name must be a DNS-1123 subdomain", () => {
    const body = {
      metadata: { name: "hello" },
      spec: {
        template: { metadata: { name: "hello_v2" }, spec: { containers: [{ image: "a" }] } },
      },
    };
    expectCause(failService(body), "spec.template.metadata.name", "DNS-1123 subdomain");
  });
  it("template.metadata.name must fit in 63 characters", () => {
    const body = {
      metadata: { name: "hello" },
      spec: {
        template: {
          metadata: { name: `hello-${"v".repeat(58)}` },
          spec: { containers: [{ image: "a" }] },
        },
      },
    };
    expectCause(failService(body), "spec.template.metadata.name", "no more than 63 characters");
  });
  it("bad autoscaling annotations are reported at the template annotation path", () => {
    const body = {
      metadata: { name: "hello" },
      spec: {
        template: {
          metadata: { annotations: { "autoscaling.knative.dev/minScale": "-1" } },
          spec: { containers: [{ image: "a" }] },
        },
      },
    };
    expectCause(
      failService(body),
      "spec.template.metadata.annotations[autoscaling.knative.dev/minScale]",
      "between 0 and",
    );
  });
  it("an unquoted annotation number is named with how to fix it", () => {
    const body = {
      metadata: { name: "hello" },
      spec: {
        template: {
          metadata: { annotations: { "autoscaling.knative.dev/min-scale": 1 } },
          spec: { containers: [{ image: "a" }] },
        },
      },
    };
    expectCause(
      failService(body),
      "spec.template.metadata.annotations[autoscaling.knative.dev/min-scale]",
      'quote it: "1"',
    );
  });
});

describe("container", () => {
  it("image is required", () => {
    expectCause(failService(service({ image: undefined })), `${C0}.image`, "required");
  });
  it("image must not be empty", () => {
    expectCause(failService(service({ image: " " })), `${C0}.image`, "must not be empty");
  });
  it("a typo gets a did-you-mean", () => {
    expectCause(
      failService(service({ imag: "x" })),
      `${C0}.imag`,
      'unknown field; did you mean "image"?',
    );
  });
  it("livenessProbe is read like readinessProbe (httpGet, tcpSocket or exec)", () => {
    const probe = { httpGet: { path: "/healthz" }, periodSeconds: 1, failureThreshold: 3 };
    expect(
      parseService(service({ livenessProbe: probe }), ctx).spec.template.spec.containers?.[0]
        ?.livenessProbe,
    ).toEqual(probe);
    expectCause(
      failService(service({ livenessProbe: { httpGet: { port: 9999 } } })),
      `${C0}.livenessProbe.httpGet.port`,
      "serving port",
    );
  });
  it("env names must be valid", () => {
    expectCause(
      failService(service({ env: [{ name: "1BAD", value: "x" }] })),
      `${C0}.env[0].name`,
      "not a valid environment variable name",
    );
  });
  for (const name of ["PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION", "K_OTHER"]) {
    it(`env name ${name} is reserved by the runtime contract`, () => {
      expectCause(
        failService(service({ env: [{ name, value: "x" }] })),
        `${C0}.env[0].name`,
        "reserved by the runtime contract",
      );
    });
  }
  it("duplicate env names are refused at the second", () => {
    expectCause(
      failService(
        service({
          env: [
            { name: "A", value: "1" },
            { name: "A", value: "2" },
          ],
        }),
      ),
      `${C0}.env[1].name`,
      `duplicate name "A" (also at ${C0}.env[0])`,
    );
  });
  it("env valueFrom is not supported", () => {
    expectCause(
      failService(service({ env: [{ name: "A", valueFrom: {} }] })),
      `${C0}.env[0].valueFrom`,
      "no Secrets or ConfigMaps",
    );
  });
  it("a missing env value is stored as empty", () => {
    expect(
      parseService(service({ env: [{ name: "A" }] }), ctx).spec.template.spec.containers?.[0]?.env,
    ).toEqual([{ name: "A", value: "" }]);
  });
  it("at most one port", () => {
    expectCause(
      failService(service({ ports: [{ containerPort: 1 }, { containerPort: 2 }] })),
      `${C0}.ports`,
      "at most one (got 2)",
    );
  });
  it("containerPort must be 1..65535", () => {
    expectCause(
      failService(service({ ports: [{ containerPort: 70000 }] })),
      `${C0}.ports[0].containerPort`,
      "between 1 and 65535",
    );
  });
  it("port name must be empty, http1 or h2c", () => {
    expect(
      parseService(service({ ports: [{ containerPort: 8080, name: "h2c" }] }), ctx).spec.template
        .spec.containers?.[0]?.ports,
    ).toEqual([{ containerPort: 8080, name: "h2c" }]);
    expectCause(
      failService(service({ ports: [{ containerPort: 8080, name: "grpc" }] })),
      `${C0}.ports[0].name`,
      '"http1"',
    );
  });
  it("a port given by name only serves on 8080 (Knative's TestProtocols)", () => {
    for (const name of ["h2c", "http1"]) {
      const c = parseService(service({ ports: [{ name }] }), ctx).spec.template.spec
        .containers?.[0];
      expect(c?.ports).toEqual([{ containerPort: 8080, name }]);
      expect(servingProtocol(c!)).toBe(name);
    }
  });
  it("securityContext: runAsUser, runAsGroup and runAsNonRoot as Knative allows them", () => {
    const sc = { runAsUser: 1000, runAsGroup: 3000, runAsNonRoot: true };
    expect(
      parseService(service({ securityContext: sc }), ctx).spec.template.spec.containers?.[0]
        ?.securityContext,
    ).toEqual(sc);
    expectCause(
      failService(service({ securityContext: { runAsNonRoot: true, runAsUser: 0 } })),
      `${C0}.securityContext.runAsUser`,
      "cannot be 0",
    );
    expectCause(
      failService(service({ securityContext: { privileged: true } })),
      `${C0}.securityContext.privileged`,
      "never run privileged",
    );
    expectCause(
      failService(service({ securityContext: { runAsUser: -1 } })),
      `${C0}.securityContext.runAsUser`,
      "",
    );
  });
  it("cpu and memory limits must be quantities", () => {
    const c = failService(service({ resources: { limits: { cpu: "lots", memory: "1XB" } } }));
    expectCause(c, `${C0}.resources.limits.cpu`, "not a CPU quantity");
    expectCause(c, `${C0}.resources.limits.memory`, "not a memory quantity");
  });
  it("a request above its limit is refused", () => {
    expectCause(
      failService(
        service({ resources: { limits: { memory: "128Mi" }, requests: { memory: "256Mi" } } }),
      ),
      `${C0}.resources.requests.memory`,
      "less than or equal to the memory limit (128Mi)",
    );
  });
  it("a bare YAML number is accepted as a cpu quantity and stored as a string", () => {
    const c = parseService(service({ resources: { limits: { cpu: 1 } } }), ctx).spec.template.spec
      .containers?.[0];
    expect(c?.resources).toEqual({ limits: { cpu: "1" } });
  });
  it("readinessProbe may not set both tcpSocket and httpGet", () => {
    expectCause(
      failService(service({ readinessProbe: { tcpSocket: {}, httpGet: { path: "/" } } })),
      `${C0}.readinessProbe`,
      "at most one",
    );
  });
  it("httpGet.path must start with /", () => {
    expectCause(
      failService(service({ readinessProbe: { httpGet: { path: "healthz" } } })),
      `${C0}.readinessProbe.httpGet.path`,
      'must start with "/"',
    );
  });
  it("a probe port other than the serving port is refused", () => {
    expectCause(
      failService(
        service({
          ports: [{ containerPort: 9000 }],
          readinessProbe: { tcpSocket: { port: 8080 } },
        }),
      ),
      `${C0}.readinessProbe.tcpSocket.port`,
      "may only be the serving port 9000",
    );
  });
  it("probe numbers are range-checked", () => {
    const c = failService(service({ readinessProbe: { periodSeconds: -1, failureThreshold: 0 } }));
    expectCause(c, `${C0}.readinessProbe.periodSeconds`, "between 0 and 3600");
    expectCause(c, `${C0}.readinessProbe.failureThreshold`, "between 1 and 100");
  });
  it("exec probes need a command and exclude the other handlers", () => {
    expect(
      parseService(service({ readinessProbe: { exec: { command: ["/check", "-q"] } } }), ctx).spec
        .template.spec.containers?.[0]?.readinessProbe,
    ).toEqual({ exec: { command: ["/check", "-q"] } });
    expectCause(
      failService(service({ readinessProbe: { exec: { command: [] } } })),
      `${C0}.readinessProbe.exec.command`,
      "required",
    );
    expectCause(
      failService(service({ livenessProbe: { exec: { command: ["/check"] }, tcpSocket: {} } })),
      `${C0}.livenessProbe`,
      'at most one of "tcpSocket", "httpGet" and "exec"',
    );
  });
  it("an httpGet probe without a path is stored with path /", () => {
    const c = parseService(service({ readinessProbe: { httpGet: {} } }), ctx).spec.template.spec
      .containers?.[0];
    expect(c?.readinessProbe).toEqual({ httpGet: { path: "/" } });
  });
  it("command and args must be lists of strings", () => {
    expectCause(failService(service({ args: ["a", 2] })), `${C0}.args[1]`, "must be a string");
    expectCause(failService(service({ command: "sh -c x" })), `${C0}.command`, "must be a list");
  });
});

describe("all causes at once", () => {
  it("every problem in a body is reported, not just the first", () => {
    const c = failService({
      apiVersion: "v2",
      metadata: { name: "Hello" },
      spec: {
        template: {
          spec: { containers: [{ imag: "x", env: [{ name: "PORT" }] }], timeoutSeconds: 9000 },
        },
        traffic: [{ percent: 30 }],
      },
    });
    expect(c.map((x) => x.field)).toEqual(
      expect.arrayContaining([
        "apiVersion",
        "metadata.name",
        "spec.template.spec.timeoutSeconds",
        `${C0}.imag`,
        `${C0}.image`,
        `${C0}.env[0].name`,
        "spec.traffic",
      ]),
    );
  });
});

describe("parseConfiguration", () => {
  const config = {
    apiVersion: "serving.knative.dev/v1",
    kind: "Configuration",
    metadata: { name: "hello" },
    spec: { template: { spec: { containers: [{ image: "nginx" }] } } },
  };
  it("parses a Configuration", () => {
    const c = parseConfiguration(config, ctx);
    expect(c.metadata.name).toBe("hello");
    expect(c.spec.template.spec.timeoutSeconds).toBe(300);
  });
  it("kind must be Configuration", () => {
    expectCause(
      causesOf(() => parseConfiguration({ ...config, kind: "Service" }, ctx)),
      "kind",
      'must be "Configuration"',
    );
  });
  it("traffic is not a Configuration field", () => {
    expectCause(
      causesOf(() => parseConfiguration({ ...config, spec: { ...config.spec, traffic: [] } }, ctx)),
      "spec.traffic",
      "unknown field",
    );
  });
});
