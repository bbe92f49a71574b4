/**
 * The connectivity host around the registry: the inactivity sweep (connectionless devices go
 * offline `devices.inactivityTimeout` after their last activity) and the forwarding of every
 * change to the hub as an `event` record `{"type": "connectivity", "state", "transport"}` (SPEC
 * §10). Changes wait in a bounded queue and are stored in batches through `emit` (the outbox,
 * without the rules); a full outbox makes them wait, and past the bound the oldest are dropped
 * and counted. Nothing here throws into a transport.
 */
import type { Message } from "../core/message.ts";
import { errorMessage } from "../core/errors.ts";
import { RefusalLog } from "../core/refusal_log.ts";
import type { Telemetry } from "../telemetry/mod.ts";
import type { ConnectivityChange, DeviceRegistry } from "./registry.ts";

/** Changes waiting to be stored, at most. */
export const MAX_QUEUED_CHANGES = 10_000;
const BATCH = 1_000;

export interface ConnectivityDeps {
  registry: DeviceRegistry;
  /** Stores records for the hub as they are (resolves after commit; rejects when it cannot). */
  emit: (messages: Message[]) => Promise<void>;
  telemetry: Telemetry;
  /** How often the inactivity sweep runs (ms); default a tenth of the timeout, 100 ms to 5 s. */
  sweepEveryMs?: number;
  /** A device came online (e.g. waiting commands may go to it now). Must not throw. */
  onOnline?: (device: string) => void;
  /** Every change as it happens (the live events' `device` event). Must not throw or wait. */
  onChange?: (change: ConnectivityChange) => void;
}

export interface Connectivity {
  start(context: { signal: AbortSignal }): void;
  /** Stops the sweep; stores what waits (bounded by a short wait). Idempotent. */
  stop(): Promise<void>;
  /** Changes waiting to be stored. */
  readonly queued: number;
  /** Stores what waits now (tests). */
  flush(): Promise<void>;
}

/** The hub record for one change. */
export function connectivityRecord(change: ConnectivityChange): Message {
  return {
    device: change.device,
    kind: "event",
    ts: change.at,
    payload: { type: "connectivity", state: change.state, transport: change.transport },
    source: "agent",
  };
}

export function createConnectivity(deps: ConnectivityDeps): Connectivity {
  const { registry, telemetry } = deps;
  const log = telemetry.log;
  const changes = telemetry.metrics.family("outpost_device_connectivity_changes_total");
  const dropped = telemetry.metrics.family("outpost_device_connectivity_dropped_total");
  const onlineGauge = telemetry.metrics.family("outpost_devices_online");
  telemetry.metrics.collectors.push(() => onlineGauge.set(registry.onlineCount));
  const droppedLog = new RefusalLog();
  const failedLog = new RefusalLog();
  let queue: ConnectivityChange[] = [];
  let flushing: Promise<void> | undefined;
  let scheduled = false;
  let retryTimer: ReturnType<typeof setTimeout> | undefined;
  let sweepTimer: ReturnType<typeof setInterval> | undefined;
  let running = false;

  registry.onConnectivity = (change) => {
    changes.add(1);
    log.debug("device.connectivity", { ...change });
    if (change.state === "online") deps.onOnline?.(change.device);
    deps.onChange?.(change);
    if (queue.length >= MAX_QUEUED_CHANGES) drop(1);
    queue.push(change);
    schedule();
  };

  function drop(n: number): void {
    queue.splice(0, n);
    dropped.add(n);
    const due = droppedLog.note(n);
    if (due !== undefined) {
      log.warn("devices.connectivity_dropped", {
        dropped: due,
        max: MAX_QUEUED_CHANGES,
        why: "connectivity changes waited for the outbox past the bound; the oldest were dropped",
      });
    }
  }

  function schedule(): void {
    if (scheduled || retryTimer !== undefined || !running) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      void flush();
    });
  }

  function flush(): Promise<void> {
    if (flushing) return flushing;
    if (queue.length === 0) return Promise.resolve();
    flushing = (async () => {
      await Promise.resolve(); // `flushing` is set before the loop can finish
      try {
        while (queue.length > 0) {
          const batch = queue.splice(0, BATCH);
          try {
            await deps.emit(batch.map(connectivityRecord));
          } catch (error) {
            // Back in front, in order; the bound still holds (the oldest go first).
            queue = batch.concat(queue);
            if (queue.length > MAX_QUEUED_CHANGES) drop(queue.length - MAX_QUEUED_CHANGES);
            const n = failedLog.note();
            if (n !== undefined) {
              log.warn("devices.connectivity_waiting", {
                waiting: queue.length,
                error: errorMessage(error),
                action: "retried every second",
              });
            }
            if (running && retryTimer === undefined) {
              retryTimer = setTimeout(() => {
                retryTimer = undefined;
                schedule();
              }, 1_000);
            }
            return;
          }
        }
      } finally {
        flushing = undefined;
      }
    })();
    return flushing;
  }

  return {
    get queued() {
      return queue.length;
    },
    flush,
    start({ signal }) {
      running = true;
      const every = deps.sweepEveryMs ??
        Math.max(100, Math.min(5_000, Math.floor(registry.inactivityTimeout / 10)));
      sweepTimer = setInterval(() => {
        try {
          registry.sweep();
        } catch (error) {
          log.error("devices.sweep_failed", { error: errorMessage(error) });
        }
      }, every);
      (sweepTimer as { unref?: () => void }).unref?.();
      signal.addEventListener("abort", () => clearInterval(sweepTimer), { once: true });
      schedule();
    },
    async stop() {
      if (!running) return;
      running = false;
      clearInterval(sweepTimer);
      if (retryTimer) clearTimeout(retryTimer);
      retryTimer = undefined;
      await Promise.race([flush(), new Promise((r) => setTimeout(r, 1_000))]);
    },
  };
}
