import { describe, expect, it } from "vitest";
import {
  checkDns1035Label,
  checkDns1123Label,
  checkDns1123Subdomain,
  checkEnvName,
  checkLabelValue,
  checkQualifiedName,
  checkTagHostLabel,
  isReservedEnvName,
  revisionNameFor,
  serviceHost,
  tagHost,
} from "../../../src/model/index.ts";

describe("DNS-1123 label (namespaces)", () => {
  it("accepts a leading digit", () => {
    expect(checkDns1123Label("1team")).toBeUndefined();
  });
  it("rejects upper case and suggests the lower-case spelling", () => {
    expect(checkDns1123Label("Default")).toContain('use lower case ("default")');
  });
  it("rejects 64 characters", () => {
    expect(checkDns1123Label("a".repeat(64))).toContain("no more than 63 characters");
  });
  it("rejects a trailing dash", () => {
    expect(checkDns1123Label("team-")).toContain("not a valid DNS-1123 label");
  });
});

describe("DNS-1035 label (service names, tags)", () => {
  it("accepts hello-world", () => {
    expect(checkDns1035Label("hello-world")).toBeUndefined();
  });
  it("rejects a leading digit", () => {
    expect(checkDns1035Label("1hello")).toContain("starting with a letter");
  });
  it("rejects dots", () => {
    expect(checkDns1035Label("a.b")).toContain("not a valid DNS-1035 label");
  });
  it("rejects the empty string", () => {
    expect(checkDns1035Label("")).toBe("must not be empty");
  });
  it("accepts exactly 63 characters", () => {
    expect(checkDns1035Label(`a${"b".repeat(62)}`)).toBeUndefined();
  });
});

describe("DNS-1123 subdomain (revision names)", () => {
  it("accepts dotted names", () => {
    expect(checkDns1123Subdomain("hello.v2")).toBeUndefined();
  });
  it("rejects underscores", () => {
    expect(checkDns1123Subdomain("hello_v2")).toContain("not a valid DNS-1123 subdomain");
  });
});

describe("env var names", () => {
  it("accept Knative's character set including dots and dashes", () => {
    expect(checkEnvName("my.var-1_X")).toBeUndefined();
  });
  it("reject a leading digit", () => {
    expect(checkEnvName("1VAR")).toContain("not a valid environment variable name");
  });
  it("reject spaces", () => {
    expect(checkEnvName("MY VAR")).toContain("not a valid environment variable name");
  });
  it("reserve PORT and every K_* name", () => {
    expect(
      ["PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION", "K_ANYTHING"].map(isReservedEnvName),
    ).toEqual([true, true, true, true, true]);
    expect(isReservedEnvName("KPORT")).toBe(false);
  });
});

describe("revision names", () => {
  it("revisionNameFor pads the generation to 5 digits", () => {
    expect(revisionNameFor("hello", 1)).toBe("hello-00001");
    expect(revisionNameFor("hello", 12)).toBe("hello-00012");
  });
  it("revisionNameFor rejects generation 0", () => {
    expect(() => revisionNameFor("hello", 0)).toThrow(/positive integer/);
  });
});

describe("hosts", () => {
  it("serviceHost is {name}.{ns}.{domain}", () => {
    expect(serviceHost("hello", "default", "localhost")).toBe("hello.default.localhost");
  });
  it("tagHost is {tag}-{name}.{ns}.{domain}", () => {
    expect(tagHost("canary", "hello", "default", "example.com")).toBe(
      "canary-hello.default.example.com",
    );
  });
  it("checkTagHostLabel accepts a label of exactly 63 characters", () => {
    expect(checkTagHostLabel("t".repeat(57), "hello")).toBeUndefined();
  });
  it("checkTagHostLabel rejects 64 characters and says how long the tag may be", () => {
    const problem = checkTagHostLabel("t".repeat(58), "hello");
    expect(problem).toContain("64 characters long");
    expect(problem).toContain("at most 57 characters");
  });
});

describe("label and annotation keys", () => {
  it("accept a DNS prefix", () => {
    expect(checkQualifiedName("autoscaling.knative.dev/min-scale")).toBeUndefined();
  });
  it("reject an empty name after the prefix", () => {
    expect(checkQualifiedName("example.com/")).toContain("empty name");
  });
  it("reject label values with spaces", () => {
    expect(checkLabelValue("a b")).toContain("not a valid label value");
  });
});
