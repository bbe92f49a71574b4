/**
 * Commands from the hub to devices (docs/commands.md): the host around the commands table,
 * wiring its four concerns: results to the hub (results.ts), delivery to devices (delivery.ts),
 * deadlines (deadlines.ts) and the devices a command may go to (known.ts).
 *
 * Invariants:
 * - A command is stored before it is delivered; a device's answer is stored before the device
 *   hears back (MQTT PUBACK, HTTP 200); a result is stored before it is sent to the hub.
 * - Every command ends in exactly one result: the device's answer (`ok`/`error`), `error` for
 *   bad input or an unknown device, or `timeout` at its deadline. Later answers are ignored.
 * - A result stays in the table, and is sent again after every reconnect (and every 30 s while
 *   connected), until the hub acknowledges it with `commandResultAck`.
 * - A command waits (durably, across restarts) until its device listens (subscribes to its
 *   commands topic, polls over HTTP, or shows up on an external broker) or its deadline passes.
 * - Nothing here throws into the hub link or a transport: failures are logged and the command
 *   finishes with a reason, or stays for the next attempt.
 */
import { monotonicWallClock } from "../core/clock.ts";
import type { LocalDatabase } from "../db/mod.ts";
import type { EdgeFrame } from "../proto/mod.ts";
import type { Telemetry } from "../telemetry/mod.ts";
import {
  COMMAND_LIMITS,
  type CommandInput,
  type DeviceCommand,
  parseAnswer,
  parseCommand,
  type ParsedCommand,
} from "./parse.ts";
import { CommandStore } from "./store.ts";
import { createDeadlines } from "./deadlines.ts";
import { createDelivery } from "./delivery.ts";
import { KnownDevices } from "./known.ts";
import { createResults } from "./results.ts";
import { type CommandView, view } from "./view.ts";

export type { CommandView } from "./view.ts";
import { errorMessage } from "../core/errors.ts";

export interface CommandsOptions {
  /** Bytes of a command's params; larger commands are refused. Default 64 KiB. */
  maxParamsBytes?: number;
  /** Bytes of a device's answer. Default 256 KiB. */
  maxAnswerBytes?: number;
  /** Commands waiting or in progress at once; more are refused. Default 10,000. */
  maxOpen?: number;
  /** How long finished, acknowledged commands are kept (for GET /api/v1/commands). Default 1 day. */
  keepAckedMs?: number;
  /** How long a result the hub never acknowledged is kept and resent. Default 7 days. */
  keepUnackedMs?: number;
  /** Resend period for results sent but not acknowledged while connected. Default 30 s. */
  resendMs?: number;
}

export interface CommandsDeps {
  db: LocalDatabase;
  telemetry: Telemetry;
  /** Sends a frame to the hub; false when the link is down. */
  send: (frame: EdgeFrame) => boolean;
  /** True for a device that is provisioned or has been seen since the agent started. */
  isKnownDevice: (device: string) => boolean;
  /** Every device seen since the agent started (remembered across restarts here). */
  seenDevices: () => readonly string[];
  /**
   * Hands a command to its device over MQTT if something listens for it now; says where it
   * went, else undefined (then an HTTP poll may take it, or it waits).
   */
  deliver?: (command: DeviceCommand) => string | undefined;
  now?: () => number;
}

export type AnswerOutcome =
  | { ok: true; status: "ok" | "error" }
  | { ok: false; reason: "unknown" | "finished" | "invalid" | "failed"; message: string };

