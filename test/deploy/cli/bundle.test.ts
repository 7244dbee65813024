/**
 * The CLI bundle holds the client commands only: a static import of a server
 * module (or a heavy package) from a client path would slow every command.
 */
import { Command } from "commander";
import { describe, expect, it } from "vitest";
import { registerGatewayCommand } from "../../../deploy/cli/commands/gateway.ts";
import { registerServerCommands } from "../../../deploy/cli/commands/servers.ts";
import { commandWord, SERVER_COMMANDS } from "../../../deploy/cli/main.ts";
import { buildCli } from "../../../scripts/build-cli.ts";

describe("CLI bundle", () => {
  it("bundles the client commands, commander and yaml, and no server module", async () => {
    const built = await buildCli();
    expect(built.packages).toEqual(["commander", "yaml"]);
    expect(built.inputs).toContain("deploy/cli/commands/resources.ts");
    const server = built.inputs.filter((p) =>
      /^(agent|gateway|scaler|deploy\/api|src\/store|src\/control)\/|deploy\/up\.ts|commands\/(servers|gateway)\.ts/.test(
        p,
      ),
    );
    expect(server).toEqual([]);
    expect(built.bytes).toBeLessThan(1024 * 1024);
  });

  it("finds the command word past global options and their values", () => {
    expect(commandWord(["service", "list"])).toBe("service");
    expect(commandWord(["-n", "up", "service", "list"])).toBe("service");
    expect(commandWord(["--api-url", "http://x", "--token-file", "f", "up"])).toBe("up");
    expect(commandWord(["--api-url=http://x", "gateway"])).toBe("gateway");
    expect(commandWord(["help", "up"])).toBe("up");
    expect(commandWord(["--help"])).toBeUndefined();
    expect(commandWord([])).toBeUndefined();
  });

  it("knows every server command by name, so the lazy dispatch finds each one", () => {
    const program = new Command();
    registerServerCommands(program);
    registerGatewayCommand(program);
    const registered = program.commands.map((c) => c.name()).sort();
    expect(Object.keys(SERVER_COMMANDS).sort()).toEqual(registered);
  });
});
