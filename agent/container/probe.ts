/**
 * Readiness probes of an instance. An HTTP GET when the template's
 * readinessProbe asks for one (Kubernetes semantics: any status 200-399 is a
 * success), through the published port. Otherwise a TCP check that must not
 * be fooled by Docker's userland proxy: docker-proxy accepts a connection on
 * the published port even while nothing listens inside the container (it then
 * closes it), so a plain connect there says "ready" too early. Instead the
 * probe looks inside the container's own network namespace, at the kernel's
 * socket table (/proc/<pid>/net/tcp{,6}), for a socket listening on the
 * container port: the same fact a connect from inside would establish, with
 * no traffic. Where that table cannot be read (an agent without access to the
 * engine's /proc), it connects through the published port and counts a
 * connection the proxy closes again within `settleMs` as a failure.
 */
import { readFile } from "node:fs/promises";
import { request } from "node:http";
import { connect } from "node:net";
import type { Probe } from "../../src/model/types.ts";
import type { ExecRunner } from "./exec-probe.ts";

export type ProbeTarget =
  | {
      kind: "tcp";
      /** The published endpoint (the data address and host port). */
      host: string;
      port: number;
      /** The port the app listens on inside its network namespace. */
      containerPort: number;
      /** The container's main process on the host (its netns is read); absent: use the fallback. */
      pid?: number;
      /** Fallback only: a connection that stays open this long counts as accepted by the app. */
      settleMs: number;
    }
  | { kind: "http"; host: string; port: number; path: string; headers: Record<string, string> }
  | { kind: "exec"; command: string[]; run: ExecRunner };

/**
 * Where to probe. Probes speak of the container's port (Knative allows only
 * the serving port there); it is reached through the published host port.
 */
export function probeTarget(
  probe: Probe | undefined,
  endpoint: { host: string; port: number; containerPort: number; pid?: number; exec?: ExecRunner },
  settleMs: number,
): ProbeTarget {
  const { host, port } = endpoint;
  if (probe?.exec && endpoint.exec) {
    return { kind: "exec", command: probe.exec.command, run: endpoint.exec };
  }
  if (probe?.httpGet) {
    const headers: Record<string, string> = {};
    for (const h of probe.httpGet.httpHeaders ?? []) headers[h.name] = h.value;
    const path = probe.httpGet.path.startsWith("/") ? probe.httpGet.path : `/${probe.httpGet.path}`;
    return { kind: "http", host, port, path, headers };
  }
  return {
    kind: "tcp",
    host,
    port,
    containerPort: endpoint.containerPort,
    ...(endpoint.pid ? { pid: endpoint.pid } : {}),
    settleMs,
  };
}

export function describeTarget(t: ProbeTarget): string {
  if (t.kind === "exec") return `exec ${JSON.stringify(t.command)}`;
  return t.kind === "tcp"
    ? `TCP check of container port ${t.containerPort} (published at ${t.host}:${t.port})`
    : `HTTP GET http://${t.host}:${t.port}${t.path}`;
}

/** One probe; never rejects. */
export async function probeOnce(target: ProbeTarget, timeoutMs: number): Promise<boolean> {
  return (await probeCheck(target, timeoutMs)).ok;
}

/** One probe with what it saw when it failed (for the instance's message); never rejects. */
export async function probeCheck(
  target: ProbeTarget,
  timeoutMs: number,
): Promise<{ ok: boolean; detail: string }> {
  if (target.kind === "http") return httpProbe(target, timeoutMs);
  if (target.kind === "exec") return target.run(target.command, timeoutMs);
  if (target.pid) {
    const listening = await listensInNetns(target.pid, target.containerPort);
    if (listening !== undefined) {
      return { ok: listening, detail: listening ? "listening" : "nothing listens on the port" };
    }
  }
  const ok = await tcpProbe(target, timeoutMs);
  return { ok, detail: ok ? "connected" : "connection refused, closed or timed out" };
}

/**
 * Whether a socket in the network namespace of `pid` listens on `port` on an
 * address other than loopback (one bound to 127.0.0.1 inside cannot be
 * reached through the bridge). undefined: the table cannot be read here.
 */
export async function listensInNetns(pid: number, port: number): Promise<boolean | undefined> {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  let readable = false;
  for (const file of ["tcp", "tcp6"]) {
    let text: string;
    try {
      text = await readFile(`/proc/${pid}/net/${file}`, "latin1");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // The process is gone: certainly not listening. No access: say we cannot tell.
      if (code === "ENOENT" || code === "ESRCH") return false;
      continue;
    }
    readable = true;
    for (const line of text.split("\n")) {
      const fields = line.trim().split(/\s+/);
      const local = fields[1];
      if (fields[3] !== "0A" || !local) continue; // 0A: TCP_LISTEN
      const colon = local.lastIndexOf(":");
      if (local.slice(colon + 1) !== hexPort) continue;
      if (!isLoopback(local.slice(0, colon))) return true;
    }
  }
  return readable ? false : undefined;
}

/** A /proc/net/tcp{,6} address (hex, per-word little-endian) is 127.0.0.0/8 or ::1. */
function isLoopback(hex: string): boolean {
  if (hex.length === 8) return hex.endsWith("7F");
  return hex === "00000000000000000000000001000000" || /^0000000000000000FFFF0000..7F$/.test(hex);
}

/** Connect through the published port; the proxy closing it again at once means "not yet". */
function tcpProbe(
  t: { host: string; port: number; settleMs: number },
  timeoutMs: number,
): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: t.host, port: t.port });
    let settle: NodeJS.Timeout | undefined;
    const done = (ok: boolean) => {
      clearTimeout(timer);
      clearTimeout(settle);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once("connect", () => {
      settle = setTimeout(() => done(true), t.settleMs);
    });
    socket.once("end", () => done(false));
    socket.once("close", () => done(false));
    socket.once("error", () => done(false));
  });
}

function httpProbe(
  t: { host: string; port: number; path: string; headers: Record<string, string> },
  timeoutMs: number,
): Promise<{ ok: boolean; detail: string }> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (ok: boolean, detail: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve({ ok, detail });
    };
    const req = request({
      host: t.host,
      port: t.port,
      path: t.path,
      method: "GET",
      agent: false,
      headers: { "user-agent": "skiff-probe", ...t.headers, connection: "close" },
    });
    const timer = setTimeout(() => done(false, `no answer within ${timeoutMs} ms`), timeoutMs);
    req.once("response", (res) => {
      const status = res.statusCode ?? 0;
      res.resume();
      done(status >= 200 && status < 400, `status ${status}`);
    });
    req.once("error", (err) => done(false, err.message));
    req.end();
  });
}
