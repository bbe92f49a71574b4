/**
 * Delivery: a pending command goes to its device as soon as something listens for it: an MQTT
 * subscription or external broker (`deliver`), or an HTTP long poll waiting here.
 */
import { errorMessage } from "../core/errors.ts";
import type { Logger } from "../telemetry/mod.ts";
import type { DeviceCommand } from "./parse.ts";
import type { CommandRow, CommandStore } from "./store.ts";
import { toCommand } from "./view.ts";

interface Poller {
  resolve(commands: DeviceCommand[]): void;
}

export interface Delivery {
  /** Hands a pending command to its device if it listens now; true when delivered. */
  tryDeliver(row: CommandRow): boolean;
  /** Something may now listen for `device`'s commands (undefined: any device); delivered soon after. */
  listening(device: string | undefined): void;
  /** The device's waiting commands, now or within `waitMs`; they count as delivered over HTTP. */
  poll(device: string, waitMs: number, signal?: AbortSignal, limit?: number): Promise<DeviceCommand[]>;
  /** Open polls answer with no commands; new polls answer at once. */
  stop(): void;
  start(): void;
}

export function createDelivery(
  store: CommandStore,
  deps: { deliver?: (command: DeviceCommand) => string | undefined; log: Logger; now: () => number },
): Delivery {
  const { log, now } = deps;
  const pollers = new Map<string, Poller[]>();
  let listenAll = false;
  const listenFor = new Set<string>();
  let flushScheduled = false;
  let running = false;

  function takePoller(device: string): Poller | undefined {
    const list = pollers.get(device);
    const p = list?.shift();
    if (list && list.length === 0) pollers.delete(device);
    return p;
  }

  function tryDeliver(row: CommandRow): boolean {
    if (row.state !== "pending" || row.deadline <= now()) return false;
    const command = toCommand(row);
    let via: string | undefined;
    try {
      via = deps.deliver?.(command);
    } catch (error) {
      log.warn("command.deliver_failed", { id: row.id, device: row.device, error: errorMessage(error) });
    }
    if (via !== undefined) {
      store.markDelivered(row.id, via, now());
      log.debug("command.delivered", { id: row.id, device: row.device, via });
      return true;
    }
    const poller = takePoller(row.device);
    if (poller && store.markDelivered(row.id, "http", now())) {
      log.debug("command.delivered", { id: row.id, device: row.device, via: "http" });
      poller.resolve([command]);
      return true;
    }
    return false;
  }

  function flushListening(): void {
    flushScheduled = false;
    if (!running) return;
    const all = listenAll;
    const devices = [...listenFor];
    listenAll = false;
    listenFor.clear();
    try {
      if (all) {
        for (const row of store.pending(undefined, 1000)) tryDeliver(row);
      } else {
        for (const d of devices) for (const row of store.pending(d, 100)) tryDeliver(row);
      }
    } catch (error) {
      log.error("command.store_failed", { error: errorMessage(error) });
    }
  }

  return {
    tryDeliver,
    start() {
      running = true;
    },
    stop() {
      running = false;
      for (const list of pollers.values()) for (const p of list) p.resolve([]);
      pollers.clear();
    },
    listening(device) {
      if (device === undefined) listenAll = true;
      else listenFor.add(device);
      if (flushScheduled) return;
      flushScheduled = true;
      setImmediate(flushListening);
    },
    poll(device, waitMs, signal, limit = 100) {
      const t = now();
      const out: DeviceCommand[] = [];
      for (const row of store.pending(device, Math.min(100, limit))) {
        if (out.length >= limit) break;
        if (row.deadline > t && store.markDelivered(row.id, "http", t)) out.push(toCommand(row));
      }
      if (out.length > 0 || waitMs <= 0 || !running || signal?.aborted) return Promise.resolve(out);
      return new Promise((resolve) => {
        const poller: Poller = {
          resolve(commands) {
            clearTimeout(timer);
            signal?.removeEventListener("abort", onAbort);
            resolve(commands);
          },
        };
        const remove = () => {
          const list = pollers.get(device);
          if (!list) return;
          const i = list.indexOf(poller);
          if (i >= 0) list.splice(i, 1);
          if (list.length === 0) pollers.delete(device);
        };
        const onAbort = () => {
          remove();
          poller.resolve([]);
        };
        const timer = setTimeout(onAbort, waitMs);
        signal?.addEventListener("abort", onAbort, { once: true });
        const list = pollers.get(device) ?? [];
        list.push(poller);
        pollers.set(device, list);
      });
    },
  };
}
