/**
 * The undici connection pools to instances, one per endpoint protocol:
 * HTTP/1.1 with keep-alive, and h2c made on first use.
 */
import { Agent, type Dispatcher } from "undici";

export interface UpstreamAgents {
  agentFor(protocol: "http1" | "h2c"): Dispatcher;
  close(): Promise<void>;
}

export function createUpstreamAgents(): UpstreamAgents {
  const agentOptions = {
    keepAliveTimeout: 4_000,
    keepAliveMaxTimeout: 60_000,
    pipelining: 1,
    headersTimeout: 0,
    bodyTimeout: 0,
    connect: { timeout: 5_000 },
  };
  const http1 = new Agent(agentOptions);
  let h2c: Agent | undefined;
  return {
    agentFor(protocol) {
      if (protocol === "http1") return http1;
      // undici 8's Pool reads the top-level useH2c (not in its types), its Client h2Options.useH2c.
      const h2cOptions = {
        ...agentOptions,
        allowH2: true,
        useH2c: true,
        h2Options: { useH2c: true },
      };
      h2c ??= new Agent(h2cOptions);
      return h2c;
    },
    async close() {
      await Promise.allSettled([http1.close(), h2c?.close()]);
    },
  };
}
