/** Small helpers shared by everything that owns an ioredis connection. */
import type { Redis } from "ioredis";

/** QUIT lets pending replies arrive; a connection that is not up is just dropped. */
export async function quitRedis(r: Redis): Promise<void> {
  if (r.status !== "ready") return r.disconnect();
  try {
    await r.quit();
  } catch {
    r.disconnect();
  }
}
