/** The gateway's limits: defaults, validation, and the way in from flags and config. */
import { describe, expect, it } from "vitest";
import { gatewayFlagsToConfig } from "../../deploy/cli/commands/gateway.ts";
import { parseGatewayOptions } from "../../gateway/options.ts";
import { gatewayOptionsFromConfig } from "../../gateway/server.ts";
import { loadConfig } from "../../src/config.ts";
import { ValidationError } from "../../src/errors.ts";

describe("gateway limits", () => {
  it("have the documented defaults", () => {
    const o = parseGatewayOptions({});
    expect({
      headersTimeoutMs: o.headersTimeoutMs,
      keepAliveTimeoutMs: o.keepAliveTimeoutMs,
      maxConnections: o.maxConnections,
      maxHeaderBytes: o.maxHeaderBytes,
      maxBodyBytes: o.maxBodyBytes,
      queueDepth: o.queueDepth,
      maxQueued: o.maxQueued,
    }).toEqual({
      headersTimeoutMs: 10_000,
      keepAliveTimeoutMs: 65_000,
      maxConnections: 10_000,
      maxHeaderBytes: 16_384,
      maxBodyBytes: 1024 ** 3,
      queueDepth: 10_000,
      maxQueued: 50_000,
    });
    expect(o.clusterSecret).toBeUndefined();
  });

  it("reject out-of-range values naming the field", () => {
    const bad = {
      headersTimeoutMs: 0,
      maxConnections: -1,
      maxHeaderBytes: 10,
      clusterSecret: "short",
    };
    let err: unknown;
    try {
      parseGatewayOptions(bad);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    const fields = (err as ValidationError).causes.map((c) => c.field).sort();
    expect(fields).toEqual([
      "clusterSecret",
      "headersTimeoutMs",
      "maxConnections",
      "maxHeaderBytes",
    ]);
  });

  it("come from `skiff gateway` flags through the configuration", () => {
    const config = loadConfig({
      env: {},
      overrides: gatewayFlagsToConfig({
        headersTimeout: "5000",
        keepAliveTimeout: "7000",
        maxConnections: "300",
        maxHeaderBytes: "8192",
        maxBodyBytes: "1048576",
        maxQueued: "1000",
      }),
    });
    const o = parseGatewayOptions(gatewayOptionsFromConfig(config));
    expect(o).toMatchObject({
      headersTimeoutMs: 5_000,
      keepAliveTimeoutMs: 7_000,
      maxConnections: 300,
      maxHeaderBytes: 8_192,
      maxBodyBytes: 1_048_576,
      maxQueued: 1_000,
    });
  });
});
