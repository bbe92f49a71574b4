/**
 * The device registry: provisioned devices with their hashed tokens (durable, in the agent's
 * database) and what has been seen of every device (in memory: last seen, last values,
 * connectivity). Everything kept per device id is bounded by `devices.max`.
 *
 * Connectivity (SPEC §10, docs/devices.md): a device is online while it has an open session
 * (`connected()` … `disconnected()`: an MQTT connection, a child announced by a gateway, a polled
 * device whose polls succeed), or, without one, while it was active (`activity()`) within
 * `inactivityTimeout`. Every change is handed to `onConnectivity` (the agent forwards it to the
 * hub as an `event` record).
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
  state: "online" | "offline";
  /** `mqtt`, `http`, `coap`, `modbus` or `gateway:<gateway id>`; null before any activity. */
  transport: string | null;
  lastActivityAt: string | null;
  lastConnectAt: string | null;
  lastDisconnectAt: string | null;
}

/** A device going online or offline. */
export interface ConnectivityChange {
  device: string;
  state: "online" | "offline";
  transport: string;
  /** When it changed (ms since the epoch). */
  at: number;
}

/** Default `devices.inactivityTimeout`: 10 minutes. */
export const DEFAULT_INACTIVITY_TIMEOUT_MS = 600_000;

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
  /** A device without an open session is offline this long after its last activity (ms). */
  inactivityTimeout?: number;
  /** Called on every change of a device's connectivity (must not throw). */
  onConnectivity?: (change: ConnectivityChange) => void;
}

interface Seen {
  lastSeen: number;
  messages: number;
  values: Record<string, unknown>;
  /** Approximate JSON bytes of `values`, and their count. */
  bytes: number;
  count: number;
  online: boolean;
  /** Open sessions (connections, gateway announcements, successful polling). */
  sessions: number;
  transport: string | null;
  lastActivity: number;
  lastConnect: number;
  lastDisconnect: number;
}

function fresh(lastSeen: number): Seen {
  return {
    lastSeen,
    messages: 0,
    values: {},
    bytes: 0,
    count: 0,
    online: false,
    sessions: 0,
    transport: null,
    lastActivity: -1,
    lastConnect: -1,
    lastDisconnect: -1,
  };
}

/** The transport a message's `source` stands for (`mqtt:<broker>` is MQTT too). */
export function transportOf(source: string): string {
  if (source.startsWith("gateway:")) return source;
  const colon = source.indexOf(":");
  return colon < 0 ? source : source.slice(0, colon);
}

