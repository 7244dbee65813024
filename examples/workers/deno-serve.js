// Deno.serve style: `skiff service create greet --source examples/workers/deno-serve.js`
// Runs unchanged under `deno run --allow-net --allow-env examples/workers/deno-serve.js`
// (it listens on HOST:PORT there; under Skiff the runtime owns the socket).
Deno.serve(
  { hostname: Deno.env.get("HOST") ?? "127.0.0.1", port: Number(Deno.env.get("PORT") ?? 8000) },
  (request) => {
    const url = new URL(request.url);
    const name = url.searchParams.get("name") ?? Deno.env.get("TARGET") ?? "World";
    if (url.pathname === "/echo" && request.method === "POST") {
      return request.text().then((body) => new Response(`${name} got ${body.length} bytes\n`));
    }
    return new Response(`Hello ${name}!\n`, { headers: { "x-served-by": "deno-serve-example" } });
  },
);
