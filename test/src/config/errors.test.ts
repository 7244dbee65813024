/**
 * A configuration that cannot run stops the command at start: unknown keys
 * with a did-you-mean (bounded as the deploy API's), bad values with the
 * key, where the value came from (file, env var, flag) and how to fix it.
 */
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../../src/config.ts";
import { ValidationError } from "../../../src/errors.ts";
import { MAX_CAUSES } from "../../../src/model/fields.ts";
import { configFiles, flags } from "./support.ts";

const file = configFiles();

function failure(load: () => unknown): ValidationError {
  try {
    load();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return err as ValidationError;
  }
  throw new Error("the configuration was accepted");
}

describe("unknown keys in the config file", () => {
  it("are refused with a did-you-mean and the file named", () => {
    const path = file("agent:\n  prot: 8091\nautoscaler:\n  stableWindw: 6s\n");
    const err = failure(() => loadConfig({ file: path, env: {} }));
    expect(err.causes.map((c) => c.field)).toEqual(["agent.prot", "autoscaler.stableWindw"]);
    expect(err.message).toContain(
      `agent.prot: unknown field; did you mean "port"? (in config file ${path})`,
    );
    expect(err.message).toContain(
      `autoscaler.stableWindw: unknown field; did you mean "stableWindow"?`,
    );
  });

  it("at the top level and in a section's sub-object too", () => {
    const path = file("redisPrefx: x\nscaler:\n  gc:\n    minNonActiveRevision: 2\n");
    const err = failure(() => loadConfig({ file: path, env: {} }));
    expect(err.message).toMatch(/redisPrefx: unknown field; did you mean "redisPrefix"\?/);
    expect(err.message).toMatch(
      /scaler\.gc\.minNonActiveRevision: unknown field; did you mean "minNonActiveRevisions"\?/,
    );
  });

  it("a huge key gets no suggestion and is cut in the field path", () => {
    const key = "x".repeat(10_000);
    // JSON: YAML's implicit keys stop at 1024 characters.
    const path = file(JSON.stringify({ gateway: { [key]: 1 } }));
    const err = failure(() => loadConfig({ file: path, env: {} }));
    expect(err.causes[0]!.field).toBe(`gateway.${"x".repeat(64)}...(10000 characters)`);
    expect(err.causes[0]!.message).toMatch(/^unknown field; the fields allowed here are: id, host/);
    expect(err.causes[0]!.message).toContain(`(in config file ${path})`);
    expect(err.message.length).toBeLessThan(5_000);
  });

  it("hundreds of them give a bounded answer", () => {
    const lines = Array.from({ length: 300 }, (_, i) => `  k${i}: 1`);
    const path = file(`api:\n${lines.join("\n")}\n`);
    const err = failure(() => loadConfig({ file: path, env: {} }));
    expect(err.causes).toHaveLength(MAX_CAUSES + 1);
    expect(err.causes.at(-1)!.message).toMatch(/^and 250 more problems not listed/);
  });
});

describe("bad values", () => {
  it("from the environment name the variable", () => {
    const err = failure(() => loadConfig({ env: { SKIFF_AGENT_PORT: "70000" } }));
    expect(err.causes[0]!.field).toBe("agent.port");
    expect(err.message).toMatch(
      /agent\.port: .*65535.* \(from environment variable SKIFF_AGENT_PORT: fix or unset it\)/,
    );
  });

  it("from a flag name the flag", () => {
    const err = failure(() =>
      loadConfig({ env: {}, overrides: flags("gateway", ["--max-connections", "lots"]) }),
    );
    expect(err.message).toMatch(
      /gateway\.maxConnections: .*expected number.* \(from flag --max-connections: fix the flag\)/,
    );
  });

  it("from the file name the file and the key to fix there", () => {
    const path = file("scaler:\n  leaseMs: 10\n");
    const err = failure(() => loadConfig({ file: path, env: {} }));
    expect(err.message).toContain(`(in config file ${path}: fix scaler.leaseMs there)`);
  });

  it("a default that clashes with a given value says every way to set it", () => {
    const err = failure(() =>
      loadConfig({ env: {}, overrides: flags("agent", ["--heartbeat-interval", "4000"]) }),
    );
    expect(err.causes[0]!.field).toBe("agent.heartbeatTtlMs");
    expect(err.message).toContain(
      "must be at least twice heartbeatIntervalMs, so that one late heartbeat is not death (the default; set agent.heartbeatTtlMs in the config file, env SKIFF_AGENT_HEARTBEAT_TTL_MS, flag --heartbeat-ttl",
    );
  });

  it("never echo a secret", () => {
    const err = failure(() => loadConfig({ env: { SKIFF_TOKEN: "short-secret" } }));
    expect(err.message).toMatch(
      /api\.token: tokens must be at least 16 characters \(from environment variable SKIFF_TOKEN/,
    );
    expect(err.message).not.toContain("short-secret");
  });
});

describe("skiff agent with a bad config file", () => {
  it("exits non-zero before starting anything, naming the key and the file", async () => {
    const { runCli } = await import("../../support/cli.ts");
    const path = file("agent:\n  prot: 8091\n");
    const r = await runCli(["agent", "--config", path]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `agent.prot: unknown field; did you mean "port"? (in config file ${path})`,
    );
  });
});

describe("plain HTTP for the deploy API", () => {
  it("is refused off loopback (a token in clear text must not cross a network)", () => {
    const err = failure(() =>
      loadConfig({ env: {}, overrides: flags("up", ["--no-api-tls", "--api-host", "0.0.0.0"]) }),
    );
    expect(err.causes.map((c) => c.field)).toEqual(["api.tls.enabled"]);
    expect(err.message).toMatch(/plain HTTP .* is only for a loopback host, not "0\.0\.0\.0"/);
  });

  it("is allowed on loopback behind --no-tls / --no-api-tls; HTTPS is the default", () => {
    expect(loadConfig({ env: {} }).api.tls.enabled).toBe(true);
    for (const host of ["127.0.0.1", "127.8.9.10", "::1", "localhost"]) {
      const c = loadConfig({ env: {}, overrides: flags("api", ["--no-tls", "--host", host]) });
      expect(c.api.tls.enabled, host).toBe(false);
    }
    expect(
      loadConfig({ env: {}, overrides: flags("up", ["--api-host", "0.0.0.0"]) }).api.host,
    ).toBe("0.0.0.0");
  });
});
