/**
 * Bounds of the embedded broker (SPEC §14, `mqtt.broker.limits`): what one client, or many, can
 * make the agent hold in memory. Each refusal is counted in `outpost_mqtt_limited_total{limit}`
 * and logged at most once a minute per limit, with the count since the last line.
 *
 * - `maxPacketBytes`: the size of any MQTT packet, CONNECT included, checked from its fixed
 *   header as the bytes are read, before the packet is parsed or the client authenticated: a
 *   connection declaring a larger packet is closed after its first few bytes, never buffered.
 * - `maxConnections`: connections at once; one more is closed on accept.
 * - `maxRetained`: distinct retained topics; a retained publish on a new topic past the bound is
 *   delivered to current subscribers but not kept. Replacing or clearing a kept one works.
 * - `maxOfflineQueue`: QoS 1/2 messages queued per session (offline persistent sessions, and slow
 *   readers); past it the oldest queued message is dropped.
 * - `sessionExpiry`: a persistent session whose client has not come back within it is removed
 *   with its subscriptions and queue.
 *
 * aedes keeps sessions, queues and retained messages in its persistence object (in memory); the
 * bounds wrap that object's methods rather than patching aedes.
 */
import type { Socket } from "node:net";
import { BROKER_LIMIT_DEFAULTS } from "../../config/mod.ts";
import { parseDuration } from "../../core/duration.ts";
import { RefusalLog } from "../../core/refusal_log.ts";
import type { Telemetry } from "../../telemetry/mod.ts";
import { errorMessage } from "../../core/errors.ts";

export interface BrokerLimits {
  maxPacketBytes: number;
  maxConnections: number;
  maxRetained: number;
  maxOfflineQueue: number;
  /** Milliseconds. */
  sessionExpiry: number;
}

/** Persistent sessions kept while their clients are away, whatever `sessionExpiry` says. */
const MAX_AWAY_SESSIONS = 50_000;

/** Extra room over `limits.maxPayloadBytes` for a packet's topic and headers. */
export const PACKET_OVERHEAD_BYTES = 64 * 1024;

/**
 * The bounds in force: the configured ones (`mqtt.broker.limits`, all optional) over the defaults;
 * `maxPacketBytes` defaults to the payload limit plus room for topic and headers.
 */
export function brokerLimits(
  given: Partial<BrokerLimits>,
  maxPayloadBytes: number,
): BrokerLimits {
  return {
    maxPacketBytes: given.maxPacketBytes ?? maxPayloadBytes + PACKET_OVERHEAD_BYTES,
    maxConnections: given.maxConnections ?? BROKER_LIMIT_DEFAULTS.maxConnections,
    maxRetained: given.maxRetained ?? BROKER_LIMIT_DEFAULTS.maxRetained,
    maxOfflineQueue: given.maxOfflineQueue ?? BROKER_LIMIT_DEFAULTS.maxOfflineQueue,
    sessionExpiry: given.sessionExpiry ?? parseDuration(BROKER_LIMIT_DEFAULTS.sessionExpiry)!,
  };
}

export type LimitName = "packet-size" | "connections" | "retained" | "offline-queue" | "session-expiry";

/**
 * Follows MQTT's framing (a type byte, a variable-length "remaining length", then that many bytes)
 * over the bytes of a connection as they arrive, and says when a packet declares more than `max`
 * bytes. Constant memory, a few operations per chunk.
 */
export class PacketSizeGuard {
  #state = 0; // 0: type byte, 1: remaining length, 2: body
  #length = 0;
  #multiplier = 1;
  #remaining = 0;
  constructor(private readonly max: number) {}

