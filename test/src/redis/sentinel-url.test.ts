/**
 * The redis+sentinel:// URL (src/redis/connect.ts) and how the configuration builds
 * it from --redis-sentinels / --redis-master (src/config.ts): parsed into
 * ioredis' sentinel options, secrets redacted from anything printed, bad
 * input refused with a message saying how to fix it. The failover itself is
 * test/faults/sentinel.test.ts.
 */
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../../src/config.ts";
import { redisUrlSchema } from "../../../src/options.ts";
import {
  connectRedis,
  parseSentinelUrl,
  redactRedisUrl,
  redactSecrets,
  sentinelUrl,
} from "../../../src/redis/connect.ts";

describe("redis+sentinel:// URLs", () => {
  it("carry the sentinels, the master name and both sets of credentials", () => {
    const url =
      "redis+sentinel://skiff:m%40ster-pw@127.0.0.1:26379,[::1]:26380,localhost:26381/mymaster?sentinelUsername=watch&sentinelPassword=s3ntinel-pw&db=2";
    expect(parseSentinelUrl(url)).toEqual({
      sentinels: [
        { host: "127.0.0.1", port: 26379 },
        { host: "::1", port: 26380 },
        { host: "localhost", port: 26381 },
      ],
      name: "mymaster",
      username: "skiff",
      password: "m@ster-pw",
      sentinelUsername: "watch",
      sentinelPassword: "s3ntinel-pw",
      db: 2,
    });
    const shown = redactRedisUrl(url);
    expect(shown).not.toContain("m%40ster-pw");
    expect(shown).not.toContain("s3ntinel-pw");
    expect(shown).toContain("127.0.0.1:26379");
    const text = redactSecrets(`failed: m@ster-pw and s3ntinel-pw in ${url}`, url);
    expect(text).not.toMatch(/m@ster-pw|s3ntinel-pw|m%40ster-pw/);
  });

  it("are built from a sentinel list and a master name, and pass the components' URL check", () => {
    const url = sentinelUrl({
      sentinels: "127.0.0.1:26379, 127.0.0.2:26379",
      master: "m1",
      password: "pw:with/chars",
      sentinelPassword: "spw",
    });
    expect(redisUrlSchema.parse(url)).toBe(url);
    expect(parseSentinelUrl(url)).toMatchObject({
      sentinels: [
        { host: "127.0.0.1", port: 26379 },
        { host: "127.0.0.2", port: 26379 },
      ],
      name: "m1",
      password: "pw:with/chars",
      sentinelPassword: "spw",
    });
  });

  it("refuse what is not HOST:PORT or names no master, saying how to write it (and never the password)", () => {
    for (const [url, message] of [
      ["redis+sentinel://127.0.0.1:26379", /names no master/],
      ["redis+sentinel://:hunter22@127.0.0.1/m", /"127.0.0.1" is not HOST:PORT/],
      ["redis+sentinel://127.0.0.1:99999/m", /is not HOST:PORT/],
      ["redis+sentinel://a b:1/m", /is not HOST:PORT/],
      ["redis+sentinel:///m", /no sentinel given/],
      ["redis+sentinel://127.0.0.1:1/m?db=x", /db must be a number/],
    ] as const) {
      let err: Error | undefined;
      try {
        connectRedis(url, { lazyConnect: true });
      } catch (e) {
        err = e as Error;
      }
      expect(err?.message, url).toMatch(message);
      expect(err?.message).not.toContain("hunter22");
    }
  });

  it("come from SKIFF_REDIS_SENTINELS + SKIFF_REDIS_MASTER (master credentials from REDIS_URL, the sentinels' apart)", () => {
    const config = loadConfig({
      env: {
        REDIS_URL: "redis://skiff:master-pw@ignored:6379",
        SKIFF_REDIS_SENTINELS: "127.0.0.1:26379,127.0.0.1:26380",
        SKIFF_REDIS_MASTER: "skiffm",
        SKIFF_REDIS_SENTINEL_PASSWORD: "sentinel-pw",
      },
    });
    expect(parseSentinelUrl(config.redisUrl)).toEqual({
      sentinels: [
        { host: "127.0.0.1", port: 26379 },
        { host: "127.0.0.1", port: 26380 },
      ],
      name: "skiffm",
      username: "skiff",
      password: "master-pw",
      sentinelPassword: "sentinel-pw",
    });
    expect(() => loadConfig({ env: { SKIFF_REDIS_SENTINELS: "127.0.0.1:26379" } })).toThrow(
      /go together: give both/,
    );
    expect(() =>
      loadConfig({ env: { SKIFF_REDIS_SENTINELS: "nope", SKIFF_REDIS_MASTER: "m" } }),
    ).toThrow(/"nope" is not HOST:PORT/);
  });
});
