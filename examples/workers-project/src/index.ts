import { greet } from "./greet.ts";

interface Env {
  GREETING: string;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const who = new URL(request.url).searchParams.get("who") ?? "Skiff";
    return new Response(`${greet(env.GREETING, who)}\n`);
  },
};
