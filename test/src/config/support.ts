/** Config files in a private temp folder and a command's flags parsed by commander, as the CLI does. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { afterAll } from "vitest";
import { addConfigFlags, flagLayer } from "../../../src/config/flags.ts";
import type { ServerCommand } from "../../../src/config/meta.ts";
import type { Layer } from "../../../src/config.ts";

export function configFiles(): (text: string) => string {
  const dir = mkdtempSync(join(tmpdir(), "skiff-config-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  return (text) => {
    const path = join(dir, `config-${++n}.yaml`);
    writeFileSync(path, text);
    return path;
  };
}

/** The flag layer of `skiff {command} ...argv`, parsed by commander with the generated flags. */
export function flags(command: ServerCommand, argv: string[]): Layer {
  const cmd = addConfigFlags(new Command(command), command).exitOverride();
  cmd.parse(argv, { from: "user" });
  return flagLayer(command, cmd.opts());
}
