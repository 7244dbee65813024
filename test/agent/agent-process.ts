/**
 * Runs one agent as its own process, for tests that kill it (SIGKILL) or stop
 * it with a signal (SIGTERM), until `skiff agent` exists in the CLI.
 * Usage: node test/agent/agent-process.ts '<AgentOptions JSON>'
 * Prints "READY <url>" once the agent serves; logs go to stderr.
 */
import { startAgent } from "../../agent/server.ts";
import { createLogger } from "../../src/logging.ts";

const options = JSON.parse(process.argv[2] ?? "{}");
const logger = createLogger({ component: "agent", level: process.env.SKIFF_LOG_LEVEL ?? "warn" });
const running = await startAgent({ ...options, logger, handleSignals: true });
process.stdout.write(`READY ${running.url}\n`);
