/**
 * Exec probes (readinessProbe.exec, livenessProbe.exec): the command runs
 * inside the container as `docker exec` does (its user, capabilities and
 * namespaces), and exit status 0 is a success, as in Kubernetes. A command
 * still running at the timeout is a failure (Docker cannot kill an exec; it
 * ends with the container at the latest).
 */
import type Docker from "dockerode";
import { dockerMessage } from "./docker-errors.ts";

export type ExecRunner = (
  command: string[],
  timeoutMs: number,
) => Promise<{ ok: boolean; detail: string }>;

/** Run exec probes in `containerId`; never rejects. */
export function execRunner(docker: Docker, containerId: string): ExecRunner {
  return async (command, timeoutMs) => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<{ ok: boolean; detail: string }>((resolve) => {
      timer = setTimeout(
        () => resolve({ ok: false, detail: `${command[0]} still ran after ${timeoutMs} ms` }),
        timeoutMs,
      );
    });
    const run = async () => {
      try {
        const exec = await docker.getContainer(containerId).exec({
          Cmd: command,
          AttachStdout: true,
          AttachStderr: true,
        });
        const stream = await exec.start({ hijack: true, stdin: false });
        await new Promise<void>((resolve) => {
          stream.on("end", resolve);
          stream.on("close", resolve);
          stream.on("error", () => resolve());
          stream.resume();
        });
        const code = (await exec.inspect()).ExitCode;
        return { ok: code === 0, detail: `${command[0]} exited with ${code ?? "no status"}` };
      } catch (err) {
        return { ok: false, detail: `exec ${command[0]} failed: ${dockerMessage(err)}` };
      }
    };
    try {
      return await Promise.race([run(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  };
}
