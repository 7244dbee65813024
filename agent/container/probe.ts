/**
 * Readiness probes against an instance's endpoint: a TCP connect by default,
 * an HTTP GET when the template's readinessProbe asks for one (Kubernetes
 * semantics: any status 200-399 is a success).
 */
import { request } from "node:http";
import { connect } from "node:net";
import type { Probe } from "../../src/model/types.ts";

export type ProbeTarget =
  | { kind: "tcp"; host: string; port: number }
  | { kind: "http"; host: string; port: number; path: string; headers: Record<string, string> };

/**
 * Where to probe. The template speaks in container ports; with host networking
 * the instance listens on the allocated port instead, so a probe port that is
 * absent or equal to the declared serving port maps to the allocated one.
 */
export function probeTarget(
  probe: Probe | undefined,
  host: string,
  allocatedPort: number,
  declaredPort: number,
): ProbeTarget {
  const mapPort = (p?: number) => (p === undefined || p === declaredPort ? allocatedPort : p);
  if (probe?.httpGet) {
    const headers: Record<string, string> = {};
    for (const h of probe.httpGet.httpHeaders ?? []) headers[h.name] = h.value;
    const path = probe.httpGet.path.startsWith("/") ? probe.httpGet.path : `/${probe.httpGet.path}`;
    return { kind: "http", host, port: mapPort(probe.httpGet.port), path, headers };
  }
  return { kind: "tcp", host, port: mapPort(probe?.tcpSocket?.port) };
}

export function describeTarget(t: ProbeTarget): string {
  return t.kind === "tcp"
    ? `TCP connect to ${t.host}:${t.port}`
    : `HTTP GET http://${t.host}:${t.port}${t.path}`;
}

/** One probe; never rejects. */
export function probeOnce(target: ProbeTarget, timeoutMs: number): Promise<boolean> {
  return target.kind === "tcp" ? tcpProbe(target, timeoutMs) : httpProbe(target, timeoutMs);
}

function tcpProbe(t: { host: string; port: number }, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: t.host, port: t.port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

function httpProbe(
  t: { host: string; port: number; path: string; headers: Record<string, string> },
  timeoutMs: number,
): Promise<boolean> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (ok: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(ok);
    };
    const req = request({
      host: t.host,
      port: t.port,
      path: t.path,
      method: "GET",
      agent: false,
      headers: { "user-agent": "skiff-probe", ...t.headers, connection: "close" },
    });
    const timer = setTimeout(() => done(false), timeoutMs);
    req.once("response", (res) => {
      const status = res.statusCode ?? 0;
      res.resume();
      done(status >= 200 && status < 400);
    });
    req.once("error", () => done(false));
    req.end();
  });
}
