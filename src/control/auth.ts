/** Bearer-token checks for the control API, compared in constant time. */
import type { Context } from "hono";
import { parseBearer, secretEquals } from "../core/secret.ts";

/** The token in `Authorization: Bearer …`, or undefined. */
export function bearer(c: Context): string | undefined {
  return parseBearer(c.req.header("authorization"));
}

export function isApiToken(candidate: string | undefined, token: string): boolean {
  return candidate !== undefined && secretEquals(candidate, token);
}

export function unauthorized(c: Context, why: string): Response {
  c.header("WWW-Authenticate", 'Bearer realm="outpost"');
  return c.json({ error: why }, 401);
}

/** Failed authentications allowed per remote address in a window before it is refused. */
export const AUTH_MAX_FAILURES = 10;
export const AUTH_WINDOW_MS = 60_000;
/** Addresses tracked at once; past it, new addresses share one bucket (still limited). */
export const AUTH_MAX_ADDRESSES = 10_000;

/**
 * Failed-authentication limit per remote address (SPEC §14): after `AUTH_MAX_FAILURES` failures
 * within a window of `AUTH_WINDOW_MS` (starting at the first failure), every request from that
 * address is refused until the window ends, even with the right token. The map is bounded.
 */
export class AuthLimiter {
  private readonly entries = new Map<string, { start: number; failures: number }>();
  private readonly now: () => number;
  private readonly maxAddresses: number;
  constructor(options: { now?: () => number; maxAddresses?: number } = {}) {
    this.now = options.now ?? Date.now;
    this.maxAddresses = options.maxAddresses ?? AUTH_MAX_ADDRESSES;
  }

  /** True while `address` is refused. */
  blocked(address: string): boolean {
    const e = this.entries.get(address) ?? this.entries.get(OVERFLOW);
    if (e === undefined) return false;
    if (this.now() - e.start >= AUTH_WINDOW_MS) return false;
    return e.failures >= AUTH_MAX_FAILURES && (this.entries.has(address) || this.full());
  }

  /** Counts a failed authentication from `address`. */
  fail(address: string): void {
    const t = this.now();
    let e = this.entries.get(address);
    if (e === undefined) {
      if (this.full()) this.prune(t);
      const key = this.full() ? OVERFLOW : address;
      e = this.entries.get(key);
      if (e === undefined) {
        e = { start: t, failures: 0 };
        this.entries.set(key, e);
      }
    }
    if (t - e.start >= AUTH_WINDOW_MS) {
      e.start = t;
      e.failures = 0;
    }
    e.failures++;
  }

  /** Addresses tracked now. */
  get size(): number {
    return this.entries.size;
  }

  private full(): boolean {
    return this.entries.size >= this.maxAddresses;
  }

  private prune(t: number): void {
    for (const [k, e] of this.entries) if (t - e.start >= AUTH_WINDOW_MS) this.entries.delete(k);
  }
}

const OVERFLOW = "\0overflow";
