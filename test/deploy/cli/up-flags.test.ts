/** `skiff up`'s flags as configuration: --host exposes the gateway only, the API has --api-host. */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { upOverrides } from "../../../deploy/cli/commands/servers.ts";
import { loadConfig } from "../../../src/config.ts";

const load = (flags: Parameters<typeof upOverrides>[0]) =>
  loadConfig({ env: {}, overrides: upOverrides(flags) });

describe("skiff up flags", () => {
  it("--host sets the gateway's address and leaves the API on loopback", () => {
    const config = load({ host: "0.0.0.0" });
    expect(config.gateway.host).toBe("0.0.0.0");
    expect(config.api.host).toBe("127.0.0.1");
  });

  it("--api-host exposes the API on purpose", () => {
    const config = load({ host: "0.0.0.0", apiHost: "10.0.0.5" });
    expect(config.api.host).toBe("10.0.0.5");
  });

  it("--token-file gives the admin token without putting it on the command line", () => {
    const dir = mkdtempSync(join(tmpdir(), "skiff-up-flags-"));
    writeFileSync(join(dir, "t"), "file-admin-token-0123456789\n");
    expect(load({ tokenFile: join(dir, "t") }).api.token).toBe("file-admin-token-0123456789");
  });
});
