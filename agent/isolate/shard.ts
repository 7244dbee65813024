/**
 * Rendezvous (highest random weight) hashing: a revision always maps to the
 * same process, so its isolate stays warm in exactly one place, and only the
 * revisions of a removed slot would move if the slot count changed.
 */

/** FNV-1a over UTF-16 code units, then murmur3's finalizer for avalanche. */
function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The slot (0..slots-1) that owns `key`. */
export function rendezvousSlot(key: string, slots: number): number {
  let best = 0;
  let bestScore = -1;
  for (let slot = 0; slot < slots; slot++) {
    const score = hash32(`${slot}\u0000${key}`);
    if (score > bestScore) {
      bestScore = score;
      best = slot;
    }
  }
  return best;
}
