/**
 * Network sandboxes: containers started ahead of need that hold a network
 * namespace on the cluster's bridge with the default containerPort (8080)
 * published on the data address. A cold start joins one (NetworkMode
 * `container:<sandbox>`) instead of Docker setting up a namespace, a veth,
 * the NAT rules and a docker-proxy while the request waits: `docker start`
 * ~600 -> ~200 ms here, 10 at once 4.1 -> 1.6 s (BENCHMARKS.md).
 *
 * A sandbox serves one instance and goes with it (removed with the instance's
 * container, owned.ts): never reused, so no tenant ever inherits a namespace
 * another one used. Its process is a 129-byte static `pause()` loop (no
 * registry, no base image: the image is imported from a tar made here), run
 * as nobody with no capabilities on a read-only root.
 *
 * The pool keeps `count` ready, refilled one at a time and only while no
 * instance start waits at the start gate (a refill never slows a burst). A
 * revision declaring another containerPort, or a host that is not x86-64,
 * starts as before. A bound sandbox outlives a restart of the agent with its
 * instance (adopt() binds them again); ready ones are removed when the
 * runtime closes, and any left unbound (a crash) by the next adopt().
 */
import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import type Docker from "dockerode";
import { pack } from "tar-stream";
import type { RuntimeContext } from "./context.ts";
import { dockerMessage } from "./docker-errors.ts";
import { DEFAULT_CONTAINER_PORT } from "./spec.ts";

export interface Sandbox {
  containerId: string;
  /** The host port it publishes for the default containerPort. */
  port: number;
}

/** After a failed refill, none is tried for this long (the next start still works without). */
const REFILL_BACKOFF_MS = 30_000;
const SANDBOX_PORT = `${DEFAULT_CONTAINER_PORT}/tcp`;

/**
 * A static x86-64 ELF executable: `for (;;) pause();` (mov eax, 34; syscall;
 * jmp back). One loadable segment holding the headers and the code.
 */
export function pauseElf(): Buffer {
  const code = Buffer.from([0xb8, 0x22, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7]);
  const base = 0x400000n;
  const headers = 64 + 56;
  const size = BigInt(headers + code.length);
  const elf = Buffer.alloc(headers + code.length);
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]).copy(elf, 0); // ELF64, little-endian, SysV
  elf.writeUInt16LE(2, 16); // ET_EXEC
  elf.writeUInt16LE(0x3e, 18); // x86-64
  elf.writeUInt32LE(1, 20);
  elf.writeBigUInt64LE(base + BigInt(headers), 24); // entry: the code after the headers
  elf.writeBigUInt64LE(64n, 32); // program headers right after this one
  elf.writeUInt16LE(64, 52);
  elf.writeUInt16LE(56, 54);
  elf.writeUInt16LE(1, 56);
  elf.writeUInt32LE(1, 64); // PT_LOAD
  elf.writeUInt32LE(5, 68); // R+X
  elf.writeBigUInt64LE(0n, 72);
  elf.writeBigUInt64LE(base, 80);
  elf.writeBigUInt64LE(base, 88);
  elf.writeBigUInt64LE(size, 96);
  elf.writeBigUInt64LE(size, 104);
  elf.writeBigUInt64LE(0x1000n, 112);
  code.copy(elf, headers);
  return elf;
}

export class SandboxPool {
  readonly #ctx: RuntimeContext;
  readonly #count: number;
  readonly #ready: Sandbox[] = [];
  /** The sandbox of each instance container that runs in one, by the instance's container id. */
  readonly #byInstance = new Map<string, Sandbox>();
  /** The refill in progress, if any. */
  #filling: Promise<void> | undefined;
  #pausedUntil = 0;
  #image: Promise<string> | undefined;
  #closed = false;

  constructor(ctx: RuntimeContext) {
    this.#ctx = ctx;
    this.#count = process.arch === "x64" ? ctx.options.sandboxes.count : 0;
  }

  /** Ready sandboxes (not yet given to an instance). */
  get ready(): number {
    return this.#ready.length;
  }

