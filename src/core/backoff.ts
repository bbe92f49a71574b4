import { performance } from "node:perf_hooks";

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

/**
 * The hub link's reconnect schedule: fast while an outage is young, backing off when it lasts.
 * - For the first `fastForMs` of an outage (measured from when it began), every delay is random
 *   in [`fastMinMs`, `fastMaxMs`]: the edge tries at least once per `fastMaxMs`, so a hub that
 *   answers again is reached within that time (plus the connection's own round trips), and a
 *   fleet's attempts are spread over it.
 * - After that, the n-th delay (n = 1, 2, …) is random in [`baseMs`, min(`maxMs`, `baseMs`·2ⁿ)]
 *   (exponential growth with full jitter above the floor), up to `maxMs`.
 * - `reset()` ends the outage; the first `next()` after it starts a new one.
 */
export interface ReconnectSchedule {
  /** The delay before the next attempt; starts the outage clock when none is running. */
  next(): number;
  /** The link is up and stable: the next failure starts a new outage. */
  reset(): void;
  /** How long the current outage has lasted (ms), 0 when none. */
  outageMs(): number;
}

export function createReconnectSchedule(
  options: {
    fastForMs?: number;
    fastMinMs?: number;
    fastMaxMs?: number;
    baseMs?: number;
    maxMs?: number;
    random?: () => number;
    now?: () => number;
  } = {},
): ReconnectSchedule {
  const fastFor = options.fastForMs ?? 60_000;
  const fastMin = options.fastMinMs ?? 400;
  const fastMax = options.fastMaxMs ?? 800;
  const base = options.baseMs ?? 1_000;
  const max = Math.max(options.maxMs ?? 15_000, base);
  const random = options.random ?? Math.random;
  const now = options.now ?? (() => performance.now());
  let since: number | undefined;
  let slow = 0;
  return {
    next() {
      const t = now();
      since ??= t;
      if (t - since < fastFor) return Math.round(fastMin + random() * (fastMax - fastMin));
      slow = Math.min(slow + 1, 30);
      const cap = Math.min(max, base * 2 ** slow);
      return Math.round(base + random() * (cap - base));
    },
    reset() {
      since = undefined;
      slow = 0;
    },
    outageMs() {
      return since === undefined ? 0 : now() - since;
    },
  };
}
