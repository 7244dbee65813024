/**
 * Builds the test images under test/images/ locally (no registry, no base
 * image): the C sources are compiled on the host with `gcc -static` and copied
 * into a `FROM scratch` image. Tags carry a hash of the sources and build
 * flags, so a repeated run (or a second test file in the same run) finds the
 * image already built and reuses it.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import Docker from "dockerode";

const run = promisify(execFile);
const IMAGES_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "images");
const CFLAGS = ["-static", "-O2", "-pthread", "-Wall"];

interface ImageRecipe {
  /** Folder under test/images/ holding `<name>.c` and a Dockerfile. */
  name: string;
  repository: string;
}

const HELLO: ImageRecipe = { name: "hello", repository: "skiff-test/hello" };

const built = new Map<string, Promise<string>>();

/** The hello/autoscale test image, built at most once per process; resolves to its tag. */
export function helloImage(docker: Docker = new Docker()): Promise<string> {
  return buildOnce(docker, HELLO);
}

/** The hello image running as root (USER 0), for runAsNonRoot tests; built once per process. */
export function helloRootImage(docker: Docker = new Docker()): Promise<string> {
  let pending = built.get("hello-root");
  if (!pending) {
    pending = helloImage(docker).then((hello) => ensureRootVariant(docker, hello));
    built.set("hello-root", pending);
    pending.catch(() => built.delete("hello-root"));
  }
  return pending;
}

async function ensureRootVariant(docker: Docker, hello: string): Promise<string> {
  const tag = `skiff-test/hello-root:${hello.split(":").at(-1)}`;
  if (await exists(docker, tag)) return tag;
  const work = await mkdtemp(join(tmpdir(), "skiff-image-hello-root-"));
  try {
    await writeFile(join(work, "Dockerfile"), `FROM ${hello}\nUSER 0:0\n`);
    await buildIn(docker, work, ["Dockerfile"], tag, "hello-root");
    return tag;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** A reference that is certainly not present locally (for "image not found" tests). */
export function missingImage(): string {
  return `skiff-test/missing:${randomBytes(4).toString("hex")}`;
}

function buildOnce(docker: Docker, recipe: ImageRecipe): Promise<string> {
  let pending = built.get(recipe.name);
  if (!pending) {
    pending = ensureBuilt(docker, recipe);
    built.set(recipe.name, pending);
    pending.catch(() => built.delete(recipe.name));
  }
  return pending;
}

async function ensureBuilt(docker: Docker, recipe: ImageRecipe): Promise<string> {
  const dir = join(IMAGES_DIR, recipe.name);
  const source = await readFile(join(dir, `${recipe.name}.c`));
  const dockerfile = await readFile(join(dir, "Dockerfile"));
  const hash = createHash("sha256")
    .update(source)
    .update("\0")
    .update(dockerfile)
    .update("\0")
    .update(CFLAGS.join(" "))
    .digest("hex")
    .slice(0, 12);
  const tag = `${recipe.repository}:${hash}`;
  if (await exists(docker, tag)) return tag;

  const work = await mkdtemp(join(tmpdir(), `skiff-image-${recipe.name}-`));
  try {
    await run("gcc", [...CFLAGS, "-o", join(work, recipe.name), join(dir, `${recipe.name}.c`)]);
    await copyFile(join(dir, "Dockerfile"), join(work, "Dockerfile"));
    await buildIn(docker, work, ["Dockerfile", recipe.name], tag, recipe.name);
    return tag;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function buildIn(
  docker: Docker,
  context: string,
  src: string[],
  tag: string,
  label: string,
): Promise<void> {
  const stream = await docker.buildImage(
    { context, src },
    { t: tag, rm: true, forcerm: true, labels: { "skiff.test-image": label } },
  );
  const output = await new Promise<Array<{ error?: string }>>((resolve, reject) => {
    docker.modem.followProgress(stream, (err: Error | null, out: Array<{ error?: string }>) =>
      err ? reject(err) : resolve(out),
    );
  });
  const failed = output.find((line) => line.error);
  if (failed) throw new Error(`docker build of ${tag} failed: ${failed.error}`);
  if (!(await exists(docker, tag))) throw new Error(`docker build of ${tag} produced no image`);
}

async function exists(docker: Docker, ref: string): Promise<boolean> {
  try {
    await docker.getImage(ref).inspect();
    return true;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return false;
    throw err;
  }
}
