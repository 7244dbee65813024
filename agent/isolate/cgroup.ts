/**
 * Linux control groups for the workerd processes of one namespace: CPU,
 * memory and pids limits that the kernel enforces, whatever the code inside
 * does. One small interface over both layouts:
 * - cgroup v2 (a stock Debian 12 host): one unified tree at /sys/fs/cgroup,
 *   controllers enabled top-down through cgroup.subtree_control;
 * - cgroup v1 (older hosts, some CI machines): one tree per controller at
 *   /sys/fs/cgroup/{memory,cpu,pids}.
 * Groups live under `<root>/<parent>/<pool>/<name>` so that several pools (or
 * installs) on one host never touch each other's groups.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { UnavailableError } from "../../src/errors.ts";

export interface CgroupLimits {
  /** Hard memory limit of the group (all its processes together); swap is not allowed past it. */
  memoryBytes: number;
  /** CPU time per wall second, in thousandths of a core (1000 = one core). */
  cpuMillis: number;
  /** Most processes plus threads at once. */
  pids: number;
}

export interface CgroupLayout {
  version: 1 | 2;
  /** v2: the unified mount. v1: controller name -> its mount. */
  mounts: Record<string, string>;
}

/** What the limits read back as (tests and status). */
export interface CgroupReadback {
  memoryBytes: number | undefined;
  cpuQuotaUs: number | undefined;
  cpuPeriodUs: number | undefined;
  pids: number | undefined;
}

const CONTROLLERS = ["memory", "cpu", "pids"] as const;
const PERIOD_US = 100_000;

/** Which cgroup layout this host has and whether we may write it; undefined when unusable. */
export function detectCgroups(root = "/sys/fs/cgroup"): CgroupLayout | undefined {
  if (existsSync(join(root, "cgroup.controllers"))) {
    const available = readFileSync(join(root, "cgroup.controllers"), "utf8").split(/\s+/);
    if (!CONTROLLERS.every((c) => available.includes(c))) return undefined;
    return { version: 2, mounts: { unified: root } };
  }
  const mounts: Record<string, string> = {};
  for (const c of CONTROLLERS) {
    const dir = join(root, c);
    if (!existsSync(join(dir, "cgroup.procs"))) return undefined;
    mounts[c] = dir;
  }
  return { version: 1, mounts };
}

function write(file: string, value: string): void {
  writeFileSync(file, value);
}

