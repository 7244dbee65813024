/**
 * compileWorker, checked by importing the real bundle in Node and calling its
 * fetch. (Each bundle installs its own globalThis.Deno, as it would in its own
 * isolate, so every test loads a bundle and calls it right away.)
 */
import { createHash } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compileWorker, validateWorkerShape, type WorkerSpec } from "../../../src/model/index.ts";
import { causesOfAsync, expectCause } from "./support.ts";

interface Bundle {
  fetch(request: Request, env: Record<string, unknown>, ctx?: unknown): Promise<Response>;
}

let dir: string;
let n = 0;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "skiff-worker-test-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function load(worker: WorkerSpec): Promise<Bundle> {
  const { code } = await compileWorker(worker);
  const file = join(dir, `bundle-${n++}.mjs`);
  await writeFile(file, code);
  const mod = (await import(pathToFileURL(file).href)) as { default: Bundle };
  return mod.default;
}

async function call(
  bundle: Bundle,
  env: Record<string, unknown> = {},
  url = "http://hello.default.localhost/",
) {
  const res = await bundle.fetch(new Request(url), env, {});
  return { status: res.status, text: await res.text() };
}

const W = "spec.template.spec.worker";

describe("compiled workers run", () => {
  it("a Workers-style TypeScript module answers through default.fetch with env bindings", async () => {
    const b = await load({
      language: "typescript",
      source: `export default {
        async fetch(request: Request, env: { TARGET: string }): Promise<Response> {
          return new Response(\`Hello \${env.TARGET} from \${new URL(request.url).pathname}\`);
        },
      };`,
    });
    expect(await call(b, { TARGET: "World" }, "http://x/path")).toEqual({
      status: 200,
      text: "Hello World from /path",
    });
  });

  it("a Deno.serve module reads Deno.env at top level from the first request's env", async () => {
    const b = await load({
      language: "typescript",
      source: `const target: string = Deno.env.get("TARGET") ?? "nobody";
        Deno.serve((_req: Request) => new Response("Hello " + target + " " + Deno.env.has("TARGET")));`,
    });
    expect(await call(b, { TARGET: "Knative" })).toEqual({
      status: 200,
      text: "Hello Knative true",
    });
  });

  it("Deno.env.toObject holds only the string bindings", async () => {
    const b = await load({
      source: `Deno.serve(() => Response.json(Deno.env.toObject()));`,
    });
    const r = await call(b, { A: "1", B: { not: "a string" } });
    expect(JSON.parse(r.text)).toEqual({ A: "1" });
  });

  it("Deno.serve(options, handler) and Deno.serve({ handler }) both work", async () => {
    const two = await load({
      source: `Deno.serve({ port: 8000 }, () => new Response("two-arg"));`,
    });
    expect((await call(two)).text).toBe("two-arg");
    const one = await load({ source: `Deno.serve({ handler: () => new Response("options") });` });
    expect((await call(one)).text).toBe("options");
  });

  it("Deno.serve's onError turns a thrown error into a response", async () => {
    const b = await load({
      source: `Deno.serve({ onError: (e) => new Response("caught " + e.message, { status: 503 }) }, () => { throw new Error("boom"); });`,
    });
    expect(await call(b)).toEqual({ status: 503, text: "caught boom" });
  });

  it("the Deno.serve handler gets the client address from X-Forwarded-For", async () => {
    const b = await load({
      source: `Deno.serve((req, info) => new Response(info.remoteAddr.hostname));`,
    });
    const res = await b.fetch(
      new Request("http://x/", { headers: { "x-forwarded-for": "10.1.2.3, 127.0.0.1" } }),
      {},
    );
    expect(await res.text()).toBe("10.1.2.3");
  });

  it("a default-exported function is used as the fetch handler", async () => {
    const b = await load({ source: `export default (req) => new Response("fn " + req.method);` });
    expect((await call(b)).text).toBe("fn GET");
  });

  it("a module with neither default fetch nor Deno.serve answers 500 saying so", async () => {
    const b = await load({ source: `export const x = 1;` });
    const r = await call(b);
    expect(r.status).toBe(500);
    expect(r.text).toContain(
      "neither `export default { fetch(request, env, ctx) }` nor a `Deno.serve(handler)`",
    );
  });

  it("modules import each other by relative path, including ./x.js for x.ts, ../ and JSON", async () => {
    const b = await load({
      main: "src/main.ts",
      modules: [
        {
          name: "src/main.ts",
          source: `import { greet } from "./greet.js"; import data from "../data.json"; import { sep } from "./lib/index.ts";
            export default { fetch: () => new Response(greet(data.name) + sep) };`,
        },
        { name: "src/greet.ts", source: `export const greet = (n: string): string => "hi " + n;` },
        { name: "src/lib/index.ts", source: `export const sep = "!";` },
        { name: "data.json", source: `{ "name": "modules" }` },
      ],
    });
    expect((await call(b)).text).toBe("hi modules!");
  });

  it("node:* imports stay external and resolve at run time", async () => {
    const { code } = await compileWorker({
      source: `import { Buffer } from "node:buffer"; export default { fetch: () => new Response(Buffer.from("aGk=", "base64").toString()) };`,
    });
    expect(code).toMatch(/from "node:buffer"/);
    const b = await load({
      source: `import { Buffer } from "node:buffer"; export default { fetch: () => new Response(Buffer.from("aGk=", "base64").toString()) };`,
    });
    expect((await call(b)).text).toBe("hi");
  });

  it("the output is one ES module with sha256 and byte count of the code, stable for the same input", async () => {
    const w: WorkerSpec = { source: `export default { fetch: () => new Response("x") };` };
    const a = await compileWorker(w);
    const b = await compileWorker(w);
    expect(a.sha256).toBe(createHash("sha256").update(a.code).digest("hex"));
    expect(a.bytes).toBe(Buffer.byteLength(a.code));
    expect(b.sha256).toBe(a.sha256);
    expect(a.code).toMatch(/export \{[^}]*\bentry_default as default\b[^}]*\};/);
  });
});

