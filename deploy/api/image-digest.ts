/**
 * Tag-to-digest resolution of a new revision's image (Knative's revision
 * reconciler does it when a Revision is created): the write resolves the
 * template's image before its transaction, and the Revision it mints records
 * the digest in status.containerStatuses[].imageDigest, which is what every
 * agent pulls and runs, so all instances of a revision run the same bytes even
 * if the tag moves. Only registries listed in images.registries are asked
 * (a tenant cannot make the API call an address of its choosing); an image on
 * any other registry runs by tag, as a local image (docker load) must.
 */

import type { ImagesConfig } from "../../src/config/images.ts";
import type { ImageResolution } from "../../src/control/apply.ts";
import { parseImageRef, repositoryName } from "../../src/images/reference.ts";
import { resolveDigest } from "../../src/images/resolve-digest.ts";
import type { RevisionTemplate } from "../../src/model/types.ts";

/** Knative's name for the one container when the template gives none. */
const DEFAULT_CONTAINER_NAME = "user-container";

export async function resolveTemplateImage(
  template: RevisionTemplate,
  images: ImagesConfig | undefined,
): Promise<ImageResolution | undefined> {
  const container = template.spec.containers?.[0];
  if (!container || template.spec.worker) return undefined;
  const ref = parseImageRef(container.image);
  if (!ref) return undefined;
  const name = container.name ?? DEFAULT_CONTAINER_NAME;
  if (ref.digest) return { name, imageDigest: `${repositoryName(ref)}@${ref.digest}` };
  const access = images?.registries[ref.registry];
  if (!images || !access) return undefined;
  try {
    const digest = await resolveDigest(ref, { ...access, timeoutMs: images.resolveTimeoutMs });
    return { name, imageDigest: `${repositoryName(ref)}@${digest}` };
  } catch (err) {
    return {
      name,
      error: `Unable to fetch image "${container.image}": failed to resolve image to digest: ${(err as Error).message}`,
    };
  }
}
