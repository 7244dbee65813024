import { describe, expect, it } from "vitest";
import {
  missingRevisionCauses,
  parseService,
  type TrafficOptions,
  validateTraffic,
} from "../../../src/model/index.ts";
import { causesOf, expectCause } from "./support.ts";

const svc: TrafficOptions = { owner: "service", name: "hello" };
const route: TrafficOptions = { owner: "route", name: "hello" };
const ok = (list: unknown, opts: TrafficOptions = svc) => {
  const r = validateTraffic(list, opts);
  expect(r.causes).toEqual([]);
  return r.traffic;
};
const bad = (list: unknown, opts: TrafficOptions = svc) => {
  const r = validateTraffic(list, opts);
  expect(r.traffic).toBeUndefined();
  return r.causes;
};

describe("Service traffic defaults", () => {
  it("a missing list means 100% to the latest revision", () => {
    expect(ok(undefined)).toEqual([{ latestRevision: true, percent: 100 }]);
  });
  it("an empty list means 100% to the latest revision", () => {
    expect(ok([])).toEqual([{ latestRevision: true, percent: 100 }]);
  });
  it("latestRevision defaults to true without revisionName", () => {
    expect(ok([{ percent: 100 }])).toEqual([{ latestRevision: true, percent: 100 }]);
  });
  it("latestRevision defaults to false with revisionName (the pinned walkthrough case)", () => {
    expect(ok([{ revisionName: "hello-00001", percent: 100 }])).toEqual([
      { revisionName: "hello-00001", latestRevision: false, percent: 100 },
    ]);
  });
  it("a split with @latest and a tag-only target is stored as given", () => {
    expect(
      ok([
        { revisionName: "hello-00001", percent: 50 },
        { latestRevision: true, percent: 50 },
        { revisionName: "hello-00002", tag: "canary" },
      ]),
    ).toEqual([
      { revisionName: "hello-00001", latestRevision: false, percent: 50 },
      { latestRevision: true, percent: 50 },
      { tag: "canary", revisionName: "hello-00002", latestRevision: false },
    ]);
  });
  it("a Route keeps an empty list empty", () => {
    expect(ok([], route)).toEqual([]);
  });
});

describe("traffic rules", () => {
  it("percents must sum to exactly 100", () => {
    expectCause(
      bad([{ percent: 60 }, { revisionName: "hello-00001", percent: 30 }]),
      "spec.traffic",
      "sum to 90, but must sum to exactly 100",
    );
  });
  it("a target without percent counts as 0", () => {
    expectCause(bad([{ revisionName: "hello-00001" }]), "spec.traffic", "sum to 0");
  });
  it("percent must be an integer 0..100", () => {
    expectCause(bad([{ percent: 101 }]), "spec.traffic[0].percent", "between 0 and 100");
    expectCause(
      bad([{ percent: 50.5 }, { percent: 49.5 }]),
      "spec.traffic[0].percent",
      "must be an integer",
    );
  });
  it("configurationName is not allowed in a Service, pointing to latestRevision", () => {
    expectCause(
      bad([{ configurationName: "hello", percent: 100 }]),
      "spec.traffic[0].configurationName",
      "use latestRevision: true",
    );
  });
  it("revisionName with latestRevision: true is refused", () => {
    expectCause(
      bad([{ revisionName: "hello-00001", latestRevision: true, percent: 100 }]),
      "spec.traffic[0].latestRevision",
      'cannot be combined with revisionName "hello-00001"',
    );
  });
  it("latestRevision: false without revisionName is refused", () => {
    expectCause(
      bad([{ latestRevision: false, percent: 100 }]),
      "spec.traffic[0].latestRevision",
      "needs a revisionName",
    );
  });
  it("tags must be DNS-1035 labels", () => {
    expectCause(bad([{ percent: 100, tag: "Canary" }]), "spec.traffic[0].tag", "DNS-1035");
  });
  it("tags must be unique", () => {
    expectCause(
      bad([
        { percent: 100, tag: "a" },
        { revisionName: "hello-00001", tag: "a" },
      ]),
      "spec.traffic[1].tag",
      'duplicate tag "a" (also at spec.traffic[0].tag)',
    );
  });
  it("{tag}-{service} must fit in 63 characters", () => {
    expectCause(
      bad([{ percent: 100, tag: `t${"x".repeat(57)}` }]),
      "spec.traffic[0].tag",
      "must fit in 63 characters",
    );
  });
  it("revisionName must be a DNS-1123 subdomain", () => {
    expectCause(
      bad([{ revisionName: "Hello_1", percent: 100 }]),
      "spec.traffic[0].revisionName",
      "DNS-1123 subdomain",
    );
  });
  it("url is status-only", () => {
    expectCause(bad([{ percent: 100, url: "http://x" }]), "spec.traffic[0].url", "set in status");
  });
  it("an unknown field gets a did-you-mean", () => {
    expectCause(bad([{ percnt: 100 }]), "spec.traffic[0].percnt", 'did you mean "percent"?');
  });
  it("the field prefix is a parameter", () => {
    expectCause(
      bad([{ percent: 1 }], { owner: "service", fieldPrefix: "traffic" }),
      "traffic",
      "sum to 1",
    );
  });
  it("the list length is limited", () => {
    const list = Array.from({ length: 3 }, () => ({ percent: 0 }));
    expectCause(
      bad(list, { owner: "service", limits: { maxTrafficTargets: 2 } }),
      "spec.traffic",
      "at most 2 items",
    );
  });
});

describe("Route traffic (configurationName allowed)", () => {
  it("configurationName defaults latestRevision to true", () => {
    expect(ok([{ configurationName: "hello", percent: 100 }], route)).toEqual([
      { configurationName: "hello", latestRevision: true, percent: 100 },
    ]);
  });
  it("revisionName and configurationName together are refused", () => {
    expectCause(
      bad([{ revisionName: "hello-00001", configurationName: "hello", percent: 100 }], route),
      "spec.traffic[0]",
      "not both",
    );
  });
  it("neither revisionName nor configurationName is refused", () => {
    expectCause(bad([{ percent: 100 }], route), "spec.traffic[0]", 'set "revisionName"');
  });
  it("latestRevision: false with configurationName is refused", () => {
    expectCause(
      bad([{ configurationName: "hello", latestRevision: false, percent: 100 }], route),
      "spec.traffic[0].latestRevision",
      "cannot be used with configurationName",
    );
  });
});

describe("traffic inside parseService", () => {
  it("uses the service name for the tag host check", () => {
    const body = {
      metadata: { name: `s${"x".repeat(40)}` },
      spec: {
        template: { spec: { containers: [{ image: "a" }] } },
        traffic: [{ percent: 100, tag: `t${"y".repeat(25)}` }],
      },
    };
    expectCause(
      causesOf(() => parseService(body, { namespace: "default" })),
      "spec.traffic[0].tag",
      "host label",
    );
  });
});

describe("missingRevisionCauses", () => {
  it("names targets whose revision does not exist", () => {
    const causes = missingRevisionCauses(
      [
        { revisionName: "hello-00001", percent: 50 },
        { revisionName: "hello-00009", percent: 50 },
        { latestRevision: true },
      ],
      (n) => n === "hello-00001",
    );
    expect(causes).toEqual([
      expect.objectContaining({
        field: "spec.traffic[1].revisionName",
        message: expect.stringContaining('revision "hello-00009" does not exist'),
      }),
    ]);
  });
});