  /** False once a packet over the bound, or a malformed length, has been seen. */
  feed(chunk: Uint8Array): boolean {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.#state === 0) {
        i++;
        this.#state = 1;
        this.#length = 0;
        this.#multiplier = 1;
      } else if (this.#state === 1) {
        const b = chunk[i++];
        this.#length += (b & 0x7f) * this.#multiplier;
        if (this.#length > this.max) return false;
        if (b & 0x80) {
          this.#multiplier *= 128;
          if (this.#multiplier > 128 ** 3) return false; // at most four length bytes
        } else {
          this.#remaining = this.#length;
          this.#state = this.#remaining === 0 ? 0 : 2;
        }
      } else {
        const take = Math.min(this.#remaining, n - i);
        i += take;
        this.#remaining -= take;
        if (this.#remaining === 0) this.#state = 0;
      }
    }
    return true;
  }
}

/** The part of aedes' persistence the bounds wrap (aedes-persistence's in-memory one). */
interface Persistence {
  storeRetained(packet: { topic: string; payload: { length: number } }): Promise<void>;
  outgoingEnqueue(sub: { clientId: string }, packet: unknown): Promise<void>;
  outgoingEnqueueCombi(subs: { clientId: string }[], packet: unknown): Promise<void>;
  outgoingClearMessageId(client: { id: string }, packet: { messageId?: number }): Promise<unknown>;
  cleanSubscriptions(client: { id: string }): Promise<void>;
}

export interface BrokerBounds {
  /** Call for every accepted socket, before aedes sees it; false: it was closed. */
  admit(socket: Socket, open: number): boolean;
  /** Wraps the broker's persistence (call once, after the broker is created). */
  wrap(persistence: unknown): void;
  /** A persistent session's client disconnected / connected. */
  offline(clientId: string): void;
  online(clientId: string): void;
  /** A clean session ended: nothing of it is kept. */
  cleaned(clientId: string): void;
  /** Removes expired sessions; call periodically. Never throws. */
  expire(): Promise<void>;
}

export function createBrokerBounds(limits: BrokerLimits, telemetry: Telemetry, now = Date.now): BrokerBounds {
  const limited = telemetry.metrics.family("outpost_mqtt_limited_total");
  const logs = new Map<LimitName, RefusalLog>();
  function hit(limit: LimitName, fields: Record<string, unknown> = {}, n = 1): void {
    limited.add(n, `{limit="${limit}"}`);
    let l = logs.get(limit);
    if (l === undefined) logs.set(limit, l = new RefusalLog(now));
    const count = l.note();
    if (count !== undefined) {
      telemetry.log.warn("mqtt.limited", { limit, count: count + n - 1, bound: boundOf(limit), ...fields });
    }
  }
  function boundOf(limit: LimitName): number {
    switch (limit) {
      case "packet-size":
        return limits.maxPacketBytes;
      case "connections":
        return limits.maxConnections;
      case "retained":
        return limits.maxRetained;
      case "offline-queue":
        return limits.maxOfflineQueue;
      case "session-expiry":
        return limits.sessionExpiry;
    }
  }

  const retained = new Set<string>();
  /** Messages queued per client id (as counted here; resynchronised when it drifts). */
  const queued = new Map<string, number>();
  /** Persistent sessions whose client is away, with when it left (insertion order = oldest first). */
  const away = new Map<string, number>();
  let store: Persistence | undefined;

  async function dropOldest(clientId: string): Promise<boolean> {
    // Queued, never-sent messages have no packet id yet: the first such is the oldest.
    const gone = await store!.outgoingClearMessageId({ id: clientId }, { messageId: undefined });
    return gone !== undefined;
  }

  async function enqueued(clientId: string): Promise<void> {
    const n = (queued.get(clientId) ?? 0) + 1;
    queued.set(clientId, n);
    if (n <= limits.maxOfflineQueue) return;
    if (await dropOldest(clientId)) {
      queued.set(clientId, n - 1);
      hit("offline-queue", { clientId: clientId.slice(0, 128) });
    } else {
      queued.set(clientId, limits.maxOfflineQueue); // counted more than were queued
    }
  }

  async function forget(clientId: string): Promise<void> {
    await store?.cleanSubscriptions({ id: clientId });
    for (let i = 0; i <= limits.maxOfflineQueue; i++) if (!(await dropOldest(clientId))) break;
    queued.delete(clientId);
  }

  return {
    admit(socket, open) {
      if (open >= limits.maxConnections) {
        hit("connections", { address: socket.remoteAddress });
        socket.destroy();
        return false;
      }
      const guard = new PacketSizeGuard(limits.maxPacketBytes);
      // With aedes reading on 'readable', 'data' sees each chunk as aedes reads it.
      const watch = (chunk: Uint8Array) => {
        if (guard.feed(chunk)) return;
        socket.off("data", watch);
        hit("packet-size", { address: socket.remoteAddress });
        socket.destroy();
      };
      socket.on("data", watch);
      return true;
    },
    wrap(persistence) {
      const p = persistence as Persistence;
      store = p;
      const storeRetained = p.storeRetained.bind(p);
      p.storeRetained = (packet) => {
        if (packet.payload.length === 0) {
          retained.delete(packet.topic);
          return storeRetained(packet);
        }
        if (!retained.has(packet.topic)) {
          if (retained.size >= limits.maxRetained) {
            hit("retained", { topic: packet.topic.slice(0, 256) });
            return Promise.resolve();
          }
          retained.add(packet.topic);
        }
        return storeRetained(packet);
      };
      const enqueue = p.outgoingEnqueue.bind(p);
      p.outgoingEnqueue = async (sub, packet) => {
        await enqueue(sub, packet);
        await enqueued(sub.clientId);
      };
      const enqueueCombi = p.outgoingEnqueueCombi.bind(p);
      p.outgoingEnqueueCombi = async (subs, packet) => {
        await enqueueCombi(subs, packet);
        for (const sub of subs) await enqueued(sub.clientId);
      };
      const clear = p.outgoingClearMessageId.bind(p);
      p.outgoingClearMessageId = async (client, packet) => {
        const gone = await clear(client, packet);
        if (gone !== undefined) {
          const n = (queued.get(client.id) ?? 0) - 1;
          if (n > 0) queued.set(client.id, n);
          else queued.delete(client.id);
        }
        return gone;
      };
    },
    offline(clientId) {
      away.delete(clientId);
      away.set(clientId, now());
      // Client ids are the client's choice: past the bound the longest-away session goes now.
      if (away.size > MAX_AWAY_SESSIONS) {
        const [oldest] = away.keys();
        away.delete(oldest);
        forget(oldest).catch((error) =>
          telemetry.log.error("mqtt.session_expiry_failed", { error: errorMessage(error) })
        );
        hit("session-expiry", { clientId: oldest.slice(0, 128), why: "too many sessions away" });
      }
    },
    cleaned(clientId) {
      queued.delete(clientId);
    },
    online(clientId) {
      away.delete(clientId);
    },
    async expire() {
      try {
        const t = now();
        for (const [clientId, since] of away) {
          if (t - since < limits.sessionExpiry) break; // oldest first
          away.delete(clientId);
          await forget(clientId);
          hit("session-expiry", { clientId: clientId.slice(0, 128) });
        }
      } catch (error) {
        telemetry.log.error("mqtt.session_expiry_failed", { error: errorMessage(error) });
      }
    },
  };
}