describe("compile errors", () => {
  it("a TypeScript syntax error names module:line:col", async () => {
    const c = await causesOfAsync(() =>
      compileWorker({
        language: "typescript",
        source: `const a: number = 1;\nconst b: number = ;\n`,
      }),
    );
    expectCause(c, `${W}.source`, "main.ts:2:19:");
  });

  it("an error in one of several modules points at that module's source", async () => {
    const c = await causesOfAsync(() =>
      compileWorker({
        main: "main.js",
        modules: [
          {
            name: "main.js",
            source: `import "./bad.ts"; export default { fetch: () => new Response("") };`,
          },
          { name: "bad.ts", source: `let x: = 1;` },
        ],
      }),
    );
    expectCause(c, `${W}.modules[1].source`, "bad.ts:1:");
  });

  for (const spec of [
    "npm:lodash",
    "jsr:@std/path",
    "https://deno.land/x/mod.ts",
    "lodash",
    "/abs.js",
  ]) {
    it(`importing "${spec}" is refused with what workers may import`, async () => {
      const c = await causesOfAsync(() =>
        compileWorker({
          source: `import x from "${spec}";\nexport default { fetch: () => new Response(String(x)) };`,
        }),
      );
      expectCause(
        c,
        `${W}.source`,
        `main.js:1:15: import "${spec}": workers can only import their own modules`,
      );
      expectCause(c, `${W}.source`, "node:* built-ins");
    });
  }

  it("importing a module that is not given names the modules there are", async () => {
    const c = await causesOfAsync(() =>
      compileWorker({ modules: [{ name: "main.js", source: `import "./missing.js";` }] }),
    );
    expectCause(
      c,
      `${W}.modules[0].source`,
      'no module named "missing.js" (the modules are "main.js")',
    );
  });

  it("importing above the module root is refused", async () => {
    const c = await causesOfAsync(() =>
      compileWorker({ modules: [{ name: "main.js", source: `import "../outside.js";` }] }),
    );
    expectCause(c, `${W}.modules[0].source`, "points outside the worker's modules");
  });

  it("sources over the size limit are refused with the size and the limit", async () => {
    const c = await causesOfAsync(() =>
      compileWorker(
        { source: `// ${"x".repeat(200)}\nexport default {};` },
        { maxSourceBytes: 100 },
      ),
    );
    expectCause(c, `${W}.source`, "source is 222 bytes, over the limit of 100 bytes;");
  });

  it("the field prefix is a parameter", async () => {
    const c = await causesOfAsync(() =>
      compileWorker({ source: "let = ;" }, { fieldPrefix: "worker" }),
    );
    expect(c[0]?.field).toBe("worker.source");
  });
});

