/**
 * Modbus TCP polling (SPEC §10): each `modbus[]` entry is a device whose server is read every
 * `interval`; each poll becomes one telemetry message `{<register name>: value, …}` through the
 * rules and the outbox, like any device's. A command `modbus.write` `{name, value}` writes a
 * holding register or a coil and answers `{name, value}` or the error (with the Modbus
 * exception code when the server gave one).
 *
 * Invariants:
 * - Polls are asynchronous socket I/O with timeouts: nothing here blocks the event loop, and a
 *   server that does not answer costs one timer per device.
 * - Polls keep their rhythm: the n-th poll is due at start + n·interval; a poll that overran
 *   skips the ticks it missed instead of bunching up. A poll's message goes to the outbox in
 *   poll order without holding up the next poll (up to two may wait for a slow commit).
 * - A failed poll makes the device offline (once, logged) and the server is retried with
 *   exponential backoff (full jitter, at most a minute) until a poll succeeds again; nothing a
 *   server does stops the agent.
 */
import type { Component } from "../../core/component.ts";
import { createBackoff } from "../../core/backoff.ts";
import { errorMessage } from "../../core/errors.ts";
import type { Message } from "../../core/message.ts";
import { NO_PRESENCE, type Presence } from "../../core/presence.ts";
import type { Ingest } from "../../ingest/mod.ts";
import type { Telemetry } from "../../telemetry/mod.ts";
import { connectModbus, type ModbusConnection, ModbusError } from "./client.ts";
import {
  decodeAll,
  encode,
  planReads,
  type Read,
  type Register,
  type RegisterConfig,
  resolveRegister,
} from "./registers.ts";

export { decode, decodeAll, encode, planReads, resolveRegister } from "./registers.ts";
export type { Read, Register, RegisterConfig, RegisterType, Table } from "./registers.ts";

/** One polled device, as the config schema gives it (durations in ms). */
export interface ModbusDeviceConfig {
  device: string;
  host: string;
  port: number;
  unitId: number;
  interval: number;
  timeout: number;
  registers: RegisterConfig[];
}

export interface ModbusCommandHooks {
  /** The answer to command `id`, stored before this returns. */
  answer(device: string, id: string, raw: Uint8Array, via: string): unknown;
  /** `device` listens for its commands: the commands module delivers the pending ones. */
  listening(device: string): void;
}

export interface ModbusDeps {
  ingest: Ingest;
  telemetry: Telemetry;
  commands?: ModbusCommandHooks;
  presence?: Presence;
  /** Wall clock for message times. */
  now?: () => number;
  /** Monotonic clock for the poll rhythm. */
  monotonic?: () => number;
}

export interface ModbusTransport extends Component {
  /** Takes a command for a polled device (`"modbus"`), else undefined. */
  deliverCommand(
    command: { id: string; device: string; method: string; params: unknown },
  ): string | undefined;
  /** Each device's state: `online` while its polls succeed. */
  states(): Record<string, "online" | "offline" | "unknown">;
}

/** The command method a Modbus device takes. */
export const MODBUS_WRITE = "modbus.write";
/** Longest wait between attempts at a server that does not answer. */
const MAX_BACKOFF_MS = 60_000;
/** Polls of one device whose message may wait for the outbox while the next poll runs. */
const MAX_STORING = 2;

const encoder = new TextEncoder();

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal.addEventListener("abort", done, { once: true });
  });
}

interface Poller {
  readonly config: ModbusDeviceConfig;
  readonly registers: Map<string, Register>;
  state: "online" | "offline" | "unknown";
  run(signal: AbortSignal): Promise<void>;
  write(
    name: string,
    value: unknown,
  ): Promise<{ ok: true; payload: unknown } | { ok: false; error: Record<string, unknown> }>;
  close(): void;
}

