/**
 * Kubernetes resource quantities ("500m", "1.5", "128Mi", "1G", "2e3") turned
 * into the numbers Docker wants: cores for CPU, bytes for memory.
 */

const BINARY: Record<string, number> = {
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};
const DECIMAL: Record<string, number> = {
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

const QUANTITY = /^\+?(\d+(?:\.\d*)?|\.\d+)(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$/;

/** The quantity's value as a plain number, or undefined when it is not a quantity. */
export function parseQuantity(text: string): number | undefined {
  const m = QUANTITY.exec(text.trim());
  if (!m) return undefined;
  const value = Number(m[1]);
  if (m[2]) return value * 10 ** Number(m[2].slice(1));
  const suffix = m[3] ?? "";
  return value * (BINARY[suffix] ?? DECIMAL[suffix] ?? 1);
}

/** CPU cores ("500m" -> 0.5). */
export function parseCpu(text: string): number | undefined {
  return parseQuantity(text);
}

/** Memory in whole bytes ("128Mi" -> 134217728). */
export function parseMemory(text: string): number | undefined {
  const value = parseQuantity(text);
  return value === undefined ? undefined : Math.ceil(value);
}
