/** Binding the gateway's servers, and how their addresses are written in URLs. */
import type { Server } from "node:http";

export function listen(
  server: Server,
  host: string,
  port: number,
  reusePort = false,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) =>
      reject(new Error(`cannot listen on ${host}:${port}: ${err.message}`));
    server.once("error", onError);
    // reusePort: several processes (the workers of gateway/cluster.ts) bind the
    // same port with SO_REUSEPORT and the kernel spreads connections over them.
    server.listen({ port, host, reusePort }, () => {
      server.off("error", onError);
      resolve();
    });
  });
}

export function hostForUrl(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}
