/**
 * Console sessions (SPEC §9): a random id per sign-in, kept in a bounded table with an expiry.
 * The cookie carries only the id; the API token never leaves the sign-in request. The table keys
 * on the id's SHA-256, so a lookup's timing says nothing about the ids it holds.
 */
import { randomToken, sha256Hex } from "../core/secret.ts";

export const SESSION_COOKIE = "outpost_session";

export interface SessionOptions {
  /** Lifetime of a session (default 12 h). */
  ttlMs?: number;
  /** Sessions at once (default 256); past it the oldest ends. */
  max?: number;
  now?: () => number;
}

export class SessionTable {
  private readonly sessions = new Map<string, number>();
  readonly ttlMs: number;
  private readonly max: number;
  private readonly now: () => number;
  /** Sessions ended early at the table bound, ever. */
  evicted = 0;

  constructor(options: SessionOptions = {}) {
    this.ttlMs = options.ttlMs ?? 12 * 3600_000;
    this.max = options.max ?? 256;
    this.now = options.now ?? Date.now;
  }

  create(): string {
    while (this.sessions.size >= this.max) {
      this.sessions.delete(this.sessions.keys().next().value!);
      this.evicted++;
    }
    const id = randomToken();
    this.sessions.set(sha256Hex(id), this.now() + this.ttlMs);
    return id;
  }

  valid(id: string | undefined): boolean {
    if (id === undefined || id.length > 128) return false;
    const key = sha256Hex(id);
    const expires = this.sessions.get(key);
    if (expires === undefined) return false;
    if (this.now() >= expires) {
      this.sessions.delete(key);
      return false;
    }
    return true;
  }

  end(id: string | undefined): void {
    if (id !== undefined && id.length <= 128) this.sessions.delete(sha256Hex(id));
  }

  get size(): number {
    return this.sessions.size;
  }
}

/** The `Set-Cookie` value for a new session (or, with an empty id, one that ends it). */
export function sessionCookie(id: string, maxAgeSeconds: number, secure: boolean): string {
  return `${SESSION_COOKIE}=${id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}` +
    (secure ? "; Secure" : "");
}

/** The session id in a `Cookie` header, if any. */
export function sessionFromCookie(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === SESSION_COOKIE) return part.slice(eq + 1).trim();
  }
  return undefined;
}
