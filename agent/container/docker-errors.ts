/** Reading the Docker engine's failed API calls. */

/** The readable message Docker put on a failed API call. */
export function dockerMessage(err: unknown): string {
  const e = err as { json?: { message?: string }; reason?: string; message?: string };
  return (e?.json?.message ?? e?.message ?? e?.reason ?? String(err)).trim();
}

export function dockerStatus(err: unknown): number | undefined {
  return (err as { statusCode?: number })?.statusCode;
}
