// `skiff service create hello-ts --source examples/workers/hello.ts --env TARGET=Skiff`
// Also runs unchanged under `deno serve examples/workers/hello.ts`.
export default {
  fetch(request: Request, env?: Record<string, string>): Response {
    const target = env?.TARGET ?? Deno.env.get("TARGET") ?? "World";
    const url = new URL(request.url);
    if (url.pathname === "/json") return Response.json({ hello: target });
    return new Response(`Hello ${target}!\n`, { headers: { "content-type": "text/plain" } });
  },
};

declare const Deno: { env: { get(name: string): string | undefined } };