const GATEWAY = "gateway:";

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
  private readonly now: () => number;
  readonly inactivityTimeout: number;
  /** Online devices without an open session: what the inactivity sweep looks at. */
  private readonly idle = new Set<string>();
  /** Gateway id → its children announced (or seen) through it while its session is open. */
  private readonly children = new Map<string, Set<string>>();
  private online = 0;
  /** Set by the agent: where connectivity changes go. */
  onConnectivity?: (change: ConnectivityChange) => void;

  constructor(db: LocalDatabase, options: RegistryOptions = {}) {
    this.db = db;
    this.max = options.max ?? DEFAULT_MAX_DEVICES;
    this.telemetry = options.telemetry;
    this.now = options.now ?? Date.now;
    this.inactivityTimeout = options.inactivityTimeout ?? DEFAULT_INACTIVITY_TIMEOUT_MS;
    this.onConnectivity = options.onConnectivity;
    this.refusedLog = new RefusalLog(this.now);
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
      this.seen.set(device, fresh(-1));
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
        s = fresh(now);
        this.seen.set(m.device, s);
        if (!provisioned) this.tracked++;
      }
      s.lastSeen = now;
      s.messages++;
      if (m.kind === "telemetry" || m.kind === "attributes") keepValues(s, m.payload);
      this.touch(m.device, s, transportOf(m.source), now);
    }
  }

  /** The device's entry, taking a place under `devices.max` for a new id (undefined: refused). */
  private entry(id: string): Seen | undefined {
    let s = this.seen.get(id);
    if (s) return s;
    if (this.admit(id) !== undefined) return undefined;
    s = this.seen.get(id);
    if (!s) {
      // Provisioned, never seen: tracked already.
      s = fresh(-1);
      this.seen.set(id, s);
    }
    return s;
  }

  private change(id: string, s: Seen, online: boolean, transport: string, at: number): void {
    if (s.online === online) return;
    s.online = online;
    this.online += online ? 1 : -1;
    try {
      this.onConnectivity?.({ device: id, state: online ? "online" : "offline", transport, at });
    } catch { /* a listener never breaks the data path */ }
  }

  /** Activity of a device: online now, and (without a session) until the inactivity timeout. */
  private touch(id: string, s: Seen, transport: string, now: number): void {
    s.lastActivity = now;
    if (s.sessions > 0) return;
    if (transport.startsWith(GATEWAY)) {
      // A child named by its gateway is connected through it (as ThingsBoard does).
      this.connectChild(id, s, transport, now);
      return;
    }
    s.transport = transport;
    this.idle.add(id);
    this.change(id, s, true, transport, now);
  }

  private connectChild(id: string, s: Seen, transport: string, now: number): void {
    const gateway = transport.slice(GATEWAY.length);
    let set = this.children.get(gateway);
    if (set?.has(id)) return;
    // A child has one gateway at a time (so every gateway's children together stay within
    // devices.max): announced by another one, it moves.
    const previous = s.transport?.startsWith(GATEWAY) ? s.transport.slice(GATEWAY.length) : undefined;
    const old = previous === undefined ? undefined : this.children.get(previous);
    if (old?.delete(id)) {
      s.sessions--;
      if (old.size === 0) this.children.delete(previous!);
    }
    if (!set) this.children.set(gateway, set = new Set());
    set.add(id);
    s.sessions++;
    s.lastConnect = now;
    s.transport = transport;
    this.idle.delete(id);
    this.change(id, s, true, transport, now);
  }

  /**
   * A connectionless device (HTTP, CoAP, …) was active: online until `inactivityTimeout` passes
   * without activity. False when a new id is refused under `devices.max`.
   */
  activity(id: string, transport: string): boolean {
    const s = this.entry(id);
    if (!s) return false;
    this.touch(id, s, transport, this.now());
    return true;
  }

  /**
   * A session of the device opened (an MQTT connection, a gateway's `connect`, a first successful
   * poll): online until every session closed. A gateway child (`gateway:<id>`) has at most one
   * session per gateway. False when a new id is refused under `devices.max`.
   */
  connected(id: string, transport: string): boolean {
    const s = this.entry(id);
    if (!s) return false;
    const now = this.now();
    s.lastActivity = now;
    if (transport.startsWith(GATEWAY)) {
      this.connectChild(id, s, transport, now);
      return true;
    }
    s.sessions++;
    s.lastConnect = now;
    s.transport = transport;
    this.idle.delete(id);
    this.change(id, s, true, transport, now);
    return true;
  }

  /**
   * A session of the device closed: offline once none is left (whatever its last activity). When
   * the device is a gateway and its last session closed, its children go offline too.
   */
  disconnected(id: string, transport: string): void {
    const s = this.seen.get(id);
    const now = this.now();
    if (s) {
      let closed = true;
      if (transport.startsWith(GATEWAY)) {
        const set = this.children.get(transport.slice(GATEWAY.length));
        closed = set?.delete(id) ?? false;
        if (set && set.size === 0) this.children.delete(transport.slice(GATEWAY.length));
      }
      if (closed && s.sessions > 0) {
        s.sessions--;
        s.lastDisconnect = now;
        if (s.sessions === 0) {
          this.idle.delete(id);
          this.change(id, s, false, transport, now);
        }
      }
    }
    if (!transport.startsWith(GATEWAY) && (s === undefined || s.sessions === 0)) {
      const set = this.children.get(id);
      if (set) { for (const child of [...set]) this.disconnected(child, GATEWAY + id); }
    }
  }

  /** The gateway a device is connected through now, if any. */
  gatewayOf(id: string): string | undefined {
    const t = this.seen.get(id)?.transport;
    if (!t?.startsWith(GATEWAY)) return undefined;
    const gateway = t.slice(GATEWAY.length);
    return this.children.get(gateway)?.has(id) ? gateway : undefined;
  }

  /** The children connected through a gateway now. */
  childrenOf(gateway: string): string[] {
    return [...this.children.get(gateway) ?? []];
  }

  /** The last values held for a device (telemetry and attributes together). */
  lastValues(id: string): Record<string, unknown> {
    return this.seen.get(id)?.values ?? {};
  }

  /** Devices online now. */
  get onlineCount(): number {
    return this.online;
  }

  /** Takes offline every device without a session whose last activity is `inactivityTimeout` old. */
  sweep(): number {
    const now = this.now();
    let n = 0;
    for (const id of this.idle) {
      const s = this.seen.get(id);
      if (!s || s.sessions > 0) {
        this.idle.delete(id);
        continue;
      }
      if (now - s.lastActivity >= this.inactivityTimeout) {
        this.idle.delete(id);
        this.change(id, s, false, s.transport ?? "unknown", now);
        n++;
      }
    }
    return n;
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
        state: s?.online ? "online" : "offline",
        transport: s?.transport ?? null,
        lastActivityAt: iso(s?.lastActivity),
        lastConnectAt: iso(s?.lastConnect),
        lastDisconnectAt: iso(s?.lastDisconnect),
      };
    });
  }
}

function iso(ms: number | undefined): string | null {
  return ms === undefined || ms < 0 ? null : new Date(ms).toISOString();
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
  // Most values are numbers, booleans or short strings: no walk for them.
  if (typeof value === "number" || typeof value === "boolean") return 8 > budget ? -1 : 8;
  if (typeof value === "string") return value.length + 2 > budget ? -1 : value.length + 2;
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