export interface Commands {
  /** Times out what expired while the agent was down, starts the deadline and resend timers. */
  start(): void;
  /** Stops the timers; open polls answer with no commands. Idempotent. */
  stop(): void;
  /** A `command` frame from the hub. */
  receive(frame: CommandInput): void;
  /** The hub stored the result of `id`. */
  acknowledged(id: string): void;
  /** The hub link came up: sends every result the hub has not acknowledged. */
  linkUp(): void;
  /** Something may now listen for `device`'s commands (undefined: for any device). */
  listening(device?: string): void;
  /**
   * A device's answer. Stored before this returns. An answer that cannot be read finishes the
   * command with `error` over MQTT (`invalid: "finish"`), and is refused over HTTP (`"refuse"`),
   * where the device hears why and may answer again.
   */
  answer(
    device: string,
    id: string,
    raw: Uint8Array | string,
    via: string,
    invalid?: "finish" | "refuse",
  ): AnswerOutcome;
  /**
   * The device's waiting commands (at most `limit`), now or within `waitMs`; they count as
   * delivered over HTTP.
   */
  poll(device: string, waitMs: number, signal?: AbortSignal, limit?: number): Promise<DeviceCommand[]>;
  list(device: string | undefined, limit: number): CommandView[];
  get(id: string): CommandView | undefined;
  counts(): { pending: number; delivered: number; unacked: number };
  readonly limits: { maxAnswerBytes: number; maxParamsBytes: number };
}

