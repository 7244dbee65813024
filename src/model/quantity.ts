/**
 * Kubernetes resource quantities ("500m", "1", "2.5", "128Mi", "1Gi", "1e9"),
 * as used by container and worker `resources.limits`.
 */

const BINARY: Readonly<Record<string, number>> = {
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};
const DECIMAL: Readonly<Record<string, number>> = {
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  "": 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
};

const QUANTITY = /^([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$/;

/** The quantity in base units (cores, bytes), or undefined when it is not one. */
export function parseQuantity(text: string | number): number | undefined {
  if (typeof text === "number") return Number.isFinite(text) ? text : undefined;
  const m = QUANTITY.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const suffix = m[2] ?? "";
  if (suffix in BINARY) return n * BINARY[suffix]!;
  if (suffix in DECIMAL) return n * DECIMAL[suffix]!;
  return n * 10 ** Number(suffix.slice(1));
}

/** CPU quantity -> millicores (rounded up, like Kubernetes). Throws RangeError with a fix. */
export function parseCpu(text: string | number): number {
  const cores = parseQuantity(text);
  if (cores === undefined) {
    throw new RangeError(
      `"${text}" is not a CPU quantity; use cores or millicores, e.g. "1", "0.5" or "500m"`,
    );
  }
  if (cores <= 0) throw new RangeError(`must be greater than 0 (got "${text}")`);
  return Math.max(1, Math.ceil(Math.round(cores * 1e9) / 1e6));
}

/** Memory quantity -> bytes (rounded up). Throws RangeError with a fix. */
export function parseMemory(text: string | number): number {
  const bytes = parseQuantity(text);
  if (bytes === undefined) {
    throw new RangeError(
      `"${text}" is not a memory quantity; use bytes with a suffix, e.g. "128Mi", "1Gi" or "500M"`,
    );
  }
  if (bytes <= 0) throw new RangeError(`must be greater than 0 (got "${text}")`);
  return Math.ceil(bytes);
}
