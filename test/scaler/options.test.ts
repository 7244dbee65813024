/**
 * The scaler's settings: global autoscaler defaults from the config file and
 * SKIFF_AUTOSCALER_* env (validated by the model's scalingDefaultsSchema),
 * the `scaler` section, and the options `skiff scaler` / `skiff up` derive.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseScalerOptions, scalerOptionsFromConfig } from "../../scaler/options.ts";
import { loadConfig } from "../../src/config.ts";
import { isSkiffError } from "../../src/errors.ts";

const dir = mkdtempSync(join(tmpdir(), "skiff-scaler-options-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(text: string): string {
  const path = join(dir, `${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(path, text);
  return path;
}

describe("scaler configuration", () => {
  it("takes autoscaler defaults from the file, env over file, and parses durations", () => {
    const config = loadConfig({
      file: file(
        [
          "autoscaler:",
          "  stableWindow: 30s",
          "  scaleToZeroGracePeriod: 10s",
          "  targetConcurrency: 50",
          "scaler:",
          "  leaseMs: 2000",
          "  gc:",
          "    minNonActiveRevisions: 3",
          "    retainSinceCreateTime: 1h",
        ].join("\n"),
      ),
      env: { SKIFF_AUTOSCALER_STABLE_WINDOW: "6s", SKIFF_AUTOSCALER_ENABLE_SCALE_TO_ZERO: "false" },
    });
    expect(config.autoscaler.stableWindow).toBe(6_000);
    expect(config.autoscaler.scaleToZeroGracePeriod).toBe(10_000);
    expect(config.autoscaler.targetConcurrency).toBe(50);
    expect(config.autoscaler.enableScaleToZero).toBe(false);
    expect(config.autoscaler.tickInterval).toBe(2_000);
    expect(config.scaler).toMatchObject({ host: "127.0.0.1", port: 8092, leaseMs: 2_000 });
    expect(config.scaler.gc).toMatchObject({
      minNonActiveRevisions: 3,
      retainSinceCreateTime: 3_600_000,
    });

    const options = parseScalerOptions(scalerOptionsFromConfig(config));
    expect(options.autoscaler.stableWindow).toBe(6_000);
    expect(options.autoscaler.enableScaleToZero).toBe(false);
    expect(options.leaseMs).toBe(2_000);
    expect(options.gc.minNonActiveRevisions).toBe(3);
    expect(options.port).toBe(8092);
  });

  it("presumes agents alive for their heartbeat TTL after a leader change, unless agentGraceMs says otherwise", () => {
    const config = loadConfig({ env: { SKIFF_AGENT_HEARTBEAT_TTL_MS: "8000" } });
    expect(parseScalerOptions(scalerOptionsFromConfig(config)).agentGraceMs).toBe(8_000);
    const set = loadConfig({
      env: { SKIFF_AGENT_HEARTBEAT_TTL_MS: "8000", SKIFF_SCALER_AGENT_GRACE_MS: "2000" },
    });
    expect(parseScalerOptions(scalerOptionsFromConfig(set)).agentGraceMs).toBe(2_000);
    expect(parseScalerOptions({}).agentGraceMs).toBe(5_000);
  });

  it("takes its id from the configuration, else the hostname and a random suffix", () => {
    const config = loadConfig({ env: { SKIFF_SCALER_ID: "scaler-a" } });
    expect(parseScalerOptions(scalerOptionsFromConfig(config)).id).toBe("scaler-a");
    expect(parseScalerOptions({}).id).toMatch(/^[A-Za-z0-9._-]+-[0-9a-f]{6}$/);
  });

  it("refuses an out-of-range stable window with the field's path", () => {
    expect(() => loadConfig({ file: file("autoscaler:\n  stableWindow: 2s\n"), env: {} })).toThrow(
      /autoscaler\.stableWindow: must be between 6s and 1h/,
    );
  });

  it("reads counters every second, or every tick when ticks are faster", () => {
    expect(parseScalerOptions({}).scrapeIntervalMs).toBe(1_000);
    expect(parseScalerOptions({ autoscaler: { tickInterval: "500ms" } }).scrapeIntervalMs).toBe(
      500,
    );
  });

  it("refuses a scrape interval longer than the tick interval", () => {
    try {
      parseScalerOptions({ autoscaler: { tickInterval: "500ms" }, scrapeIntervalMs: 1_000 });
      expect.unreachable();
    } catch (err) {
      expect(isSkiffError(err)).toBe(true);
      expect((err as { causes: { field: string }[] }).causes[0]?.field).toBe("scrapeIntervalMs");
    }
  });
});
