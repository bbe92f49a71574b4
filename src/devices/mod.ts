/**
 * The device registry: provisioned devices with their hashed tokens (durable, in the agent's
 * database) and what has been seen of every device (in memory: last seen, last values).
 */
import type { Message } from "../core/message.ts";
import { matchesHash, randomToken, sha256Hex } from "../core/secret.ts";
import type { LocalDatabase } from "../db/mod.ts";

export interface SeenDevice {
  id: string;
  provisioned: boolean;
  lastSeenAt: string | null;
  messages: number;
  lastValues: Record<string, unknown>;
}

const MAX_LAST_VALUES = 64;

export class DeviceRegistry {
  private readonly db: LocalDatabase;
  private readonly tokens = new Map<string, string>();
  /** token hash → device id, for tokens that identify the device by themselves. */
  private readonly byHash = new Map<string, string>();
  private readonly seen = new Map<
    string,
    { lastSeen: number; messages: number; values: Record<string, unknown> }
  >();

  constructor(db: LocalDatabase) {
    this.db = db;
    for (
      const row of db.prepare("SELECT id, token_hash FROM devices").all() as {
        id: string;
        token_hash: string;
      }[]
    ) {
      this.tokens.set(row.id, row.token_hash);
      this.byHash.set(row.token_hash, row.id);
    }
  }

  /** Creates a device with a fresh token; the token is returned once and kept only hashed. */
  create(id: string): { id: string; token: string } | { error: "exists" } {
    if (this.tokens.has(id)) return { error: "exists" };
    const token = randomToken();
    const hash = sha256Hex(token);
    this.db.transaction(() => {
      this.db.prepare("INSERT INTO devices (id, token_hash, created_at) VALUES (?, ?, ?)").run(
        id,
        hash,
        Date.now(),
      );
    });
    this.tokens.set(id, hash);
    this.byHash.set(hash, id);
    return { id, token };
  }

  isProvisioned(id: string): boolean {
    return this.tokens.has(id);
  }

  /** True when `token` is the device's own token (constant-time comparison). */
  verify(id: string, token: string): boolean {
    const hash = this.tokens.get(id);
    if (hash === undefined) {
      matchesHash(token, "0".repeat(64)); // same work either way
      return false;
    }
    return matchesHash(token, hash);
  }

  /** Finds the device a token belongs to (ThingsBoard style: the token alone identifies it). */
  findByToken(token: string): string | undefined {
    // A lookup by the token's SHA-256: timing can reveal nothing useful about a preimage.
    return this.byHash.get(sha256Hex(token));
  }

  /** Records that messages from a device arrived (called for accepted input, after commit). */
  observe(messages: readonly Message[], now: number): void {
    for (const m of messages) {
      let s = this.seen.get(m.device);
      if (!s) {
        s = { lastSeen: now, messages: 0, values: {} };
        this.seen.set(m.device, s);
      }
      s.lastSeen = now;
      s.messages++;
      if (m.kind === "telemetry" || m.kind === "attributes") {
        for (const key in m.payload) {
          if (key in s.values || Object.keys(s.values).length < MAX_LAST_VALUES) {
            s.values[key] = m.payload[key];
          }
        }
      }
    }
  }

  list(): SeenDevice[] {
    const ids = new Set([...this.tokens.keys(), ...this.seen.keys()]);
    return [...ids].sort().map((id) => {
      const s = this.seen.get(id);
      return {
        id,
        provisioned: this.tokens.has(id),
        lastSeenAt: s ? new Date(s.lastSeen).toISOString() : null,
        messages: s?.messages ?? 0,
        lastValues: s?.values ?? {},
      };
    });
  }
}
