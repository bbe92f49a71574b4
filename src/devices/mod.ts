/**
 * The device registry: provisioned devices with their hashed tokens (durable, in the agent's
 * database) and what has been seen of every device (in memory: last seen, last values).
 */
import { RefusalLog } from "../core/refusal_log.ts";
import type { Message } from "../core/message.ts";
import { matchesHash, randomToken, sha256Hex } from "../core/secret.ts";
import type { LocalDatabase } from "../db/mod.ts";
import type { Telemetry } from "../telemetry/mod.ts";

export interface SeenDevice {
  id: string;
  provisioned: boolean;
  lastSeenAt: string | null;
  messages: number;
  lastValues: Record<string, unknown>;
}

/** Last values kept per device (distinct keys). */
export const MAX_LAST_VALUES = 64;
/** A last value larger than this (as JSON, about) is kept as a marker instead. */
export const MAX_VALUE_BYTES = 1024;
/** The last values of one device together (as JSON, about). */
export const MAX_DEVICE_VALUE_BYTES = 4096;
/** Default `devices.max`. */
export const DEFAULT_MAX_DEVICES = 10_000;

/** What a last value too large to keep becomes. */
export interface ValueMarker {
  omitted: "too-large";
  bytes: string;
}

export interface RegistryOptions {
  /** Distinct devices tracked (seen and provisioned together): past it new ids are refused. */
  max?: number;
  telemetry?: Telemetry;
  now?: () => number;
}

interface Seen {
  lastSeen: number;
  messages: number;
  values: Record<string, unknown>;
  /** Approximate JSON bytes of `values`, and their count. */
  bytes: number;
  count: number;
}

export class DeviceRegistry {
  private readonly db: LocalDatabase;
  private readonly tokens = new Map<string, string>();
  /** token hash → device id, for tokens that identify the device by themselves. */
  private readonly byHash = new Map<string, string>();
  private readonly seen = new Map<string, Seen>();
  readonly max: number;
  private readonly telemetry?: Telemetry;
  /** Distinct ids in `seen` and `tokens` together. */
  private tracked = 0;
  private refusedTotal = 0;
  private readonly refusedLog: RefusalLog;
  private readonly refusedCounter;

