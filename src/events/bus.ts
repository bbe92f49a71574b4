/**
 * The live event bus behind `GET /api/v1/events` (SPEC §9).
 *
 * Publishing never waits for a client: an event is serialised once, stored in a bounded ring (for
 * `Last-Event-ID`) and appended to each matching client's bounded queue, O(1) per client. A client
 * whose queue is full loses the event; the count reaches it as a `dropped` event before the next
 * event it does receive. Message events are recorded only while someone listens (or listened in
 * the last minute, so a reconnecting client can resume), so an agent nobody watches pays one
 * comparison per message.
 */

import type { Metrics } from "../telemetry/mod.ts";

export const EVENT_NAMES = ["message", "device", "hub", "alarm", "rules", "update", "outbox", "log"] as const;
export type EventName = typeof EVENT_NAMES[number];

/** Message payloads in events are cut at this many characters of JSON. */
export const MESSAGE_PAYLOAD_LIMIT = 4096;

export interface BusEvent {
  readonly id: number;
  readonly name: EventName;
  readonly device: string | undefined;
  readonly kind: string | undefined;
  /** The `data:` line, JSON. */
  readonly data: string;
  /** The event's SSE frame as bytes, made once by the first stream that sends it and shared. */
  wire?: Uint8Array;
}

export interface EventFilter {
  device?: { test(name: string): boolean };
  /** Event names or message kinds (`telemetry`, `attributes`, `event`). */
  kinds?: ReadonlySet<string>;
}

export interface EventBusOptions {
  /** Events kept for `Last-Event-ID` (default 1,024). */
  ringSize?: number;
  /** Events queued per client before it starts losing them (default 1,024). */
  queueSize?: number;
  /** Clients at once (default 32); past it a new stream is refused. */
  maxClients?: number;
  now?: () => number;
}

export class EventClient {
  readonly queue: (BusEvent | undefined)[];
  head = 0;
  length = 0;
  dropped = 0;
  droppedTotal = 0;
  private wake: (() => void) | undefined;
  closed = false;

  constructor(readonly filter: EventFilter, size: number) {
    this.queue = new Array(size);
  }

  matches(e: BusEvent): boolean {
    const f = this.filter;
    if (f.device !== undefined && (e.device === undefined || !f.device.test(e.device))) return false;
    if (f.kinds !== undefined && !f.kinds.has(e.name) && (e.kind === undefined || !f.kinds.has(e.kind))) {
      return false;
    }
    return true;
  }

  /** O(1); never blocks. */
  push(e: BusEvent): void {
    const size = this.queue.length;
    if (this.length === size) {
      this.dropped++;
      this.droppedTotal++;
    } else {
      this.queue[(this.head + this.length) % size] = e;
      this.length++;
    }
    const w = this.wake;
    if (w !== undefined) {
      this.wake = undefined;
      w();
    }
  }

  /** Takes everything queued (oldest first). */
  take(): BusEvent[] {
    const out: BusEvent[] = [];
    const size = this.queue.length;
    while (this.length > 0) {
      out.push(this.queue[this.head]!);
      this.queue[this.head] = undefined;
      this.head = (this.head + 1) % size;
      this.length--;
    }
    return out;
  }