  /** A ready sandbox for a container serving on `containerPort`, or undefined (start without one). */
  take(containerPort: number): Sandbox | undefined {
    if (containerPort !== DEFAULT_CONTAINER_PORT) return undefined;
    return this.#ready.shift();
  }

  /** The instance container `containerId` runs in `sandbox`: they go together. */
  bind(containerId: string, sandbox: Sandbox): void {
    this.#byInstance.set(containerId, sandbox);
  }

  /** The sandbox an instance container runs in, if any. */
  of(containerId: string): Sandbox | undefined {
    return this.#byInstance.get(containerId);
  }

  /** A sandbox taken but never used (its instance's create failed): removed, not given out again. */
  async discard(sandbox: Sandbox): Promise<void> {
    await this.#remove(sandbox);
  }

  /** An instance container was removed: so is its sandbox. */
  async released(containerId: string): Promise<void> {
    const sandbox = this.#byInstance.get(containerId);
    if (!sandbox) return;
    this.#byInstance.delete(containerId);
    await this.#remove(sandbox);
  }

  /**
   * A container of ours died. A ready sandbox leaves the pool; one whose
   * instance still runs took the instance's published port with it, so the
   * instance is killed (its exit is reported and the agent starts another; a
   * paused standby is dropped).
   */
  async onDie(containerId: string): Promise<boolean> {
    const i = this.#ready.findIndex((s) => s.containerId === containerId);
    if (i >= 0) {
      const [sandbox] = this.#ready.splice(i, 1);
      if (sandbox) await this.#remove(sandbox);
      this.fill();
      return true;
    }
    for (const [instance, sandbox] of this.#byInstance) {
      if (sandbox.containerId !== containerId) continue;
      // (A paused standby is killed too: its die drops it, exits.ts.)
      await this.#kill(instance);
      return true;
    }
    return false;
  }

  /**
   * After an agent restart: sandboxes whose instance container still exists
   * stay bound to it; the rest go, never handed out (an unbound one may have
   * served an instance removed while no agent watched). An
   * instance whose sandbox is gone has lost its port: it is killed (adoption
   * reports its exit).
   */
  async adopt(instances: Docker.ContainerInfo[]): Promise<void> {
    const { owned, ports } = this.#ctx;
    const keys = owned.keys;
    const sandboxes = await owned.sandboxes();
    const running = new Set(sandboxes.filter((c) => c.State === "running").map((c) => c.Id));
    const bound = new Map<string, string>();
    for (const c of instances) {
      const sandbox = c.Labels[keys.sandbox];
      if (!sandbox) continue;
      bound.set(sandbox, c.Id);
      if (!running.has(sandbox) && (c.State === "running" || c.State === "paused")) {
        await this.#kill(c.Id);
      }
    }
    for (const c of sandboxes) {
      const port = Number(c.Labels[keys.port]);
      const instance = bound.get(c.Id);
      if (!Number.isInteger(port)) {
        await owned.remove(c.Id);
        continue;
      }
      ports.reserve(port);
      const sandbox = { containerId: c.Id, port };
      if (instance) this.#byInstance.set(instance, sandbox);
      else await this.#remove(sandbox);
    }
  }

  /** Start refilling the pool in the background (no-op while full, filling or a start is queued). */
  fill(): void {
    if (this.#filling || this.#closed || this.#ready.length >= this.#count) return;
    if (Date.now() < this.#pausedUntil || this.#gateBusy()) return;
    this.#filling = this.#refill().finally(() => {
      this.#filling = undefined;
    });
  }