export function createCommands(deps: CommandsDeps, options: CommandsOptions = {}): Commands {
  const { telemetry } = deps;
  const log = telemetry.log;
  // Deadlines follow the monotonic clock: a wall clock jumping at boot does not time out every
  // waiting command at once (src/core/clock.ts).
  const now = deps.now ?? monotonicWallClock();
  const maxParamsBytes = options.maxParamsBytes ?? COMMAND_LIMITS.maxParamsBytes;
  const maxAnswerBytes = options.maxAnswerBytes ?? 256 * 1024;
  const maxOpen = options.maxOpen ?? 10_000;
  const keepAckedMs = options.keepAckedMs ?? 24 * 3600_000;
  const keepUnackedMs = options.keepUnackedMs ?? 7 * 24 * 3600_000;
  const resendMs = options.resendMs ?? 30_000;
  const store = new CommandStore(deps.db);

  const openGauge = telemetry.metrics.family("outpost_commands_open");
  telemetry.metrics.collectors.push(() => {
    try {
      const c = store.counts();
      openGauge.set(c.pending + c.delivered);
    } catch { /* closed */ }
  });

  const known = new KnownDevices(store, deps.isKnownDevice, deps.seenDevices);
  const results = createResults(store, { send: deps.send, telemetry, log, now });
  const delivery = createDelivery(store, { deliver: deps.deliver, log, now });
  const deadlines = createDeadlines(store, results, { log, now });
  let tick: ReturnType<typeof setInterval> | undefined;
  let lastPrune = 0;
  let running = false;

  /** Every `resendMs` (at most a minute): remember seen devices, resend, prune once an hour. */
  function periodic(): void {
    try {
      known.sync(now());
      results.resend(now() - resendMs);
      if (now() - lastPrune > 3600_000) {
        lastPrune = now();
        const pruned = store.prune(now() - keepAckedMs, now() - keepUnackedMs);
        if (pruned.unacked > 0) {
          log.error("command.results_dropped", {
            count: pruned.unacked,
            why: `the hub did not acknowledge them within ${Math.round(keepUnackedMs / 3600_000)} h`,
          });
        }
      }
    } catch (error) {
      log.error("command.store_failed", { error: errorMessage(error) });
    }
  }

  /** A valid command frame: stored pending, handed over if its device listens. */
  function receive(c: ParsedCommand, frame: CommandInput): void {
    const existing = store.get(c.id);
    if (existing) {
      // The hub sent it again: answer with the result when there is one, else carry on.
      if (existing.state === "done") results.send(existing);
      else log.debug("command.repeated", { id: c.id, device: c.device });
      return;
    }
    if (!known.has(c.device)) {
      return results.refuse(frame, [
        `Unknown device "${c.device}": it has never been seen by this edge and is not provisioned`,
      ]);
    }
    if (store.openCount() >= maxOpen) {
      return results.refuse(frame, [`Too many commands waiting (${maxOpen}): the command was not queued`]);
    }
    const t = now();
    store.insertPending({
      id: c.id,
      device: c.device,
      method: c.method,
      params: c.paramsText,
      timeoutMs: c.timeoutMs,
      receivedAt: t,
      deadline: t + c.timeoutMs,
    });
    log.debug("command.received", { id: c.id, device: c.device, method: c.method, timeoutMs: c.timeoutMs });
    const row = store.get(c.id)!;
    delivery.tryDeliver(row);
    deadlines.added(row.deadline);
  }

  return {
    limits: { maxAnswerBytes, maxParamsBytes },

    start() {
      if (running) return;
      running = true;
      try {
        known.load();
      } catch (error) {
        log.error("command.store_failed", { error: errorMessage(error) });
      }
      delivery.start();
      deadlines.start();
      tick = setInterval(periodic, Math.min(resendMs, 60_000));
      (tick as { unref?: () => void }).unref?.();
      periodic();
    },

    stop() {
      if (!running) return;
      running = false;
      deadlines.stop();
      if (tick) clearInterval(tick);
      tick = undefined;
      delivery.stop();
      try {
        known.sync(now());
      } catch { /* best effort */ }
    },

    receive(frame) {
      try {
        const parsed = parseCommand(frame, maxParamsBytes);
        if (!parsed.ok) return results.refuse(frame, parsed.problems);
        receive(parsed.command, frame);
      } catch (error) {
        log.error("command.failed", { id: String(frame.id ?? "").slice(0, 128), error: errorMessage(error) });
      }
    },

    acknowledged(id) {
      try {
        store.markAcked(id);
      } catch (error) {
        log.error("command.store_failed", { id, error: errorMessage(error) });
      }
    },

    linkUp() {
      try {
        results.resend(Number.MAX_SAFE_INTEGER);
      } catch (error) {
        log.error("command.store_failed", { error: errorMessage(error) });
      }
    },

    listening(device) {
      if (device !== undefined) known.remember(device);
      delivery.listening(device);
    },

    answer(device, id, raw, via, invalid = "finish") {
      const row = store.get(id);
      if (row === undefined || row.device !== device) {
        log.warn("command.answer_ignored", { id: id.slice(0, 128), device, via, reason: "unknown command" });
        return { ok: false, reason: "unknown", message: `No command "${id}" for device "${device}"` };
      }
      if (via.startsWith("gateway:") && row.deliveredVia !== via) {
        // A gateway answers only for the commands it was handed.
        log.warn("command.answer_ignored", { id, device, via, reason: "not delivered through this gateway" });
        return {
          ok: false,
          reason: "unknown",
          message: `No command "${id}" for device "${device}" via ${via}`,
        };
      }
      if (row.state === "done") {
        log.warn("command.answer_ignored", { id, device, via, reason: `already finished (${row.status})` });
        return {
          ok: false,
          reason: "finished",
          message: `Command "${id}" is already finished (${row.status})`,
        };
      }
      const parsed = parseAnswer(raw, maxAnswerBytes);
      if (!parsed.ok) {
        if (invalid === "refuse") return { ok: false, reason: "invalid", message: parsed.problem };
        results.finish(id, "error", {
          error: `Device "${device}" answered with something unusable: ${parsed.problem}`,
        });
        return { ok: true, status: "error" };
      }
      if (row.state === "pending") store.markDelivered(id, via, now());
      results.finish(id, parsed.status, parsed.payload);
      return { ok: true, status: parsed.status };
    },

    poll(device, waitMs, signal, limit) {
      known.remember(device);
      return delivery.poll(device, waitMs, signal, limit);
    },

    list(device, limit) {
      return store.recent(device, limit).map(view);
    },

    get(id) {
      const row = store.get(id);
      return row === undefined ? undefined : view(row);
    },

    counts() {
      return store.counts();
    },
  };
}