describe("worker shape (validateWorkerShape)", () => {
  const shape = (w: unknown) => validateWorkerShape(w).causes;

  it("a valid inline worker has no causes and is returned as given", () => {
    const r = validateWorkerShape({
      source: "export default {}",
      language: "typescript",
      network: "internet",
    });
    expect(r.causes).toEqual([]);
    expect(r.worker).toEqual({
      source: "export default {}",
      language: "typescript",
      network: "internet",
    });
  });
  it("neither source nor modules is an error", () => {
    expectCause(shape({}), W, 'set "source" (one inline module) or "modules"');
  });
  it("both source and modules is an error", () => {
    expectCause(shape({ source: "x", modules: [{ name: "a.js", source: "" }] }), W, "not both");
  });
  it("main must name one of the modules", () => {
    expectCause(
      shape({ main: "index.js", modules: [{ name: "a.js", source: "" }] }),
      `${W}.main`,
      '"index.js" is not one of the modules ("a.js")',
    );
  });
  it("main defaults to the only module", () => {
    expect(validateWorkerShape({ modules: [{ name: "a.js", source: "" }] }).worker?.main).toBe(
      "a.js",
    );
  });
  it("main is required with several modules", () => {
    expectCause(
      shape({
        modules: [
          { name: "a.js", source: "" },
          { name: "b.js", source: "" },
        ],
      }),
      `${W}.main`,
      "required when there are several modules",
    );
  });
  it("module names may not contain ..", () => {
    expectCause(
      shape({ modules: [{ name: "a/../../b.js", source: "" }] }),
      `${W}.modules[0].name`,
      'must not contain ".."',
    );
  });
  it("module names must be relative", () => {
    expectCause(
      shape({ modules: [{ name: "/a.js", source: "" }] }),
      `${W}.modules[0].name`,
      "relative path",
    );
  });
  it("module names need a known extension", () => {
    expectCause(
      shape({ modules: [{ name: "a.py", source: "" }] }),
      `${W}.modules[0].name`,
      "must end with one of .js",
    );
  });
  it("duplicate module names are an error on the second", () => {
    expectCause(
      shape({
        main: "a.js",
        modules: [
          { name: "a.js", source: "" },
          { name: "a.js", source: "" },
        ],
      }),
      `${W}.modules[1].name`,
      'duplicate module name "a.js" (also at spec.template.spec.worker.modules[0])',
    );
  });
  it("env names must be valid and not reserved", () => {
    const c = shape({
      source: "x",
      env: [
        { name: "1X", value: "" },
        { name: "K_REVISION", value: "" },
      ],
    });
    expectCause(c, `${W}.env[0].name`, "not a valid environment variable name");
    expectCause(c, `${W}.env[1].name`, "reserved by the runtime contract");
  });
  it("network must be none or internet", () => {
    expectCause(shape({ source: "x", network: "lan" }), `${W}.network`, 'must be "none"');
  });
  it("compatibilityDate must be a real YYYY-MM-DD date", () => {
    expectCause(
      shape({ source: "x", compatibilityDate: "2025-02-30" }),
      `${W}.compatibilityDate`,
      "YYYY-MM-DD",
    );
    expectCause(
      shape({ source: "x", compatibilityDate: "25-01-01" }),
      `${W}.compatibilityDate`,
      "YYYY-MM-DD",
    );
  });
  it("language applies only to source", () => {
    expectCause(
      shape({ language: "typescript", modules: [{ name: "a.ts", source: "" }] }),
      `${W}.language`,
      'only used with "source"',
    );
  });
  it("language must be javascript or typescript", () => {
    expectCause(
      shape({ source: "x", language: "python" }),
      `${W}.language`,
      '"javascript" or "typescript"',
    );
  });
  it("an unknown field gets a did-you-mean", () => {
    expectCause(shape({ sourc: "x" }), `${W}.sourc`, 'did you mean "source"?');
  });
  it("memory limits must be quantities", () => {
    expectCause(
      shape({ source: "x", resources: { limits: { memory: "lots" } } }),
      `${W}.resources.limits.memory`,
      "not a memory quantity",
    );
  });
});

describe("worker size limit (default 1 MiB)", () => {
  it("a source one byte over 1 MiB is refused by the shape check, naming the limit", () => {
    const source = "x".repeat(1024 * 1024 + 1);
    expectCause(
      validateWorkerShape({ source }).causes,
      "spec.template.spec.worker.source",
      "1048577 bytes, over the limit of 1048576 bytes (1 MiB)",
    );
  });
  it("the limit counts all modules together", () => {
    const half = "x".repeat(600 * 1024);
    expectCause(
      validateWorkerShape({
        main: "a.js",
        modules: [
          { name: "a.js", source: half },
          { name: "b.js", source: half },
        ],
      }).causes,
      "spec.template.spec.worker.modules",
      "over the limit of 1048576 bytes",
    );
  });
});
