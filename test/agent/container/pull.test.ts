/**
 * ContainerRuntime pulling from a real registry (Debian's docker-registry on
 * 127.0.0.1 with htpasswd users): the credentials of the image's registry
 * host, progress heard while the start waits, and a pull refused for wrong
 * credentials reported as ImagePullFailed.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { InstanceError } from "../../../agent/errors.ts";
import { pushVariant, startRegistry, type TestRegistry } from "../../support/registry.ts";
import { createHarness, type Harness } from "./harness.ts";

let h: Harness;
let registry: TestRegistry;
beforeAll(async () => {
  h = await createHarness("pull");
  registry = await startRegistry();
}, 60_000);
afterEach(() => h.cleanup());
afterAll(async () => {
  await h?.cleanup();
  await registry?.stop();
});

describe("ContainerRuntime pulls", () => {
  test("pulls a missing image with its registry's credentials, telling each waiting start how far it got", async () => {
    const ref = `${registry.host}/skiff/pulled:v1`;
    const digest = await pushVariant(h.docker, registry, h.image, ref);
    const rt = h.runtime({ registries: { [registry.host]: registry.user } });
    const heard: Array<{ instanceId: string; message: string }> = [];
    rt.on("pulling", (e) => heard.push(e));
    const spec = h.spec({ container: { image: ref } });
    const started = await rt.start(spec);
    expect(started.image.digest).toBe(`${registry.host}/skiff/pulled@${digest}`);
    expect(heard[0]).toEqual({ instanceId: spec.instanceId, message: `pulling image ${ref}` });
  });

  test("wrong credentials fail the start with ImagePullFailed and the engine's reason", async () => {
    const ref = `${registry.host}/skiff/guarded:v1`;
    await pushVariant(h.docker, registry, h.image, ref);
    const rt = h.runtime({
      registries: { [registry.host]: { username: registry.user.username, password: "wrong" } },
    });
    const err = await rt.start(h.spec({ container: { image: ref } })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(InstanceError);
    expect((err as InstanceError).failure.reason).toBe("ImagePullFailed");
    expect((err as InstanceError).message).toMatch(
      new RegExp(
        `^pulling image ${ref.replaceAll(".", "\\.")} failed: .*(unauthorized|authentication required)`,
      ),
    );
  });
});
