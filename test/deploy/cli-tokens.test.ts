/**
 * `skiff token create|list|revoke` through the real CLI, with every token
 * passed by environment or file, never on the command line.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serviceBody, startTestApi, type TestApi } from "../support/api.ts";
import { runCli } from "../support/cli.ts";

let api: TestApi;
let dir: string;
let admin: Record<string, string>;
beforeAll(async () => {
  api = await startTestApi();
  dir = await mkdtemp(join(tmpdir(), "skiff-cli-tokens-"));
  admin = { SKIFF_API_URL: api.url, SKIFF_TOKEN: api.token };
  for (const ns of ["dev", "prod"]) {
    const r = await api.call("POST", api.ns("services", undefined, ns), serviceBody("web"));
    expect(r.status).toBe(201);
  }
});
afterAll(async () => {
  await api?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function skiff(env: Record<string, string>, ...args: string[]) {
  return runCli(args, { env });
}

describe("skiff token", () => {
  it("create prints the secret once; the token works from a file, only in its namespace", async () => {
    const made = await skiff(
      admin,
      "token",
      "create",
      "ci",
      "--namespaces",
      "dev",
      "--role",
      "edit",
    );
    expect(made.code, made.stderr).toBe(0);
    const secret = /Secret \(shown once[^)]*\): (\S+)/.exec(made.stdout)?.[1];
    expect(secret).toMatch(/^skf_/);
    const file = join(dir, "ci-token");
    await writeFile(file, `${secret}\n`, { mode: 0o600 });
    const env = { SKIFF_API_URL: api.url, SKIFF_TOKEN: "" };

    const mine = await skiff(env, "--token-file", file, "-n", "dev", "service", "list");
    expect(mine.code, mine.stderr).toBe(0);
    expect(mine.stdout).toMatch(/web/);
    const viaEnv = await skiff({ ...env, SKIFF_TOKEN_FILE: file }, "-n", "dev", "service", "list");
    expect(viaEnv.code, viaEnv.stderr).toBe(0);

    const theirs = await skiff(env, "--token-file", file, "-n", "prod", "service", "list");
    expect(theirs.code).toBe(1);
    expect(theirs.stderr).toMatch(
      /Error: services is forbidden: token "ci" \(role edit in namespace dev\) cannot list resource "services" .* namespace "prod"/,
    );
    const all = await skiff(env, "--token-file", file, "service", "list", "-A");
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout).toMatch(/dev/);
    expect(all.stdout).not.toMatch(/prod/);
  }, 120_000);

  it("list shows names, roles and namespaces but no secret; a non-admin token cannot list", async () => {
    const list = await skiff(admin, "token", "list");
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^NAME\s+ROLE\s+NAMESPACES\s+AGE/);
    expect(list.stdout).toMatch(/^ci\s+edit\s+dev\s+\d+s/m);
    expect(list.stdout).not.toMatch(/skf_/);
    const denied = await skiff(
      { SKIFF_API_URL: api.url, SKIFF_TOKEN: "", SKIFF_TOKEN_FILE: join(dir, "ci-token") },
      "token",
      "list",
    );
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/only the admin token/);
  }, 120_000);

  it("revoke stops the token at once; bad input gets a clear error", async () => {
    const revoked = await skiff(admin, "token", "revoke", "ci");
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toMatch(/token\/ci revoked/);
    const after = await skiff(
      { SKIFF_API_URL: api.url, SKIFF_TOKEN: "", SKIFF_TOKEN_FILE: join(dir, "ci-token") },
      "-n",
      "dev",
      "service",
      "list",
    );
    expect(after.code).toBe(1);
    expect(after.stderr).toMatch(/invalid bearer token \(unknown or revoked\)/);
    const bad = await skiff(
      admin,
      "token",
      "create",
      "x",
      "--namespaces",
      "Prod",
      "--role",
      "root",
    );
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/spec\.role: must be one of view, edit/);
    expect(bad.stderr).toMatch(/spec\.namespaces\[0\]/);
    const missing = await skiff(
      { SKIFF_API_URL: api.url, SKIFF_TOKEN: "" },
      "--token-file",
      join(dir, "nope"),
      "service",
      "list",
    );
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/cannot read the token file .*nope: ENOENT/);
  }, 120_000);
});
