/** Exponential backoff with full jitter: the n-th delay is random in [base, min(max, base·2ⁿ)]. */
export interface Backoff {
  next(): number;
  reset(): void;
}

export function createBackoff(
  options: { baseMs?: number; maxMs?: number; random?: () => number } = {},
): Backoff {
  const base = options.baseMs ?? 250;
  const max = options.maxMs ?? 30_000;
  const random = options.random ?? Math.random;
  let attempt = 0;
  return {
    next() {
      const cap = Math.min(max, base * 2 ** attempt);
      attempt = Math.min(attempt + 1, 30);
      return Math.round(base + random() * (cap - base));
    },
    reset() {
      attempt = 0;
    },
  };
}
