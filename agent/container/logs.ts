/** The last lines a container wrote, from Docker's multiplexed log stream. */
import type Docker from "dockerode";

/**
 * Docker frames non-TTY logs as [stream, 0, 0, 0, size(4 bytes BE)] + payload.
 * Anything that does not parse as frames is taken as plain text (TTY containers).
 */
export function demuxLogs(buf: Buffer): string {
  const parts: Buffer[] = [];
  let offset = 0;
  while (offset + 8 <= buf.length) {
    const kind = buf[offset];
    if (kind === undefined || kind > 2 || buf[offset + 1] !== 0 || buf[offset + 2] !== 0) {
      return buf.toString("utf8");
    }
    const size = buf.readUInt32BE(offset + 4);
    parts.push(buf.subarray(offset + 8, offset + 8 + size));
    offset += 8 + size;
  }
  if (offset !== buf.length) return buf.toString("utf8");
  return Buffer.concat(parts).toString("utf8");
}

/** Up to `lines` trailing non-empty lines; [] when the container is gone. */
export async function tailLogs(
  docker: Docker,
  containerId: string,
  lines: number,
): Promise<string[]> {
  if (lines <= 0) return [];
  try {
    const raw = (await docker
      .getContainer(containerId)
      .logs({ stdout: true, stderr: true, tail: lines, follow: false })) as unknown as Buffer;
    const text = Buffer.isBuffer(raw) ? demuxLogs(raw) : String(raw);
    return text
      .split("\n")
      .map((l) => l.trimEnd())
      .filter((l) => l.length > 0)
      .slice(-lines);
  } catch {
    return [];
  }
}