  /** Resolves when something is queued, the client is closed, or after `ms`. */
  wait(ms: number): Promise<void> {
    if (this.length > 0 || this.dropped > 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  close(): void {
    this.closed = true;
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}

export class EventBus {
  private readonly ring: (BusEvent | undefined)[];
  private nextId = 1;
  private readonly clients = new Set<EventClient>();
  private readonly queueSize: number;
  readonly maxClients: number;
  private readonly now: () => number;
  private lastListenerAt = -Infinity;
  private lastOutboxAt = -Infinity;
  /** Called when the first client arrives / the last one leaves (e.g. to run the outbox timer). */
  onListeners?: (listening: boolean) => void;
  refusedClients = 0;

  constructor(options: EventBusOptions = {}) {
    this.ring = new Array(options.ringSize ?? 1024);
    this.queueSize = options.queueSize ?? 1024;
    this.maxClients = options.maxClients ?? 32;
    this.now = options.now ?? Date.now;
  }

  /** The id of the oldest event the ring still holds (the next id when it is empty). */
  get oldestId(): number {
    return Math.max(1, this.nextId - this.ring.length);
  }

  get listeners(): number {
    return this.clients.size;
  }

  /** True while message events are worth recording. */
  get active(): boolean {
    return this.clients.size > 0 || this.now() - this.lastListenerAt < 60_000;
  }

  /** A warn or error line, as an event while someone listens (the lines are kept in the log ring). */
  log(line: Record<string, unknown>): void {
    if (this.clients.size > 0) this.publish("log", line);
  }

  publish(name: EventName, data: unknown, device?: string, kind?: string): void {
    const e: BusEvent = { id: this.nextId++, name, device, kind, data: JSON.stringify(data) };
    this.ring[e.id % this.ring.length] = e;
    for (const c of this.clients) if (c.matches(e)) c.push(e);
  }

  /** An accepted message; the payload is cut at {@link MESSAGE_PAYLOAD_LIMIT} characters of JSON. */
  message(m: { device: string; kind: string; ts: number; payload: unknown; source?: string }): void {
    if (!this.active) return;
    let payload = JSON.stringify(m.payload);
    let truncated = false;
    if (payload.length > MESSAGE_PAYLOAD_LIMIT) {
      payload = JSON.stringify(payload.slice(0, MESSAGE_PAYLOAD_LIMIT));
      truncated = true;
    }
    const data = `{"device":${JSON.stringify(m.device)},"kind":${JSON.stringify(m.kind)},"ts":${m.ts},` +
      `"source":${JSON.stringify(m.source ?? null)},"payload":${payload}${
        truncated ? ',"truncated":true' : ""
      }}`;
    const e: BusEvent = { id: this.nextId++, name: "message", device: m.device, kind: m.kind, data };
    this.ring[e.id % this.ring.length] = e;
    for (const c of this.clients) if (c.matches(e)) c.push(e);
  }

  /** Outbox statistics, at most once a second. */
  outbox(stats: unknown): void {
    const t = this.now();
    if (t - this.lastOutboxAt < 1000) return;
    this.lastOutboxAt = t;
    this.publish("outbox", stats);
  }

  /**
   * A new client. With `lastEventId`, the events after it still in the ring are queued first
   * (a gap beyond the ring is reported as `dropped`). Undefined when at the client bound.
   */
  subscribe(filter: EventFilter, lastEventId?: number): EventClient | undefined {
    if (this.clients.size >= this.maxClients) {
      this.refusedClients++;
      return undefined;
    }
    const client = new EventClient(filter, this.queueSize);
    if (lastEventId !== undefined && lastEventId < this.nextId - 1) {
      const oldest = Math.max(1, this.nextId - this.ring.length);
      if (lastEventId + 1 < oldest) client.dropped += oldest - lastEventId - 1;
      for (let id = Math.max(lastEventId + 1, oldest); id < this.nextId; id++) {
        const e = this.ring[id % this.ring.length];
        if (e !== undefined && e.id === id && client.matches(e)) client.push(e);
      }
    }
    this.clients.add(client);
    if (this.clients.size === 1) this.onListeners?.(true);
    return client;
  }

  private droppedGone = 0;

  stats(): { clients: number; queuedMax: number; dropped: number; refused: number } {
    let queuedMax = 0;
    let dropped = this.droppedGone;
    for (const c of this.clients) {
      if (c.length > queuedMax) queuedMax = c.length;
      dropped += c.droppedTotal;
    }
    return { clients: this.clients.size, queuedMax, dropped, refused: this.refusedClients };
  }

  unsubscribe(client: EventClient): void {
    if (!this.clients.delete(client)) return;
    this.droppedGone += client.droppedTotal;
    client.close();
    this.lastListenerAt = this.now();
    if (this.clients.size === 0) this.onListeners?.(false);
  }

  close(): void {
    for (const c of [...this.clients]) this.unsubscribe(c);
  }
}

/**
 * `?device=<glob>` (`*` any run, `?` one character) as a matcher. Greedy matching with one
 * backtrack point, O(pattern × name): a hostile pattern cannot make it slow (a RegExp could).
 */
export function globMatcher(glob: string): { test(name: string): boolean } {
  return {
    test(name) {
      let p = 0, n = 0, star = -1, mark = 0;
      while (n < name.length) {
        if (p < glob.length && (glob[p] === "?" || glob[p] === name[n])) {
          p++;
          n++;
        } else if (p < glob.length && glob[p] === "*") {
          star = p++;
          mark = n;
        } else if (star >= 0) {
          p = star + 1;
          n = ++mark;
        } else return false;
      }
      while (p < glob.length && glob[p] === "*") p++;
      return p === glob.length;
    },
  };
}

/** Parses the query of `GET /api/v1/events`. */
export function parseFilter(device: string | undefined, kind: string | undefined): EventFilter {
  const f: EventFilter = {};
  if (device !== undefined && device !== "") f.device = globMatcher(device.slice(0, 256));
  if (kind !== undefined && kind !== "") f.kinds = new Set(kind.split(",").slice(0, 16));
  return f;
}

/** Gauges for `/metrics`: streams open, the fullest queue, events lost by slow streams, streams refused. */
export function collectEventMetrics(bus: EventBus, metrics: Metrics): void {
  const s = bus.stats();
  metrics.family("outpost_live_streams").set(s.clients);
  metrics.family("outpost_live_queue_max").set(s.queuedMax);
  metrics.family("outpost_live_dropped").set(s.dropped);
  metrics.family("outpost_live_refused").set(s.refused);
}
