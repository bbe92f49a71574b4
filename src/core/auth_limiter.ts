/**
 * Failed-authentication limits per remote address (SPEC §14), shared by every door that checks a
 * secret: the agent's API and device tokens, the broker's CONNECT, the hub's link and its API.
 */

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

/** The address part of a gRPC peer (`ipv4:1.2.3.4:5678`, `ipv6:[::1]:5678`, `1.2.3.4:5678`). */
export function peerAddress(peer: string): string {
  const rest = peer.replace(/^ipv[46]:/, "");
  const bracket = /^\[([^\]]+)\]/.exec(rest);
  if (bracket) return bracket[1];
  const colon = rest.lastIndexOf(":");
  return colon > 0 && rest.indexOf(":") === colon ? rest.slice(0, colon) : rest;
}
