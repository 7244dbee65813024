/**
 * src/redis/connect.ts, the one place that opens Redis connections: password-only
 * and user:password URLs against real redis-servers (requirepass, ACL user),
 * TLS (`rediss://`) against a redis-server with a self-signed certificate,
 * clear errors for bad URLs and refused credentials, and passwords never in
 * an error or a log line.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isSkiffError } from "../../src/errors.ts";
import {
  connectRedis,
  openRedis,
  quitRedis,
  redactRedisUrl,
  redactSecrets,
} from "../../src/redis/connect.ts";
import { freePort, type RedisServer, startRedisServer } from "../../src/redis/server.ts";
import { waitFor } from "../support/wait.ts";

const dir = mkdtempSync(join(tmpdir(), "skiff-redis-cred-"));
const PASSWORD = "s3cret-Pass/with@odd:chars";
const encoded = encodeURIComponent(PASSWORD);
let withPassword: RedisServer;
let withAcl: RedisServer;

beforeAll(async () => {
  withPassword = await startRedisServer({ dir: join(dir, "pw"), password: PASSWORD });
  const acl = join(dir, "users.acl");
  writeFileSync(
    acl,
    [
      "user default off",
      `user admin on >${PASSWORD} ~* &* +@all`,
      `user reader on >${PASSWORD} ~app:* -@all +hello +auth +client|setname +info +ping +get +quit`,
      "",
    ].join("\n"),
  );
  withAcl = await startRedisServer({
    dir: join(dir, "acl"),
    aclFile: acl,
    username: "admin",
    password: PASSWORD,
  });
});

afterAll(async () => {
  await withPassword?.stop();
  await withAcl?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("redactRedisUrl", () => {
  it("masks the password of every URL form, and only the password", () => {
    const cases: [string, string][] = [
      ["redis://:hunter22@127.0.0.1:6379", "redis://:***@127.0.0.1:6379"],
      ["redis://app:hunter22@10.0.0.5:6380/2", "redis://app:***@10.0.0.5:6380/2"],
      ["rediss://app:hunter22@redis.example:6380", "rediss://app:***@redis.example:6380"],
      ["redis://127.0.0.1:6379?password=hunter22", "redis://127.0.0.1:6379?password=***"],
      ["redis://127.0.0.1:6379", "redis://127.0.0.1:6379"],
      ["memory://up", "memory://up"],
    ];
    for (const [url, want] of cases) expect(redactRedisUrl(url)).toBe(want);
    expect(
      redactSecrets(`cannot reach redis://:hunter22@h:1 (hunter22)`, "redis://:hunter22@h:1"),
    ).toBe("cannot reach redis://:***@h:1 (***)");
  });
});

describe("connectRedis", () => {
  it("a password-only URL (requirepass) connects; without it Redis refuses", async () => {
    const url = `redis://:${encoded}@127.0.0.1:${withPassword.port}`;
    const r = await openRedis(url, { connectionName: "skiff-test-pw" });
    try {
      expect(await r.ping()).toBe("PONG");
      expect(await r.client("GETNAME")).toBe("skiff-test-pw");
    } finally {
      await quitRedis(r);
    }
    const anon = connectRedis(`redis://127.0.0.1:${withPassword.port}`, {
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    anon.on("error", () => {});
    const got = await anon.get("x").then(
      () => "answered",
      (e: Error) => e.message,
    );
    anon.disconnect();
    expect(got).not.toBe("answered");
  });

  it("a user:password URL logs in as that ACL user, who gets only its keys", async () => {
    const r = await openRedis(`redis://reader:${encoded}@127.0.0.1:${withAcl.port}`);
    try {
      expect(await r.call("ACL", "WHOAMI").catch((e: Error) => e.message)).toMatch(/NOPERM/);
      expect(await r.get("app:x")).toBeNull();
      await expect(r.get("other:x")).rejects.toThrow(/NOPERM/);
    } finally {
      await quitRedis(r);
    }
  });

  it("wrong credentials fail with a clear error that names the URL without its password", async () => {
    const url = `redis://reader:wrong-${encoded}@127.0.0.1:${withAcl.port}`;
    // The default policy reconnects forever; bad credentials must fail at once all the same.
    const err = await openRedis(url).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isSkiffError(err)).toBe(true);
    const message = (err as Error).message;
    console.log(message);
    expect(message).toContain(`redis://reader:***@127.0.0.1:${withAcl.port}`);
    expect(message).not.toContain("wrong-");
    expect(message).toMatch(/WRONGPASS|invalid/i);
  });

  it("refuses malformed URLs with a message saying the expected form", () => {
    const bad: [string, RegExp][] = [
      ["http://127.0.0.1:6379", /scheme must be redis:\/\/ or rediss:\/\//],
      ["redis://app@127.0.0.1:6379", /user "app" without a password/],
      ["not a url :hunter22@", /is not a URL/],
    ];
    for (const [url, why] of bad) {
      let message = "";
      try {
        connectRedis(url);
      } catch (e) {
        message = (e as Error).message;
      }
      expect(message).toMatch(why);
      expect(message).not.toContain("hunter22");
    }
  });

  it("connection errors go to the logger with the URL and message redacted", async () => {
    const lines: string[] = [];
    const logger = pino({ level: "warn" }, { write: (l: string) => void lines.push(l) });
    const port = await freePort();
    const r = connectRedis(`redis://:hunter22-secret@127.0.0.1:${port}`, {
      logger,
      lazyConnect: true,
      retryStrategy: () => null,
    });
    await r.connect().catch(() => {});
    await waitFor("a logged connection error", () => lines.length > 0);
    r.disconnect();
    expect(lines.join("")).toContain(`redis://:***@127.0.0.1:${port}`);
    expect(lines.join("")).not.toContain("hunter22-secret");
  });
});

describe("rediss:// (TLS)", () => {
  let child: ChildProcess | undefined;
  let port = 0;
  let ca = "";

  beforeAll(async () => {
    const key = join(dir, "key.pem");
    const cert = join(dir, "cert.pem");
    execFileSync(
      "openssl",
      [
        ...["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"],
        ...["-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1"],
        ...["-addext", "subjectAltName=IP:127.0.0.1"],
      ],
      { stdio: "ignore" },
    );
    ca = readFileSync(cert, "utf8");
    port = await freePort();
    child = spawn(
      "redis-server",
      [
        ...["--port", "0", "--tls-port", String(port), "--bind", "127.0.0.1"],
        ...["--tls-cert-file", cert, "--tls-key-file", key, "--tls-auth-clients", "no"],
        ...["--save", "", "--appendonly", "no", "--dir", dir, "--requirepass", PASSWORD],
      ],
      { stdio: "ignore" },
    );
    await waitFor(
      "the TLS redis-server",
      async () => {
        const r = connectRedis(`rediss://:${encoded}@127.0.0.1:${port}`, {
          tls: { ca },
          lazyConnect: true,
          retryStrategy: () => null,
        });
        r.on("error", () => {});
        try {
          await r.connect();
          return (await r.ping()) === "PONG";
        } catch {
          return false;
        } finally {
          r.disconnect();
        }
      },
      15_000,
      100,
    );
  });

  afterAll(() => {
    child?.kill("SIGTERM");
  });

  it("connects over TLS with the password; plain redis:// to the TLS port does not get an answer", async () => {
    const r = await openRedis(`rediss://:${encoded}@127.0.0.1:${port}`, { tls: { ca } });
    try {
      expect(await r.set("tls:x", "1")).toBe("OK");
      expect(await r.get("tls:x")).toBe("1");
    } finally {
      await quitRedis(r);
    }
    const plain = connectRedis(`redis://:${encoded}@127.0.0.1:${port}`, {
      lazyConnect: true,
      retryStrategy: () => null,
      connectTimeout: 2000,
    });
    plain.on("error", () => {});
    const got = await plain.connect().then(
      () => plain.ping(),
      (e: Error) => e.message,
    );
    plain.disconnect();
    expect(got).not.toBe("PONG");
  });
});
