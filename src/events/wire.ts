/**
 * Hooks that feed the event bus from where events originate; each is one line in the agent.
 * Nothing here waits for a client or throws into the data path.
 */
import type { Accepted, Ingest } from "../ingest/mod.ts";
import type { Logger } from "../telemetry/mod.ts";
import type { EventBus } from "./bus.ts";

/** Accepted messages (after the outbox commit) become `message` events; alarms also `alarm`. */
export function ingestWithEvents(ingest: Ingest, bus: EventBus): Ingest {
  return {
    ...ingest,
    async accept(messages, options): Promise<Accepted> {
      const result = await ingest.accept(messages, options);
      if (result.ok && bus.active) {
        try {
          for (const m of messages) {
            bus.message(m);
            if (m.kind === "alarm" || (m.kind === "event" && m.payload.alarm !== undefined)) {
              bus.publish("alarm", { device: m.device, ts: m.ts, payload: m.payload }, m.device, m.kind);
            }
          }
        } catch { /* a payload that cannot be serialised is not worth an event */ }
      }
      return result;
    },
    emit: (outputs) => ingest.emit(outputs),
    emitFrom: ingest.emitFrom?.bind(ingest),
  };
}

export interface Watched {
  hub: () => { configured: boolean; connected: boolean; error?: string; lastAckAt: string | null };
  outbox: () => unknown;
  update?: () => unknown;
  rules?: () => unknown;
}

type Level = "debug" | "info" | "warn" | "error";
type Write = (event: string, fields?: Record<string, unknown>) => void;

/**
 * Log lines become events (the logger object is patched in place): warn and error lines as `log`;
 * `rules.applied` as `rules`; the hub link's lines as `hub` with the link's state and reason;
 * `update.*` as `update` with the update's state. Fields never hold secrets (src/telemetry).
 */
export function tapLogger(log: Logger, bus: EventBus, watched: Watched): void {
  const target = log as unknown as Record<Level, Write>;
  for (const level of ["info", "warn", "error"] as const) {
    const write = target[level].bind(log);
    target[level] = (event, fields) => {
      write(event, fields);
      try {
        if (level !== "info") bus.log({ ts: new Date().toISOString(), level, event, ...fields });
        if (bus.listeners === 0) return;
        if (event === "rules.applied") bus.publish("rules", { ...fields, ...(watched.rules?.() as object) });
        else if (event === "hub.connected" || event === "hub.disconnected") bus.publish("hub", watched.hub());
        else if (event.startsWith("update.") && watched.update) bus.publish("update", watched.update());
      } catch { /* a field that cannot be serialised is not worth an event */ }
    };
  }
}

/**
 * While someone listens: `outbox` once a second, `hub` when the link goes up or down (with the
 * uplink's reason) and `update` when its state or progress changes. Returns a stop function.
 */
export function watchStatus(bus: EventBus, watched: Watched): () => void {
  let timer: ReturnType<typeof setInterval> | undefined;
  let hubKey: string | undefined;
  let updateKey: string | undefined;
  const tick = () => {
    try {
      bus.outbox(watched.outbox());
      const hub = watched.hub();
      const key = `${hub.connected}|${hub.error ?? ""}`;
      if (key !== hubKey) {
        hubKey = key;
        bus.publish("hub", hub);
      }
      if (watched.update) {
        const u = watched.update();
        const k = JSON.stringify(u);
        if (k !== updateKey) {
          if (updateKey !== undefined) bus.publish("update", u);
          updateKey = k;
        }
      }
    } catch { /* the next tick tries again */ }
  };
  bus.onListeners = (listening) => {
    if (listening && timer === undefined) {
      hubKey = undefined;
      updateKey = undefined;
      tick();
      timer = setInterval(tick, 1000);
    } else if (!listening && timer !== undefined) {
      clearInterval(timer);
      timer = undefined;
    }
  };
  return () => {
    if (timer !== undefined) clearInterval(timer);
    timer = undefined;
  };
}