  /**
   * No more refills (one in progress removes what it made), and the ready
   * sandboxes removed (the runtime closes); bound ones go with their instances.
   */
  async removeReady(): Promise<void> {
    this.#closed = true;
    await this.#filling;
    const ready = this.#ready.splice(0);
    await Promise.all(ready.map((s) => this.#remove(s)));
  }

  #gateBusy(): boolean {
    const gate = this.#ctx.startGate;
    return gate.activeCount + gate.pendingCount > 0;
  }

  async #refill(): Promise<void> {
    while (!this.#closed && this.#ready.length < this.#count && !this.#gateBusy()) {
      try {
        const sandbox = await this.#start();
        if (this.#closed) await this.#remove(sandbox);
        else this.#ready.push(sandbox);
      } catch (err) {
        this.#pausedUntil = Date.now() + REFILL_BACKOFF_MS;
        this.#ctx.emitter.emit(
          "warning",
          new Error(
            `starting a network sandbox failed (cold starts go without one; retried in ${REFILL_BACKOFF_MS / 1000} s): ${dockerMessage(err)}`,
          ),
        );
        return;
      }
    }
  }

  async #start(): Promise<Sandbox> {
    const ctx = this.#ctx;
    const o = ctx.options;
    const keys = ctx.owned.keys;
    const [image, network] = await Promise.all([this.#imageTag(), ctx.network.ensure()]);
    const port = await ctx.ports.allocate();
    let containerId: string | undefined;
    try {
      const created = await ctx.docker.createContainer({
        name: `${ctx.owned.containerName("")}_sandbox-${randomBytes(6).toString("hex")}`,
        Image: image,
        Entrypoint: ["/pause"],
        User: "65534:65534",
        ExposedPorts: { [SANDBOX_PORT]: {} },
        Labels: {
          [keys.managed]: "true",
          [keys.cluster]: o.clusterId,
          [keys.owner]: o.owner,
          [keys.role]: "sandbox",
          [keys.address]: o.dataAddress,
          [keys.port]: String(port),
        },
        HostConfig: {
          NetworkMode: network,
          PortBindings: { [SANDBOX_PORT]: [{ HostIp: o.dataAddress, HostPort: String(port) }] },
          ReadonlyRootfs: true,
          CapDrop: ["ALL"],
          SecurityOpt: ["no-new-privileges:true"],
          PidsLimit: 4,
          Memory: 8 * 1024 * 1024,
          RestartPolicy: { Name: "no" },
          LogConfig: { Type: "none", Config: {} },
        },
      });
      containerId = created.id;
      await created.start();
      return { containerId, port };
    } catch (err) {
      if (containerId) await ctx.owned.remove(containerId);
      ctx.ports.release(port);
      throw err;
    }
  }

  /** An instance that lost its sandbox: killed (its die is reported; gone already is fine). */
  async #kill(instance: string): Promise<void> {
    await this.#ctx.docker
      .getContainer(instance)
      .kill()
      .catch(() => {});
  }

  async #remove(sandbox: Sandbox): Promise<void> {
    await this.#ctx.owned.remove(sandbox.containerId);
    this.#ctx.ports.release(sandbox.port);
  }

  /** The pause image, imported once from a tar holding the ELF (tag: its hash). */
  #imageTag(): Promise<string> {
    this.#image ??= (async () => {
      const docker = this.#ctx.docker;
      const elf = pauseElf();
      const tag = `skiff-sandbox:${createHash("sha256").update(elf).digest("hex").slice(0, 12)}`;
      const found = await docker
        .getImage(tag)
        .inspect()
        .then(
          () => true,
          () => false,
        );
      if (found) return tag;
      const tar = pack();
      tar.entry({ name: "pause", mode: 0o755 }, elf);
      tar.finalize();
      const chunks: Buffer[] = [];
      for await (const chunk of tar) chunks.push(chunk as Buffer);
      const [repo, version] = tag.split(":") as [string, string];
      const stream = (await docker.importImage(Readable.from([Buffer.concat(chunks)]), {
        repo,
        tag: version,
      })) as unknown as NodeJS.ReadableStream;
      await new Promise<void>((resolve, reject) =>
        docker.modem.followProgress(stream, (err: Error | null, out: { error?: string }[]) => {
          const failed = out?.find((m) => m.error)?.error;
          if (err || failed) reject(err ?? new Error(failed));
          else resolve();
        }),
      );
      return tag;
    })();
    this.#image.catch(() => {
      this.#image = undefined;
    });
    return this.#image;
  }
}
