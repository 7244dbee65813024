/**
 * A gateway as its own process, for tests that need several replicas:
 * `node test/gateway/gateway-process.ts '<options JSON>'`. Prints one JSON
 * line {id, url, adminUrl} once listening; SIGTERM closes it cleanly.
 */
import { pino } from "pino";
import { startGateway } from "../../gateway/server.ts";

const options = JSON.parse(process.argv[2] ?? "{}");
const gateway = await startGateway({
  ...options,
  // Logs go to stderr: stdout carries the one line the test reads.
  logger: pino({ level: process.env.SKIFF_TEST_GATEWAY_LOG ?? "warn" }, pino.destination(2)),
});
process.stdout.write(
  `${JSON.stringify({ id: gateway.id, url: gateway.url, adminUrl: gateway.adminUrl })}\n`,
);
process.once("SIGTERM", () => {
  void gateway.close(2_000).then(() => process.exit(0));
});
