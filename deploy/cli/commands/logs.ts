/** `skiff logs SERVICE [--revision R] [--follow]`: its instances' output, through the agents. */
import type { Command } from "commander";
import { UsageError } from "../../../src/errors.ts";
import { MAX_TAIL_LINES } from "../../../src/fleet/log-limits.ts";
import type { ClientFactory } from "../client.ts";

export function registerLogsCommand(program: Command, client: ClientFactory): void {
  program
    .command("logs <service>")
    .description("print the output (stdout and stderr) of a service's container instances")
    .option("--revision <name>", "only this revision's instances")
    .option("-f, --follow", "keep printing new lines until interrupted")
    .option("--tail <lines>", `lines per instance from before now (0..${MAX_TAIL_LINES})`, "100")
    .option("--json", "one JSON object per line (agent, instance, revision, stream, time, text)")
    .action(
      async (
        service: string,
        opts: { revision?: string; follow?: boolean; tail: string; json?: boolean },
        cmd: Command,
      ) => {
        const tailLines = Number(opts.tail);
        if (!Number.isInteger(tailLines) || tailLines < 0 || tailLines > MAX_TAIL_LINES) {
          throw new UsageError(`--tail must be an integer from 0 to ${MAX_TAIL_LINES}`);
        }
        const api = client(cmd);
        const abort = new AbortController();
        const stop = () => abort.abort();
        process.once("SIGINT", stop);
        try {
          const lines = await api.logs(service, {
            follow: opts.follow === true,
            tailLines,
            signal: abort.signal,
            ...(opts.revision ? { revision: opts.revision } : {}),
          });
          for await (const l of lines) {
            process.stdout.write(
              opts.json ? `${JSON.stringify(l)}\n` : `${l.instance} ${l.stream}: ${l.text}\n`,
            );
          }
        } catch (err) {
          if (!abort.signal.aborted) throw err;
        } finally {
          process.off("SIGINT", stop);
        }
      },
    );
}
