/**
 * The attacker of gateway-hostile.test.ts, in its own process so that its
 * CPU does not slow the test's legitimate client and backend (what is
 * measured is the gateway's resistance, not the test process's):
 *
 *   node test/security/gateway-attacker.ts '{"url":..., "host":..., "durationMs":...}'
 *
 * Runs slowloris connections, header floods and malformed requests, all
 * paced, for durationMs, then prints one JSON line of counts and exits.
 */
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

export interface AttackPlan {
  url: string;
  /** The legitimate service's host, targeted by the attacks. */
  host: string;
  durationMs: number;
  /** Slowloris connections held at once. */
  slowloris: number;
  /** Pause between two requests of one flood / malformed loop. */
  paceMs: number;
}

export interface AttackStats {
  slowlorisOpened: number;
  slowlorisCutByGateway: number;
  slowlorisLongestMs: number;
  /** Status code -> count ("0": no answer). */
  floods: Record<string, number>;
  malformed: Record<string, number>;
}

async function rawStatus(url: string, text: string): Promise<number> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  socket.on("error", () => {});
  try {
    await once(socket, "connect");
  } catch {
    return 0;
  }
  socket.write(text);
  let data = "";
  return new Promise<number>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0));
    };
    const timer = setTimeout(done, 3_000);
    socket.on("data", (d: Buffer) => {
      data += String(d);
      if (data.includes("\r\n\r\n")) done();
    });
    socket.once("close", done);
  });
}

export async function attack(plan: AttackPlan): Promise<AttackStats> {
  const { url, host } = plan;
  const stats: AttackStats = {
    slowlorisOpened: 0,
    slowlorisCutByGateway: 0,
    slowlorisLongestMs: 0,
    floods: {},
    malformed: {},
  };
  let stopped = false;
  let stop!: () => void;
  const stopping = new Promise<void>((resolve) => {
    stop = resolve;
  });

  const { hostname, port } = new URL(url);
  // Slowloris: a header line every second on every held connection (one
  // timer for all), never the end of the head.
  const held = new Set<Socket>();
  let line = 0;
  const drip = setInterval(() => {
    line++;
    for (const socket of held) if (socket.writable) socket.write(`X-Slow-${line}: aaaaaaaaaa\r\n`);
  }, 1_000);
  const slow = async (): Promise<void> => {
    while (!stopped) {
      const socket: Socket = connect(Number(port), hostname);
      socket.on("error", () => {});
      try {
        await once(socket, "connect");
      } catch {
        // Refused (a gateway limit): the attacker tries again shortly.
        await sleep(50);
        continue;
      }
      stats.slowlorisOpened++;
      const opened = performance.now();
      // Read (and drop) whatever comes back, so the gateway's close is seen at once.
      socket.resume();
      socket.write(`GET / HTTP/1.1\r\nHost: ${host}\r\n`);
      held.add(socket);
      const cut = await Promise.race([
        new Promise<boolean>((resolve) => socket.once("close", () => resolve(true))),
        stopping.then(() => false),
      ]);
      held.delete(socket);
      socket.destroy();
      if (cut) {
        stats.slowlorisCutByGateway++;
        stats.slowlorisLongestMs = Math.max(stats.slowlorisLongestMs, performance.now() - opened);
      }
    }
  };

  const loop = async (texts: string[], counts: Record<string, number>) => {
    let i = 0;
    while (!stopped) {
      const status = await rawStatus(url, texts[i++ % texts.length] as string);
      counts[status] = (counts[status] ?? 0) + 1;
      // The attack's pace, not a wait for state.
      await sleep(plan.paceMs);
    }
  };

  const bigHeaders = Array.from(
    { length: 100 },
    (_, i) => `X-Flood-${i}: ${"f".repeat(300)}\r\n`,
  ).join("");
  const manyHeaders = Array.from({ length: 1500 }, (_, i) => `X-${i}: ${i}\r\n`).join("");
  const running = [
    ...Array.from({ length: plan.slowloris }, slow),
    loop(
      [
        `GET / HTTP/1.1\r\nHost: ${host}\r\n${bigHeaders}\r\n`,
        `GET / HTTP/1.1\r\nHost: ${host}\r\n${manyHeaders}\r\n`,
        `GET /${"p".repeat(20_000)} HTTP/1.1\r\nHost: ${host}\r\n\r\n`,
      ],
      stats.floods,
    ),
    loop(
      [
        // The stall: a duplicate Host for the very service under load.
        `GET / HTTP/1.1\r\nHost: ${host}\r\nHost: ${host}\r\n\r\n`,
        `GET / HTTP/1.1\r\nHost: ${host}\r\nHost: other.default.localhost\r\n\r\n`,
        `GET http://other.default.localhost/ HTTP/1.1\r\nHost: ${host}\r\n\r\n`,
        "NOT A REQUEST\r\n\r\n",
        `POST / HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello`,
        `POST / HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n`,
        `GET / HTTP/1.1\r\nHost: ${host}\r\nBad Header Name: x\r\n\r\n`,
        `GET / HTTP/1.1\r\nHost: ${host}\r\nX-Nul: a\u0000b\r\n\r\n`,
      ],
      stats.malformed,
    ),
  ];
  // The attack lasts its planned time.
  await sleep(plan.durationMs);
  stopped = true;
  stop();
  clearInterval(drip);
  await Promise.all(running);
  return stats;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const plan = JSON.parse(process.argv[2] ?? "{}") as AttackPlan;
  const stats = await attack(plan);
  process.stdout.write(`${JSON.stringify(stats)}\n`);
  process.exit(0);
}
