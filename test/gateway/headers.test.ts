/** The header rules between client and instance (pure). */
import { describe, expect, it } from "vitest";
import { downstreamHeaders, upstreamHeaders } from "../../gateway/headers.ts";

const info = {
  clientIp: "::ffff:10.1.2.3",
  host: "hello.default.localhost:8080",
  proto: "http" as const,
  trustForwarded: false,
};

function asObject(flat: string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (let i = 0; i < flat.length; i += 2) {
    const name = (flat[i] as string).toLowerCase();
    out[name] = [...(out[name] ?? []), flat[i + 1] as string];
  }
  return out;
}

describe("upstreamHeaders", () => {
  it("drops every x-skiff-* header whatever its case", () => {
    const { headers } = upstreamHeaders(
      ["X-Skiff-Revision", "default/other", "x-skiff-isolate-error", "1", "x-skiffy", "kept"],
      info,
    );
    const h = asObject(headers);
    expect(h["x-skiff-revision"]).toBeUndefined();
    expect(h["x-skiff-isolate-error"]).toBeUndefined();
    expect(h["x-skiffy"]).toEqual(["kept"]);
  });

  it("drops hop-by-hop headers, those Connection names, and Expect", () => {
    const { headers } = upstreamHeaders(
      [
        "Connection",
        "keep-alive, X-Private",
        "X-Private",
        "secret",
        "Keep-Alive",
        "timeout=5",
        "Transfer-Encoding",
        "chunked",
        "Upgrade",
        "websocket",
        "Expect",
        "100-continue",
        "Content-Length",
        "5",
      ],
      info,
    );
    expect(Object.keys(asObject(headers)).sort()).toEqual([
      "content-length",
      "forwarded",
      "x-forwarded-for",
      "x-forwarded-host",
      "x-forwarded-proto",
      "x-request-id",
    ]);
  });

  it("keeps Connection: upgrade and Upgrade for an upgrade", () => {
    const { headers } = upstreamHeaders(
      ["Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Key", "k"],
      info,
      true,
    );
    const h = asObject(headers);
    expect(h.connection).toEqual(["upgrade"]);
    expect(h.upgrade).toEqual(["websocket"]);
    expect(h["sec-websocket-key"]).toEqual(["k"]);
  });

  it("replaces client Forwarded / X-Forwarded-* unless told to trust them", () => {
    const raw = [
      "X-Forwarded-For",
      "1.1.1.1",
      "X-Forwarded-Proto",
      "https",
      "X-Forwarded-Host",
      "public.example",
      "Forwarded",
      "for=1.1.1.1;proto=https",
    ];
    const plain = asObject(upstreamHeaders(raw, info).headers);
    expect(plain["x-forwarded-for"]).toEqual(["10.1.2.3"]);
    expect(plain["x-forwarded-proto"]).toEqual(["http"]);
    expect(plain["x-forwarded-host"]).toEqual(["hello.default.localhost:8080"]);
    expect(plain.forwarded).toEqual([
      'for=10.1.2.3;host="hello.default.localhost:8080";proto=http',
    ]);

    const trusted = asObject(upstreamHeaders(raw, { ...info, trustForwarded: true }).headers);
    expect(trusted["x-forwarded-for"]).toEqual(["1.1.1.1, 10.1.2.3"]);
    expect(trusted["x-forwarded-proto"]).toEqual(["https"]);
    expect(trusted["x-forwarded-host"]).toEqual(["public.example"]);
    expect(trusted.forwarded).toEqual([
      'for=1.1.1.1;proto=https, for=10.1.2.3;host="hello.default.localhost:8080";proto=http',
    ]);
  });

  it("quotes an IPv6 client in Forwarded", () => {
    const h = asObject(upstreamHeaders([], { ...info, clientIp: "::1" }).headers);
    expect(h.forwarded).toEqual(['for="[::1]";host="hello.default.localhost:8080";proto=http']);
    expect(h["x-forwarded-for"]).toEqual(["::1"]);
  });

  it("adds a request id when missing and keeps the client's otherwise", () => {
    const fresh = upstreamHeaders([], info);
    expect(fresh.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(asObject(fresh.headers)["x-request-id"]).toEqual([fresh.requestId]);
    const kept = upstreamHeaders(["X-Request-Id", "mine"], info);
    expect(kept.requestId).toBe("mine");
    expect(asObject(kept.headers)["x-request-id"]).toEqual(["mine"]);
  });
});

describe("downstreamHeaders", () => {
  it("drops hop-by-hop response headers and those Connection names", () => {
    expect(
      downstreamHeaders({
        connection: "close, x-internal-hop",
        "x-internal-hop": "1",
        "keep-alive": "timeout=5",
        "transfer-encoding": "chunked",
        "content-type": "text/plain",
        "set-cookie": ["a=1", "b=2"],
      }),
    ).toEqual({ "content-type": "text/plain", "set-cookie": ["a=1", "b=2"] });
  });
});
