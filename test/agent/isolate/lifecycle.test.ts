import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, readFileSync, readlinkSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import { type IsolateEvent, WorkerdPool } from "../../../agent/isolate/index.ts";
import { alive, send } from "./support.ts";

let pool: WorkerdPool | undefined;

afterEach(async () => {
  await pool?.stop();
  pool = undefined;
});

/** workerd processes running the config in `dir`, from the process table. */
function workerdProcessesUsing(dir: string): number[] {
  const out = execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" });
  return out
    .split("\n")
    .filter((line) => line.includes("workerd") && line.includes(join(dir, "workerd.capnp")))
    .map((line) => Number.parseInt(line.trim(), 10));
}

const numbered = (i: number) =>
  `export default { async fetch() { await new Promise((r) => setTimeout(r, ${i % 2 === 0 ? 20 : 0})); return new Response("w${i}"); } };`;

describe("WorkerdPool lifecycle", () => {
  it("recycles a process after maxLoaderEntries and keeps answering on the same port", async () => {
    pool = new WorkerdPool({
      processes: 1,
      maxLoaderEntries: 3,
      recycleHandoverMs: 500,
      watchdog: { stallMs: 3_000 },
    });
    const recycles: IsolateEvent[] = [];
    pool.on("recycle", (e) => recycles.push(e));
    await pool.start();
    const keys = Array.from({ length: 10 }, (_, i) => `default/many-${i}`);
    for (const [i, key] of keys.entries()) await pool.register(key, { code: numbered(i) });
    const { port, pid: firstPid } = pool.stats()[0]!;

    // Requests overlap the hand-over: each revision is asked twice, concurrently.
    for (const [i, key] of keys.entries()) {
      const answers = await Promise.all([
        send(pool, key, { retryClosed: true }),
        send(pool, key, { retryClosed: true }),
      ]);
      for (const answer of answers) {
        expect(answer.status).toBe(200);
        expect(answer.body).toBe(`w${i}`);
      }
      // Every third revision fills the process. Its replacement takes a while
      // to start (longer on a busy machine), and until the old one has drained
      // and exited a kept-alive connection can still load a revision there;
      // waiting for both makes the count exact.
      if ((i + 1) % 3 === 0) {
        await expect.poll(() => recycles.length, { timeout: 10_000 }).toBe((i + 1) / 3);
        const drained = recycles.at(-1)!.pid!;
        await expect.poll(() => alive(drained), { timeout: 10_000 }).toBe(false);
      }
    }

    expect(recycles.length).toBe(3);
    expect(recycles[0]?.pid).toBe(firstPid);
    expect(recycles[0]?.reason).toMatch(/loaded revisions \(limit 3\)/);
    const now = pool.stats()[0]!;
    expect(now.port).toBe(port);
    expect(now.pid).not.toBe(firstPid);
    expect(now.loaderEntries).toBeLessThanOrEqual(3);
    // Revisions loaded before the recycle load again in the fresh process.
    expect((await send(pool, keys[0]!, { retryClosed: true })).body).toBe("w0");
    // Drained processes exit by themselves (waited for above).
    expect(alive(firstPid!)).toBe(false);
  });

  it("marks a recycled process's answers as draining for its hand-over, and never passes a worker's own mark", async () => {
    pool = new WorkerdPool({
      processes: 1,
      maxLoaderEntries: 2,
      recycleHandoverMs: 3_000,
      watchdog: { stallMs: 3_000 },
    });
    const recycled = new Promise<IsolateEvent>((resolve) => pool!.on("recycle", resolve));
    await pool.start();
    const forger = `export default { fetch() { return new Response("forged", { headers: { "x-skiff-draining": "600000" } }); } };`;
    await pool.register("default/forger-00001", { code: forger });
    const before = await send(pool, "default/forger-00001", { fresh: true });
    expect(before.body).toBe("forged");
    expect(before.headers["x-skiff-draining"]).toBeUndefined();

    // A kept-alive connection to the old process (opened before the recycle) sees the mark.
    const ep = pool.endpointFor("default/forger-00001");
    const old = new Client(`http://${ep.host}:${ep.port}`, { keepAliveTimeout: 10_000 });
    const ask = async () => {
      const res = await old.request({
        path: "/",
        method: "GET",
        headers: {
          [ep.header.name]: ep.header.value,
          "x-skiff-gateway-auth": pool!.gatewaySecret!,
        },
      });
      await res.body.dump();
      return res.headers["x-skiff-draining"];
    };
    try {
      expect(await ask()).toBeUndefined();
      await pool.register("default/filler-00001", { code: numbered(1) });
      await pool.load("default/filler-00001");
      const event = await recycled;
      const left = Number(await ask());
      expect(left).toBeGreaterThan(0);
      expect(left).toBeLessThanOrEqual(3_000);
      // The old process serves through its hand-over, then drains and exits.
      expect(alive(event.pid!)).toBe(true);
      await expect.poll(() => alive(event.pid!), { timeout: 15_000 }).toBe(false);
    } finally {
      await old.destroy();
    }
  });

  it("lets an in-flight request of a recycled process finish", async () => {
    pool = new WorkerdPool({ processes: 1, maxLoaderEntries: 2, watchdog: { stallMs: 3_000 } });
    await pool.start();
    await pool.register("default/slow-00001", {
      code: `export default { async fetch() { await new Promise((r) => setTimeout(r, 3000)); return new Response("slow done"); } };`,
    });
    await pool.register("default/quick-00001", { code: numbered(1) });
    const recycled = new Promise<IsolateEvent>((resolve) => pool!.on("recycle", resolve));
    const slow = send(pool, "default/slow-00001");
    // The second loaded revision reaches the bound while the slow request runs.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await send(pool, "default/quick-00001", { fresh: true })).body).toBe("w1");
    const event = await recycled;
    expect(event.revisions).toContain("default/slow-00001");
    const answer = await slow;
    expect(answer.status).toBe(200);
    expect(answer.body).toBe("slow done");
  });

  it("lets in-flight requests finish when the pool stops (SIGTERM, then SIGKILL after stopGraceMs)", async () => {
    pool = new WorkerdPool({ processes: 1, stopGraceMs: 5_000, watchdog: { stallMs: 3_000 } });
    await pool.start();
    await pool.register("default/finishing-00001", {
      code: `export default { async fetch() { await new Promise((r) => setTimeout(r, 500)); return new Response("finished"); } };`,
    });
    await pool.load("default/finishing-00001");
    const inFlight = send(pool, "default/finishing-00001");
    await new Promise((resolve) => setTimeout(resolve, 150));
    const stopped = pool.stop();
    const answer = await inFlight;
    await stopped;
    expect(answer.status).toBe(200);
    expect(answer.body).toBe("finished");
    expect(pool.pids()).toEqual([]);
  });

  it("serves from a state dir inside a private folder the namespaces' uids cannot enter", async () => {
    // `skiff up` keeps its state under ~/.local/state (a 0700 home for root) or a mkdtemp.
    const privateParent = await mkdtemp(join(tmpdir(), "skiff-isolate-private-"));
    const stateDir = join(privateParent, "isolate");
    try {
      pool = new WorkerdPool({ processes: 1, stateDir, watchdog: { stallMs: 3_000 } });
      await pool.start();
      expect(pool.sandbox.uids).toBe(process.getuid?.() === 0);
      await pool.register("default/private-00001", { code: numbered(1) });
      expect((await send(pool, "default/private-00001")).body).toBe("w1");
      // workerd runs its config from a temp dir it can reach, gone after stop().
      const [pid] = pool.pids();
      const runDir = readlinkSync(`/proc/${pid}/cwd`);
      expect(runDir.startsWith(privateParent)).toBe(false);
      await pool.stop();
      expect(existsSync(runDir)).toBe(false);
    } finally {
      await rm(privateParent, { recursive: true, force: true });
    }
  });

  it("leaves no workerd process and no state behind after stop()", async () => {
    const stateDir = await mkdtemp(join(tmpdir(), "skiff-isolate-test-"));
    try {
      pool = new WorkerdPool({ processes: 2, stateDir, watchdog: { stallMs: 3_000 } });
      await pool.start();
      await pool.register("default/bye-00001", { code: numbered(1) });
      const cgroup = pool.cgroupOf("default");
      expect((await send(pool, "default/bye-00001")).status).toBe(200);
      const pids = pool.pids();
      expect(pids).toHaveLength(2);
      expect(workerdProcessesUsing(stateDir).sort()).toEqual([...pids].sort());

      await pool.stop();
      for (const pid of pids) expect(alive(pid)).toBe(false);
      expect(workerdProcessesUsing(stateDir)).toEqual([]);
      expect(pool.pids()).toEqual([]);
      expect(await readdir(stateDir)).toEqual([]);
      // Its namespace's cgroup is gone as well.
      for (const dir of Object.values(cgroup?.dirs ?? {})) expect(existsSync(dir)).toBe(false);
      // The port is closed too: nothing accepts there any more.
      await expect(send(pool, "default/bye-00001", { fresh: true })).rejects.toThrow();
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it("kills workerd processes a previous agent left running in its state dir", async () => {
    const stateDir = await mkdtemp(join(tmpdir(), "skiff-isolate-test-"));
    const poolModule = new URL("../../../agent/isolate/index.ts", import.meta.url).href;
    // A real agent process, frozen (SIGSTOP: hung, as a stuck agent that
    // systemd replaces) once its pool runs: its workerd processes live on. (A
    // SIGKILLed agent takes them with it: parent-death.test.ts.)
    const agent = spawn(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `const { WorkerdPool } = await import(${JSON.stringify(poolModule)});
         const pool = new WorkerdPool({ processes: 1, stateDir: ${JSON.stringify(stateDir)} });
         await pool.start();
         await pool.register("default/orphan-00001", { code: "export default { fetch() { return new Response('o'); } };" });
         console.log(JSON.stringify(pool.pids()));`,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let orphans: number[] = [];
    try {
      const [line] = (await once(agent.stdout!, "data")) as [Buffer];
      orphans = JSON.parse(line.toString());
      const stale = JSON.parse(readFileSync(join(stateDir, "workerd.pids"), "utf8")) as {
        cgroups: string[];
      };
      agent.kill("SIGSTOP");
      expect(orphans).toHaveLength(1);
      expect(alive(orphans[0]!)).toBe(true);

      pool = new WorkerdPool({ processes: 1, stateDir, watchdog: { stallMs: 3_000 } });
      await pool.start();
      await expect.poll(() => alive(orphans[0]!), { timeout: 5_000 }).toBe(false);
      expect(workerdProcessesUsing(stateDir)).toEqual(pool.pids());
      // Its namespace cgroups are removed too (when the host gave it any).
      for (const dir of stale.cgroups) expect(existsSync(dir)).toBe(false);
    } finally {
      agent.kill("SIGKILL");
      for (const pid of orphans) if (alive(pid)) process.kill(pid, "SIGKILL");
      await pool?.stop();
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it("fails with a clear message when the sandbox is required but the host cannot give it", async () => {
    pool = new WorkerdPool({
      processes: 1,
      sandbox: { mode: "required", cgroupRoot: "/nonexistent/cgroup" },
    });
    await expect(pool.start()).rejects.toThrow(
      /isolate sandbox is required but no usable cgroup memory, cpu and pids controllers at \/nonexistent\/cgroup/,
    );
    expect(pool.pids()).toEqual([]);
  });

  it("fails to register with a clear message when the workerd binary cannot run", async () => {
    pool = new WorkerdPool({ processes: 1, workerdPath: "/nonexistent/workerd" });
    await pool.start();
    await expect(pool.register("default/nobin-00001", { code: numbered(1) })).rejects.toThrow(
      /cannot run workerd at \/nonexistent\/workerd/,
    );
    expect(pool.pids()).toEqual([]);
  });

  it("stops a namespace's processes once its last revision is gone, and starts them again for a new one", async () => {
    pool = new WorkerdPool({ processes: 1, namespaceIdleMs: 0, watchdog: { stallMs: 3_000 } });
    await pool.start();
    await pool.register("idle/one-00001", { code: numbered(1) });
    const [pid] = pool.pids();
    const cgroup = pool.cgroupOf("idle");
    pool.unregister("idle/one-00001");
    await expect.poll(() => alive(pid!), { timeout: 10_000 }).toBe(false);
    await expect.poll(() => pool!.stats().length, { timeout: 10_000 }).toBe(0);
    for (const dir of Object.values(cgroup?.dirs ?? {})) {
      await expect.poll(() => existsSync(dir), { timeout: 5_000 }).toBe(false);
    }
    await pool.register("idle/two-00001", { code: numbered(2) });
    expect((await send(pool, "idle/two-00001")).body).toBe("w2");
  });

  it("refuses options that would break the runtime, naming the field", () => {
    expect(() => new WorkerdPool({ processes: 0 })).toThrow(/processes: must be at least 1/);
    expect(() => new WorkerdPool({ host: "0.0.0.0" })).toThrow(/host: .*not a wildcard/);
    expect(() => new WorkerdPool({ host: "localhost" })).toThrow(/host: must be an IP address/);
  });
});
