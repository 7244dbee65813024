// Deno.serve style: `skiff service create greet --source examples/workers/deno-serve.js`
// Also runs unchanged under `deno run --allow-net --allow-env examples/workers/deno-serve.js`.
Deno.serve((request) => {
  const name = new URL(request.url).searchParams.get("name") ?? Deno.env.get("TARGET") ?? "World";
  return new Response(`Hello ${name}!\n`);
});