  constructor(db: LocalDatabase, options: RegistryOptions = {}) {
    this.db = db;
    this.max = options.max ?? DEFAULT_MAX_DEVICES;
    this.telemetry = options.telemetry;
    this.refusedLog = new RefusalLog(options.now ?? Date.now);
    this.refusedCounter = options.telemetry?.metrics.family("outpost_devices_refused_total");
    for (
      const row of db.prepare("SELECT id, token_hash FROM devices").all() as {
        id: string;
        token_hash: string;
      }[]
    ) {
      this.tokens.set(row.id, row.token_hash);
      this.tracked++;
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
    if (!this.seen.has(id)) this.tracked++;
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

  /** True when the device is provisioned or has been seen. */
  isKnown(id: string): boolean {
    return this.tokens.has(id) || this.seen.has(id);
  }

  /** Every tracked device id (seen or provisioned), unsorted. */
  ids(): string[] {
    return [...new Set([...this.tokens.keys(), ...this.seen.keys()])];
  }

  /** Distinct devices tracked now (seen or provisioned). */
  get size(): number {
    return this.tracked;
  }

  /** Messages refused by `admit()`, ever. */
  get refused(): number {
    return this.refusedTotal;
  }

  /**
   * Undefined when messages from `device` may be accepted: it is provisioned, already seen, or
   * there is room under `devices.max`; else why not (counted, logged at most once a minute).
   */
  admit(device: string): string | undefined {
    if (this.seen.has(device) || this.tokens.has(device)) return undefined;
    if (this.tracked < this.max) {
      // Take the place now: ids admitted together must not overshoot the bound before they commit.
      this.seen.set(device, { lastSeen: -1, messages: 0, values: {}, bytes: 0, count: 0 });
      this.tracked++;
      return undefined;
    }
    this.refusedTotal++;
    this.refusedCounter?.add(1);
    const refused = this.refusedLog.note();
    if (refused !== undefined) {
      this.telemetry?.log.warn("devices.limit", {
        max: this.max,
        refused,
        refusedTotal: this.refusedTotal,
        action: "messages from new device ids refused",
      });
    }
    return `Device limit reached: ${this.max} device ids are already tracked (devices.max); ` +
      `new device "${device}" refused`;
  }

  /** Records that messages from a device arrived (called for accepted input, after commit). */
  observe(messages: readonly Message[], now: number): void {
    for (const m of messages) {
      let s = this.seen.get(m.device);
      if (!s) {
        // The bound holds even for ids admitted together while the registry was nearly full.
        const provisioned = this.tokens.has(m.device);
        if (this.tracked >= this.max && !provisioned) continue;
        s = { lastSeen: now, messages: 0, values: {}, bytes: 0, count: 0 };
        this.seen.set(m.device, s);
        if (!provisioned) this.tracked++;
      }
      s.lastSeen = now;
      s.messages++;
      if (m.kind === "telemetry" || m.kind === "attributes") keepValues(s, m.payload);
    }
  }

  /**
   * Seen and provisioned devices, sorted by id: at most `limit`, starting after the id `after`.
   */
  list(options: { limit?: number; after?: string } = {}): SeenDevice[] {
    const limit = options.limit ?? Infinity;
    const after = options.after;
    let ids = [...new Set([...this.tokens.keys(), ...this.seen.keys()])];
    if (after !== undefined) ids = ids.filter((id) => id > after);
    ids.sort();
    if (ids.length > limit) ids.length = limit;
    return ids.map((id) => {
      const s = this.seen.get(id);
      return {
        id,
        provisioned: this.tokens.has(id),
        lastSeenAt: s && s.lastSeen >= 0 ? new Date(s.lastSeen).toISOString() : null,
        messages: s?.messages ?? 0,
        lastValues: s?.values ?? {},
      };
    });
  }
}

/**
 * Stores the payload's values as the device's last values: at most `MAX_LAST_VALUES` keys and
 * about `MAX_DEVICE_VALUE_BYTES` together; a value over `MAX_VALUE_BYTES` is kept as a marker,
 * and a new key that does not fit is left out.
 */
function keepValues(s: Seen, payload: Record<string, unknown>): void {
  for (const key in payload) {
    let value = payload[key];
    let size = sizeWithin(value, MAX_VALUE_BYTES);
    if (size < 0) {
      value = { omitted: "too-large", bytes: `over ${MAX_VALUE_BYTES}` } satisfies ValueMarker;
      size = 48;
    }
    size += key.length + 4;
    const had = Object.hasOwn(s.values, key);
    const old = had ? sizeWithin(s.values[key], MAX_VALUE_BYTES) + key.length + 4 : 0;
    if (!had && s.count >= MAX_LAST_VALUES) continue;
    if (s.bytes - old + size > MAX_DEVICE_VALUE_BYTES) {
      if (had) {
        delete s.values[key];
        s.bytes -= old;
        s.count--;
      }
      continue;
    }
    s.values[key] = value;
    s.bytes += size - old;
    if (!had) s.count++;
  }
}

/** About the JSON size of `value`, or -1 as soon as it passes `budget` (never walks further). */
function sizeWithin(value: unknown, budget: number): number {
  let used = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (v === null || v === undefined) used += 4;
    else if (typeof v === "string") used += v.length + 2;
    else if (typeof v === "number" || typeof v === "boolean") used += 8;
    else if (Array.isArray(v)) {
      used += 2 + v.length;
      if (used > budget) return -1;
      for (const x of v) stack.push(x);
    } else if (typeof v === "object") {
      for (const k in v as Record<string, unknown>) {
        used += k.length + 4;
        if (used > budget) return -1;
        stack.push((v as Record<string, unknown>)[k]);
      }
      used += 2;
    }
    if (used > budget) return -1;
  }
  return used;
}