function readNumber(file: string): number | undefined {
  try {
    const text = readFileSync(file, "utf8").trim();
    if (text === "max") return Number.POSITIVE_INFINITY;
    const n = Number(text.split(/\s+/)[0]);
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

/** The `oom_kill N` counter of a memory.events (v2) or memory.oom_control (v1) file. */
function oomKills(file: string): number {
  try {
    const match = /^oom_kill (\d+)$/m.exec(readFileSync(file, "utf8"));
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

export class Cgroup {
  readonly layout: CgroupLayout;
  /** One directory per hierarchy (one for v2, memory/cpu/pids for v1). */
  readonly dirs: Record<string, string>;
  readonly limits: CgroupLimits;

  constructor(layout: CgroupLayout, path: string[], limits: CgroupLimits) {
    this.layout = layout;
    this.limits = limits;
    this.dirs = {};
    for (const [name, mount] of Object.entries(layout.mounts)) {
      this.dirs[name] = join(mount, ...path);
    }
  }

  /** Create the group and write its limits. Throws UnavailableError when the kernel refuses. */
  create(): void {
    try {
      if (this.layout.version === 2) this.#createV2();
      else this.#createV1();
    } catch (err) {
      this.remove();
      throw new UnavailableError(
        `cannot set up the cgroup ${Object.values(this.dirs).join(", ")}: ${(err as Error).message}`,
      );
    }
  }

  #createV2(): void {
    const dir = this.dirs.unified as string;
    const mount = this.layout.mounts.unified as string;
    // Enable the controllers on every level from the mount down to our parent.
    const parts = dir.slice(mount.length + 1).split("/");
    let at = mount;
    for (const part of parts) {
      const control = join(at, "cgroup.subtree_control");
      const enabled = readFileSync(control, "utf8").split(/\s+/);
      const missing = CONTROLLERS.filter((c) => !enabled.includes(c));
      if (missing.length > 0) write(control, missing.map((c) => `+${c}`).join(" "));
      at = join(at, part);
      mkdirSync(at, { recursive: true });
    }
    const { memoryBytes, cpuMillis, pids } = this.limits;
    write(join(dir, "memory.max"), String(memoryBytes));
    if (existsSync(join(dir, "memory.swap.max"))) write(join(dir, "memory.swap.max"), "0");
    write(join(dir, "cpu.max"), `${Math.round((cpuMillis * PERIOD_US) / 1000)} ${PERIOD_US}`);
    write(join(dir, "pids.max"), String(pids));
  }

  #createV1(): void {
    for (const dir of Object.values(this.dirs)) mkdirSync(dir, { recursive: true });
    const { memoryBytes, cpuMillis, pids } = this.limits;
    const memory = this.dirs.memory as string;
    write(join(memory, "memory.limit_in_bytes"), String(memoryBytes));
    // Memory plus swap at the same limit: swapping does not get past it.
    const memsw = join(memory, "memory.memsw.limit_in_bytes");
    if (existsSync(memsw)) write(memsw, String(memoryBytes));
    const cpu = this.dirs.cpu as string;
    write(join(cpu, "cpu.cfs_period_us"), String(PERIOD_US));
    write(join(cpu, "cpu.cfs_quota_us"), String(Math.round((cpuMillis * PERIOD_US) / 1000)));
    write(join(this.dirs.pids as string, "pids.max"), String(pids));
  }

  /** Move a process (all its threads) into the group. */
  join(pid: number): void {
    for (const dir of Object.values(this.dirs)) write(join(dir, "cgroup.procs"), String(pid));
  }

  /** Processes the kernel OOM-killed in this group so far. */
  oomKills(): number {
    if (this.layout.version === 2)
      return oomKills(join(this.dirs.unified as string, "memory.events"));
    return oomKills(join(this.dirs.memory as string, "memory.oom_control"));
  }

  /** Memory the group uses now (bytes). */
  memoryUsage(): number | undefined {
    if (this.layout.version === 2)
      return readNumber(join(this.dirs.unified as string, "memory.current"));
    return readNumber(join(this.dirs.memory as string, "memory.usage_in_bytes"));
  }

  readback(): CgroupReadback {
    if (this.layout.version === 2) {
      const dir = this.dirs.unified as string;
      let quota: number | undefined;
      let period: number | undefined;
      try {
        const [q, p] = readFileSync(join(dir, "cpu.max"), "utf8").trim().split(/\s+/);
        quota = q === "max" ? Number.POSITIVE_INFINITY : Number(q);
        period = Number(p);
      } catch {}
      return {
        memoryBytes: readNumber(join(dir, "memory.max")),
        cpuQuotaUs: quota,
        cpuPeriodUs: period,
        pids: readNumber(join(dir, "pids.max")),
      };
    }
    return {
      memoryBytes: readNumber(join(this.dirs.memory as string, "memory.limit_in_bytes")),
      cpuQuotaUs: readNumber(join(this.dirs.cpu as string, "cpu.cfs_quota_us")),
      cpuPeriodUs: readNumber(join(this.dirs.cpu as string, "cpu.cfs_period_us")),
      pids: readNumber(join(this.dirs.pids as string, "pids.max")),
    };
  }

  /** Remove the group (its processes must have exited). Best effort, idempotent. */
  remove(): void {
    for (const dir of Object.values(this.dirs)) {
      try {
        rmdirSync(dir);
      } catch {
        // Already gone, or a process is still in it (it will be reaped by the kernel's rmdir later).
      }
    }
  }
}

/** Remove the (now empty) directory of a pool, `<mount>/<path>`; the shared parent stays for other pools. */
export function removeEmptyDir(layout: CgroupLayout, path: string[]): void {
  for (const mount of Object.values(layout.mounts)) {
    try {
      rmdirSync(join(mount, ...path));
    } catch {
      // Not empty (a group is still being removed) or gone.
    }
  }
}
