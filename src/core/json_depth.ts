/** How deep JSON may nest, checked on the raw bytes before anything parses them. */

/** Deepest JSON nesting a payload may have (objects and arrays, the outermost counting 1). */
export const MAX_DEPTH = 64;

/**
 * The byte offset where the raw JSON first nests deeper than `MAX_DEPTH`, or -1. One pass over
 * the bytes before anything is parsed, so a hostile payload is never parsed (or later
 * serialised) recursively: brackets inside strings do not count, escapes are skipped.
 */
export function depthOverBytes(b: Uint8Array): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < b.length; i++) {
    const c = b[i];
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > MAX_DEPTH) return i;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return -1;
}
