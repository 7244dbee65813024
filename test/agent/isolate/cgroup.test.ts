/**
 * The cgroup layer's files. The real v1 tree of this machine is exercised by
 * test/security/worker-isolation.test.ts (limits read back, an OOM kill);
 * cgroup v2 cannot be mounted here, so its layout is checked on a directory
 * shaped like /sys/fs/cgroup (the kernel side is not simulated: only which
 * files get which values).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Cgroup, detectCgroups } from "../../../agent/isolate/cgroup.ts";

let root = "";
afterEach(() => rmSync(root, { recursive: true, force: true }));

const limits = { memoryBytes: 256 * 2 ** 20, cpuMillis: 500, pids: 128 };

describe("cgroup layer", () => {
  it("on a v2 host enables memory, cpu and pids on every level down to the group and writes its limits", () => {
    root = mkdtempSync(join(tmpdir(), "skiff-cg2-"));
    writeFileSync(
      join(root, "cgroup.controllers"),
      "cpuset cpu io memory hugetlb pids rdma misc\n",
    );
    writeFileSync(join(root, "cgroup.subtree_control"), "cpu memory\n");
    // What the kernel creates in every new group.
    mkdirSync(join(root, "skiff", "pool1"), { recursive: true });
    for (const dir of ["skiff", "skiff/pool1"]) {
      writeFileSync(join(root, dir, "cgroup.subtree_control"), "");
    }
    const layout = detectCgroups(root);
    expect(layout?.version).toBe(2);
    const group = new Cgroup(layout!, ["skiff", "pool1", "ns-a"], limits);
    group.create();
    const dir = join(root, "skiff", "pool1", "ns-a");
    expect(readFileSync(join(root, "cgroup.subtree_control"), "utf8")).toBe("+pids");
    expect(readFileSync(join(root, "skiff", "cgroup.subtree_control"), "utf8")).toBe(
      "+memory +cpu +pids",
    );
    expect(readFileSync(join(dir, "memory.max"), "utf8")).toBe(String(256 * 2 ** 20));
    expect(readFileSync(join(dir, "cpu.max"), "utf8")).toBe("50000 100000");
    expect(readFileSync(join(dir, "pids.max"), "utf8")).toBe("128");
    expect(group.readback()).toEqual({
      memoryBytes: 256 * 2 ** 20,
      cpuQuotaUs: 50_000,
      cpuPeriodUs: 100_000,
      pids: 128,
    });
    writeFileSync(join(dir, "memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
    expect(group.oomKills()).toBe(1);
  });

  it("on a v1 host writes one group per controller", () => {
    root = mkdtempSync(join(tmpdir(), "skiff-cg1-"));
    for (const c of ["memory", "cpu", "pids"]) {
      mkdirSync(join(root, c));
      writeFileSync(join(root, c, "cgroup.procs"), "");
    }
    const layout = detectCgroups(root);
    expect(layout?.version).toBe(1);
    const group = new Cgroup(layout!, ["skiff", "pool1", "ns-a"], limits);
    group.create();
    expect(group.readback()).toEqual({
      memoryBytes: 256 * 2 ** 20,
      cpuQuotaUs: 50_000,
      cpuPeriodUs: 100_000,
      pids: 128,
    });
  });

  it("finds no usable layout when a controller is missing", () => {
    root = mkdtempSync(join(tmpdir(), "skiff-cg0-"));
    writeFileSync(join(root, "cgroup.controllers"), "cpu io\n");
    expect(detectCgroups(root)).toBeUndefined();
  });
});