export function createModbusTransport(
  devices: readonly ModbusDeviceConfig[],
  deps: ModbusDeps,
): ModbusTransport {
  const { telemetry } = deps;
  const log = telemetry.log;
  const now = deps.now ?? Date.now;
  const monotonic = deps.monotonic ?? (() => performance.now());
  const presence = deps.presence ?? NO_PRESENCE;
  const polls = telemetry.metrics.family("outpost_modbus_polls_total");
  const pollers = new Map<string, Poller>();
  let controller: AbortController | undefined;
  let loops: Promise<void>[] = [];

  function createPoller(config: ModbusDeviceConfig): Poller {
    const registers = config.registers.map(resolveRegister);
    const reads: Read[] = planReads(registers);
    const server = `${config.host}:${config.port}`;
    const backoff = createBackoff({ baseMs: Math.min(config.interval, 1_000), maxMs: MAX_BACKOFF_MS });
    let connection: ModbusConnection | undefined;
    let connecting: Promise<ModbusConnection> | undefined;
    /** The last poll's message on its way to the outbox (a chain: stored in poll order). */
    let storing: Promise<void> = Promise.resolve();
    let storingCount = 0;

    function connect(): Promise<ModbusConnection> {
      if (connection?.usable) return Promise.resolve(connection);
      connection?.close();
      connection = undefined;
      connecting ??= connectModbus({
        host: config.host,
        port: config.port,
        unitId: config.unitId,
        timeoutMs: config.timeout,
      }).then((c) => (connection = c)).finally(() => (connecting = undefined));
      return connecting;
    }

    function online(): void {
      presence.active(config.device, "modbus");
      if (poller.state === "online") return;
      poller.state = "online";
      presence.up(config.device, "modbus");
      log.info("modbus.online", { device: config.device, server });
    }

    function offline(error: unknown, retryInMs: number): void {
      if (poller.state === "offline") return;
      poller.state = "offline";
      presence.down(config.device, "modbus");
      log.warn("modbus.offline", { device: config.device, server, error: errorMessage(error), retryInMs });
    }

    /** One poll: read everything, store one message. False when the server failed. */
    async function pollOnce(): Promise<boolean | unknown> {
      const at = now();
      let payload: Record<string, number | boolean>;
      try {
        const c = await connect();
        const results: (readonly (number | boolean)[])[] = [];
        for (const read of reads) results.push(await c.read(read.table, read.address, read.count));
        payload = decodeAll(reads, results);
      } catch (error) {
        polls.add(1, '{result="failed"}');
        return error;
      }
      polls.add(1, '{result="ok"}');
      online();
      const refused = deps.ingest.admit?.(config.device);
      if (refused !== undefined) {
        telemetry.rejected("device-limit", { device: config.device, transport: "modbus" });
        return true;
      }
      const message: Message = {
        device: config.device,
        kind: "telemetry",
        ts: at,
        payload,
        source: "modbus",
      };
      // Stored in order, without holding up the next poll: a slow commit delays the message, not
      // the rhythm. At most MAX_STORING polls wait for the outbox; past that the poll waits too.
      storingCount++;
      storing = storing.then(() => store(message)).finally(() => storingCount--);
      if (storingCount > MAX_STORING) await storing;
      return true;
    }

    async function store(message: Message): Promise<void> {
      try {
        const result = await deps.ingest.accept([message]);
        if (!result.ok) {
          telemetry.rejected(result.reason === "stopping" ? "stopping" : "outbox-full", {
            device: config.device,
            transport: "modbus",
          });
        }
      } catch (error) {
        log.error("modbus.store_failed", { device: config.device, error: errorMessage(error) });
      }
    }

    const poller: Poller = {
      config,
      registers: new Map(registers.map((r) => [r.name, r])),
      state: "unknown",
      async run(signal) {
        let due = monotonic();
        while (!signal.aborted) {
          const outcome = await pollOnce();
          if (signal.aborted) break;
          if (outcome === true) {
            backoff.reset();
            due += config.interval;
            const t = monotonic();
            if (due <= t) due += Math.ceil((t - due + 1) / config.interval) * config.interval;
            await sleep(due - monotonic(), signal);
          } else {
            connection?.close();
            connection = undefined;
            const wait = backoff.next();
            offline(outcome, wait);
            await sleep(wait, signal);
            due = monotonic();
          }
        }
        await storing;
      },
      async write(name, value) {
        const r = poller.registers.get(name);
        if (r === undefined) {
          return {
            ok: false,
            error: { error: `No register "${String(name).slice(0, 128)}" on device "${config.device}"` },
          };
        }
        const encoded = encode(r, value);
        if (!encoded.ok) return { ok: false, error: { error: encoded.message } };
        try {
          const c = await connect();
          if ("bit" in encoded) await c.writeBit(r.address, encoded.bit);
          else await c.writeWords(r.address, encoded.words);
        } catch (error) {
          const e = error instanceof ModbusError ? error : new ModbusError(errorMessage(error));
          return {
            ok: false,
            error: e.exception === undefined
              ? { error: e.message }
              : { error: e.message, exception: e.exception },
          };
        }
        return { ok: true, payload: { name, value } };
      },
      close() {
        connection?.close();
        connection = undefined;
      },
    };
    return poller;
  }

  for (const d of devices) pollers.set(d.device, createPoller(d));

  async function runCommand(
    poller: Poller,
    command: { id: string; device: string; method: string; params: unknown },
  ) {
    // Answers come after the command module has recorded the delivery (deliverCommand returned).
    await Promise.resolve();
    let answer: unknown;
    const p = command.params as { name?: unknown; value?: unknown } | null;
    if (command.method !== MODBUS_WRITE) {
      answer = {
        error: `Unknown method "${command.method.slice(0, 64)}": a Modbus device takes "${MODBUS_WRITE}"`,
      };
    } else if (typeof p !== "object" || p === null || typeof p.name !== "string" || !("value" in p)) {
      answer = { error: `${MODBUS_WRITE} takes params {"name": register name, "value": number or boolean}` };
    } else {
      const result = await poller.write(p.name, p.value);
      answer = result.ok ? { status: "ok", payload: result.payload } : result.error;
      log.debug("modbus.written", { device: command.device, id: command.id, ok: result.ok });
    }
    try {
      deps.commands?.answer(command.device, command.id, encoder.encode(JSON.stringify(answer)), "modbus");
    } catch (error) {
      log.error("command.failed", { id: command.id, error: errorMessage(error) });
    }
  }

  return {
    name: "modbus",
    start() {
      controller = new AbortController();
      const signal = controller.signal;
      loops = [...pollers.values()].map((p) =>
        p.run(signal).catch((error) =>
          log.error("modbus.store_failed", { device: p.config.device, error: errorMessage(error) })
        )
      );
      // Commands to these devices are theirs from the start (and those waiting are delivered).
      for (const device of pollers.keys()) deps.commands?.listening(device);
    },
    async stop() {
      controller?.abort();
      await Promise.all(loops);
      loops = [];
      for (const p of pollers.values()) p.close();
    },
    deliverCommand(command) {
      const poller = pollers.get(command.device);
      if (poller === undefined) return undefined;
      void runCommand(poller, command);
      return "modbus";
    },
    states() {
      return Object.fromEntries([...pollers].map(([id, p]) => [id, p.state]));
    },
  };
}
