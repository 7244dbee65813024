/**
 * One worker of gateway/cluster.ts (forked with an IPC channel): a full
 * gateway from the options in SKIFF_GATEWAY_WORKER. It tells the primary when
 * it listens, answers its metrics requests, and stops gracefully when told
 * (or on SIGTERM), or at once when the primary is gone.
 */
import { createLogger } from "../src/logging.ts";
import type { FromWorker, ToWorker, WorkerInput } from "./cluster.ts";
import { type Gateway, startGateway } from "./server.ts";

const send = (m: FromWorker) => {
  if (process.connected) process.send?.(m);
};

const { logLevel, ...input } = JSON.parse(process.env.SKIFF_GATEWAY_WORKER ?? "{}") as WorkerInput;
let gateway: Gateway;
try {
  gateway = await startGateway({
    ...input,
    logger: createLogger({ level: logLevel }).child({ worker: input.id }),
  });
} catch (err) {
  send({ type: "failed", message: (err as Error).message });
  process.exit(1);
}

let stopping = false;
const stop = (graceMs: number) => {
  if (stopping) return;
  stopping = true;
  void gateway.close(graceMs).then(
    () => process.exit(0),
    () => process.exit(1),
  );
};

process.on("message", (m: ToWorker) => {
  if (m.type === "close") stop(m.graceMs);
  else if (m.type === "metrics") {
    void gateway.registry
      .getMetricsAsJSON()
      .then((data) => send({ type: "metrics", seq: m.seq, data }));
  }
});
// SIGTERM sent to the whole process group (systemd, docker stop): the operator's grace.
process.once("SIGTERM", () => stop(Number(process.env.SKIFF_GATEWAY_WORKER_GRACE_MS ?? 10_000)));
// Ctrl-C reaches the whole process group: the primary decides, and tells us to close.
process.on("SIGINT", () => {});
// The primary died without telling us: nobody supervises this worker any more.
process.once("disconnect", () => stop(2_000));
send({ type: "ready", id: gateway.id, url: gateway.url, adminUrl: gateway.adminUrl });
