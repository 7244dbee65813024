import { describe, expect, it } from "vitest";
import {
  effectiveReadinessProbe,
  parseCpu,
  parseMemory,
  parseQuantity,
  servingPort,
  servingProtocol,
} from "../../../src/model/index.ts";

describe("parseCpu (millicores)", () => {
  it("reads millicores, cores and fractions", () => {
    expect(parseCpu("500m")).toBe(500);
    expect(parseCpu("1")).toBe(1000);
    expect(parseCpu("2.5")).toBe(2500);
    expect(parseCpu(0.25)).toBe(250);
  });
  it("rounds sub-millicore values up", () => {
    expect(parseCpu("100u")).toBe(1);
  });
  it("rejects words with an example of a good value", () => {
    expect(() => parseCpu("two")).toThrow(
      /not a CPU quantity; use cores or millicores, e.g. "1", "0.5" or "500m"/,
    );
  });
  it("rejects zero", () => {
    expect(() => parseCpu("0")).toThrow(/greater than 0/);
  });
});

describe("parseMemory (bytes)", () => {
  it("reads binary and decimal suffixes and exponents", () => {
    expect(parseMemory("128Mi")).toBe(134_217_728);
    expect(parseMemory("1Gi")).toBe(1_073_741_824);
    expect(parseMemory("500M")).toBe(500_000_000);
    expect(parseMemory("1e3")).toBe(1000);
    expect(parseMemory("1k")).toBe(1000);
  });
  it("rejects unknown suffixes", () => {
    expect(() => parseMemory("1GB")).toThrow(/not a memory quantity/);
  });
  it("parseQuantity returns undefined for non-quantities", () => {
    expect(parseQuantity("1.2.3")).toBeUndefined();
  });
});

describe("runtime defaults applied at use, not stored", () => {
  it("servingPort is the containerPort, else 8080", () => {
    expect(servingPort({ ports: [{ containerPort: 9000 }] })).toBe(9000);
    expect(servingPort({})).toBe(8080);
  });
  it("servingProtocol is h2c only for a port named h2c", () => {
    expect(servingProtocol({ ports: [{ containerPort: 1, name: "h2c" }] })).toBe("h2c");
    expect(servingProtocol({})).toBe("http1");
  });
  it("the default readiness probe is a TCP connect to the serving port", () => {
    expect(effectiveReadinessProbe({})).toEqual({ tcpSocket: {} });
    expect(effectiveReadinessProbe({ readinessProbe: { periodSeconds: 5 } })).toEqual({
      periodSeconds: 5,
      tcpSocket: {},
    });
    expect(effectiveReadinessProbe({ readinessProbe: { httpGet: { path: "/ready" } } })).toEqual({
      httpGet: { path: "/ready" },
    });
  });
});
