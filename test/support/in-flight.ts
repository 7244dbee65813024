/**
 * A real object with one async method watched: the proxy forwards every call
 * (the object still does the work) and records the most calls of that method
 * ever in flight at once, for tests that pin how much a component overlaps.
 */
export function watchInFlight<T extends object>(
  target: T,
  method: keyof T & string,
): { proxy: T; most(): number } {
  let inFlight = 0;
  let most = 0;
  const proxy = new Proxy(target, {
    get(t, key) {
      const value = Reflect.get(t, key, t);
      if (key === method && typeof value === "function") {
        return async (...args: unknown[]) => {
          most = Math.max(most, ++inFlight);
          try {
            return await value.apply(t, args);
          } finally {
            inFlight--;
          }
        };
      }
      return typeof value === "function" ? value.bind(t) : value;
    },
  });
  return { proxy, most: () => most };
}
