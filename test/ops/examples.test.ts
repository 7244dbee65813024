/**
 * The shipped fleet files say only what Skiff accepts: every key of the
 * example configs (deploy/examples/) is one the configuration knows (zod would
 * drop a misspelt key silently, so a typo would be a setting that does
 * nothing), and every flag a systemd unit passes is one its command takes.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { loadConfig } from "../../src/config.ts";
import { runCli } from "../support/cli.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const EXAMPLES = join(ROOT, "deploy", "examples");
const UNITS = join(ROOT, "deploy", "systemd");

/** Dotted paths of `given` that `loaded` does not have (keys the schema dropped). */
function unknownKeys(given: unknown, loaded: unknown, at = ""): string[] {
  if (typeof given !== "object" || given === null || Array.isArray(given)) return [];
  const out: string[] = [];
  for (const [key, value] of Object.entries(given)) {
    const path = at ? `${at}.${key}` : key;
    const next = (loaded as Record<string, unknown> | undefined)?.[key];
    if (next === undefined) out.push(path);
    else out.push(...unknownKeys(value, next, path));
  }
  return out;
}

describe("deploy/examples", () => {
  const files = readdirSync(EXAMPLES).filter((f) => f.endsWith(".yaml"));

  it("has a config for every role", () => {
    expect(files.sort()).toEqual(["agent.yaml", "api.yaml", "gateway.yaml", "scaler.yaml"]);
  });

  for (const file of files) {
    it(`${file} loads and every key in it is a configuration key`, () => {
      const path = join(EXAMPLES, file);
      const config = loadConfig({ file: path, env: {} });
      expect(unknownKeys(parseYaml(readFileSync(path, "utf8")), config)).toEqual([]);
    });
  }
});

describe("deploy/systemd", () => {
  const units = readdirSync(UNITS).filter((f) => f.endsWith(".service"));

  it("has a unit for api, gateway, scaler and agent", () => {
    expect(units.sort()).toEqual([
      "skiff-agent.service",
      "skiff-api.service",
      "skiff-gateway.service",
      "skiff-scaler.service",
    ]);
  });

  for (const unit of units) {
    it(`${unit} runs its command with flags the command takes, and its example config`, async () => {
      const text = readFileSync(join(UNITS, unit), "utf8").replace(/\\\n\s*/g, " ");
      const exec = text.match(/^ExecStart=\S+ \S+\/bin\/skiff\.js (\w+)(.*)$/m);
      expect(exec, unit).not.toBeNull();
      const [, command, rest] = exec!;
      expect(unit).toBe(`skiff-${command}.service`);
      expect(text).toContain(`SKIFF_CONFIG=/etc/skiff/${command}.yaml`);
      const help = await runCli([command!, "--help"]);
      expect(help.code, help.stderr).toBe(0);
      for (const flag of rest!.match(/--[a-z-]+/g) ?? []) {
        expect(help.stdout, `${unit}: ${flag}`).toContain(flag);
      }
    });
  }
});
