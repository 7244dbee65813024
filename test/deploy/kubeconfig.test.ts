/** `{state}/kubeconfig`: the token kept across starts that do not know it, 0600. */
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { writeKubeconfig } from "../../deploy/kubeconfig.ts";

describe("writeKubeconfig", () => {
  it("keeps the token it held when a later start does not know it; says when it has none", () => {
    const dir = mkdtempSync(join(tmpdir(), "skiff-kc-"));
    const path = join(dir, "kubeconfig");
    try {
      expect(writeKubeconfig(path, { server: "https://127.0.0.1:1" })).toBe(false);
      expect(
        writeKubeconfig(path, { server: "https://127.0.0.1:2", ca: "PEM", token: "skf_a" }),
      ).toBe(true);
      expect(writeKubeconfig(path, { server: "https://127.0.0.1:3", ca: "PEM" })).toBe(true);
      const doc = parse(readFileSync(path, "utf8"));
      expect(doc.users[0].user.token).toBe("skf_a");
      expect(doc.clusters[0].cluster).toEqual({
        server: "https://127.0.0.1:3",
        "certificate-authority-data": Buffer.from("PEM").toString("base64"),
      });
      expect(doc["current-context"]).toBe("skiff");
      expect(statSync(path).mode & 0o777).toBe(0o600);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
