/** docs/configuration.md is generated from the schema; every setting is documented and reachable. */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { configReference } from "../../../src/config/docs.ts";
import { configFlags } from "../../../src/config/flags.ts";
import { CONFIG_COMMANDS } from "../../../src/config/meta.ts";
import { SETTINGS } from "../../../src/config.ts";

describe("configuration reference", () => {
  it("docs/configuration.md is what the schema generates", () => {
    const committed = readFileSync(
      new URL("../../../docs/configuration.md", import.meta.url),
      "utf8",
    );
    expect(
      committed,
      "docs/configuration.md is out of date with the schema in src/config/: run `npm run docs:config` and commit the result",
    ).toBe(configReference());
  });

  it("every setting has a description, and the environment variables are distinct", () => {
    expect(SETTINGS.filter((s) => !s.meta?.description).map((s) => s.key)).toEqual([]);
    const envs = SETTINGS.flatMap((s) => (s.env ? [s.env] : []));
    expect(new Set(envs).size).toBe(envs.length);
  });

  it.each(CONFIG_COMMANDS)("skiff %s has distinct flags", (command) => {
    const attrs = configFlags(command).map((f) => f.attribute);
    expect(new Set(attrs).size).toBe(attrs.length);
    expect(attrs).not.toContain("config");
  });
});
