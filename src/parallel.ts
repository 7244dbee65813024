/**
 * Run `fn` over `items` with at most `limit` calls in flight, started in the
 * items' order; resolves once every call has ended. `fn` owns its errors: a
 * rejection rejects the whole at once while the calls already running go on.
 */
export async function inParallel<T>(
  items: Iterable<T>,
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  const next = items[Symbol.iterator]();
  // next() by hand: a for-of that ends early (a throw) closes a generator for every worker.
  const worker = async () => {
    for (let r = next.next(); !r.done; r = next.next()) await fn(r.value);
  };
  await Promise.all(Array.from({ length: Math.max(1, limit) }, worker));
}
