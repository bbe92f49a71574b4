/**
 * Commands from the hub to devices (docs/commands.md): the host loop around the commands table.
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
import { Buffer } from "node:buffer";
import type { LocalDatabase } from "../db/mod.ts";
import type { EdgeFrame } from "../proto/mod.ts";
import type { Telemetry } from "../telemetry/mod.ts";
import {
  COMMAND_ID,
  COMMAND_LIMITS,
  type CommandInput,
  type CommandStatus,
  type DeviceCommand,
  parseAnswer,
  parseCommand,
} from "./parse.ts";
import { type CommandRow, CommandStore, MAX_COMMAND_DEVICES } from "./store.ts";
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

/** A command as `GET /api/v1/commands` shows it. */
export interface CommandView {
  id: string;
  device: string;
  method: string;
  params: unknown;
  timeoutMs: number;
  state: "pending" | "delivered" | "done";
  receivedAt: string;
  deadline: string;
  deliveredVia: string | null;
  deliveredAt: string | null;
  status: CommandStatus | null;
  payload: unknown;
  completedAt: string | null;
  resultAcked: boolean;
}

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
  /** The device's waiting commands, now or within `waitMs`; they count as delivered over HTTP. */
  poll(device: string, waitMs: number, signal?: AbortSignal): Promise<DeviceCommand[]>;
  list(device: string | undefined, limit: number): CommandView[];
  get(id: string): CommandView | undefined;
  counts(): { pending: number; delivered: number; unacked: number };
  readonly limits: { maxAnswerBytes: number; maxParamsBytes: number };
}

interface Poller {
  resolve(commands: DeviceCommand[]): void;
}

const MAX_TIMER_MS = 2_147_483_647;

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

function parseJson(text: string | null): unknown {
  if (text === null) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
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

  const results = telemetry.metrics.family("outpost_commands_total");
  const openGauge = telemetry.metrics.family("outpost_commands_open");
  telemetry.metrics.collectors.push(() => {
    try {
      const c = store.counts();
      openGauge.set(c.pending + c.delivered);
    } catch { /* closed */ }
  });

  const known = new Set<string>();
  const newlyKnown = new Set<string>();
  const pollers = new Map<string, Poller[]>();
  let listenAll = false;
  const listenFor = new Set<string>();
  let flushScheduled = false;
  let deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  let scheduledFor = Infinity;
  let tick: ReturnType<typeof setInterval> | undefined;
  let lastPrune = 0;
  let running = false;

  // ---- results to the hub ----

  /** Sends a result to the hub; false when the link is down (it is sent after reconnect). */
  function sendResult(row: Pick<CommandRow, "id" | "status" | "payload">): boolean {
    const sent = deps.send({
      frame: "commandResult",
      commandResult: {
        id: row.id,
        status: row.status ?? "error",
        payload: Buffer.from(row.payload ?? "null"),
      },
    });
    if (sent) {
      try {
        store.markSent(row.id, now());
      } catch (error) {
        log.error("command.store_failed", { id: row.id, error: errorMessage(error) });
      }
    }
    return sent;
  }

  /** Sends again every unacknowledged result last sent before `sentBefore`, oldest first. */
  function resend(sentBefore: number): void {
    let after = 0;
    for (;;) {
      const rows = store.unacked(sentBefore, after, 500);
      for (const row of rows) if (!sendResult(row)) return;
      if (rows.length < 500) return;
      after = rows[rows.length - 1].n;
    }
  }

  /** Finishes an open command with a result and sends it; false when it was already finished. */
  function finish(id: string, status: CommandStatus, payload: unknown): boolean {
    const t = now();
    const text = JSON.stringify(payload ?? null);
    if (!store.finish(id, status, text, t)) return false;
    results.add(1, `{status="${status}"}`);
    const row = store.get(id);
    log.info("command.finished", {
      id,
      device: row?.device,
      method: row?.method,
      status,
      via: row?.deliveredVia ?? undefined,
      ms: row ? t - row.receivedAt : undefined,
    });
    sendResult({ id, status, payload: text });
    return true;
  }

  /** A command refused on arrival: stored done (when its id can be a key) and its result sent. */
  function refuse(frame: CommandInput, problems: string[]): void {
    const payload = JSON.stringify({ error: problems.join("; ") });
    const id = String(frame.id ?? "");
    const existing = COMMAND_ID.test(id) ? store.get(id) : undefined;
    if (existing !== undefined) {
      // The id is taken: answer with its result, or let the command in progress finish.
      if (existing.state === "done") sendResult(existing);
      else log.warn("command.repeated", { id, device: existing.device });
      return;
    }
    results.add(1, `{status="error"}`);
    log.warn("command.refused", {
      id: id.slice(0, 128),
      device: String(frame.device ?? "").slice(0, 128),
      reason: problems.join("; "),
    });
    if (COMMAND_ID.test(id)) {
      const t = now();
      const timeout = Number(frame.timeoutMs);
      try {
        store.insertDone(
          {
            id,
            device: String(frame.device ?? "").slice(0, 256),
            method: String(frame.method ?? "").slice(0, 256),
            params: null,
            timeoutMs: Number.isSafeInteger(timeout) ? timeout : 0,
            receivedAt: t,
            deadline: t,
          },
          "error",
          payload,
        );
      } catch (error) {
        log.error("command.store_failed", { id, error: errorMessage(error) });
      }
    }
    sendResult({ id, status: "error", payload });
  }

  // ---- devices ----

  function remember(device: string): void {
    if (known.has(device)) return;
    // Bounded like the table behind it: the longest known goes first.
    if (known.size >= MAX_COMMAND_DEVICES) known.delete(known.values().next().value!);
    known.add(device);
    if (newlyKnown.size < MAX_COMMAND_DEVICES) newlyKnown.add(device);
  }

  function isKnown(device: string): boolean {
    if (known.has(device)) return true;
    if (deps.isKnownDevice(device) || store.hasDevice(device)) {
      remember(device);
      return true;
    }
    return false;
  }

  function syncKnown(): void {
    for (const d of deps.seenDevices()) remember(d);
    if (newlyKnown.size === 0) return;
    const fresh = [...newlyKnown];
    store.addDevices(fresh, now());
    newlyKnown.clear();
  }

  // ---- delivery ----

  function toCommand(row: CommandRow): DeviceCommand {
    return { id: row.id, device: row.device, method: row.method, params: parseJson(row.params) };
  }

  function takePoller(device: string): Poller | undefined {
    const list = pollers.get(device);
    const p = list?.shift();
    if (list && list.length === 0) pollers.delete(device);
    return p;
  }

  /** Hands a pending command to its device if it listens now; true when delivered. */
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

  // ---- deadlines ----

  function schedule(): void {
    const next = store.nextDeadline();
    if (deadlineTimer) clearTimeout(deadlineTimer);
    deadlineTimer = undefined;
    scheduledFor = Infinity;
    if (next === undefined || !running) return;
    scheduledFor = next;
    deadlineTimer = setTimeout(sweep, Math.min(MAX_TIMER_MS, Math.max(0, next - now())));
  }

  function timeoutPayload(row: CommandRow): unknown {
    if (row.state === "pending") {
      return {
        error:
          `Device "${row.device}" did not connect within ${row.timeoutMs} ms: the command was never delivered`,
        delivered: false,
      };
    }
    return {
      error: `Device "${row.device}" did not answer within ${row.timeoutMs} ms`,
      delivered: true,
      deliveredVia: row.deliveredVia,
      deliveredAt: iso(row.deliveredAt),
    };
  }

  function sweep(): void {
    deadlineTimer = undefined;
    try {
      for (;;) {
        const rows = store.expired(now(), 500);
        for (const row of rows) finish(row.id, "timeout", timeoutPayload(row));
        if (rows.length < 500) break;
      }
      schedule();
    } catch (error) {
      log.error("command.store_failed", { error: errorMessage(error) });
      if (running) deadlineTimer = setTimeout(sweep, 1000);
    }
  }

  function periodic(): void {
    try {
      syncKnown();
      resend(now() - resendMs);
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

  function view(row: CommandRow): CommandView {
    return {
      id: row.id,
      device: row.device,
      method: row.method,
      params: parseJson(row.params),
      timeoutMs: row.timeoutMs,
      state: row.state,
      receivedAt: iso(row.receivedAt)!,
      deadline: iso(row.deadline)!,
      deliveredVia: row.deliveredVia,
      deliveredAt: iso(row.deliveredAt),
      status: row.status,
      payload: parseJson(row.payload),
      completedAt: iso(row.completedAt),
      resultAcked: row.resultAcked,
    };
  }

  return {
    limits: { maxAnswerBytes, maxParamsBytes },

    start() {
      if (running) return;
      running = true;
      try {
        for (const d of store.knownDevices()) known.add(d);
      } catch (error) {
        log.error("command.store_failed", { error: errorMessage(error) });
      }
      sweep();
      tick = setInterval(periodic, Math.min(resendMs, 60_000));
      (tick as { unref?: () => void }).unref?.();
      periodic();
    },

    stop() {
      if (!running) return;
      running = false;
      if (deadlineTimer) clearTimeout(deadlineTimer);
      if (tick) clearInterval(tick);
      deadlineTimer = undefined;
      tick = undefined;
      for (const list of pollers.values()) for (const p of list) p.resolve([]);
      pollers.clear();
      try {
        syncKnown();
      } catch { /* best effort */ }
    },

    receive(frame) {
      try {
        const parsed = parseCommand(frame, maxParamsBytes);
        if (!parsed.ok) return refuse(frame, parsed.problems);
        const c = parsed.command;
        const existing = store.get(c.id);
        if (existing) {
          // The hub sent it again: answer with the result when there is one, else carry on.
          if (existing.state === "done") sendResult(existing);
          else log.debug("command.repeated", { id: c.id, device: c.device });
          return;
        }
        if (!isKnown(c.device)) {
          return refuse(frame, [
            `Unknown device "${c.device}": it has never been seen by this edge and is not provisioned`,
          ]);
        }
        if (store.openCount() >= maxOpen) {
          return refuse(frame, [`Too many commands waiting (${maxOpen}): the command was not queued`]);
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
        log.debug("command.received", {
          id: c.id,
          device: c.device,
          method: c.method,
          timeoutMs: c.timeoutMs,
        });
        const row = store.get(c.id)!;
        tryDeliver(row);
        if (running && row.deadline < scheduledFor) schedule();
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
        resend(Number.MAX_SAFE_INTEGER);
      } catch (error) {
        log.error("command.store_failed", { error: errorMessage(error) });
      }
    },

    listening(device) {
      if (device === undefined) listenAll = true;
      else {
        listenFor.add(device);
        remember(device);
      }
      if (flushScheduled) return;
      flushScheduled = true;
      setImmediate(flushListening);
    },

    answer(device, id, raw, via, invalid = "finish") {
      const row = store.get(id);
      if (row === undefined || row.device !== device) {
        log.warn("command.answer_ignored", { id: id.slice(0, 128), device, via, reason: "unknown command" });
        return { ok: false, reason: "unknown", message: `No command "${id}" for device "${device}"` };
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
        finish(id, "error", {
          error: `Device "${device}" answered with something unusable: ${parsed.problem}`,
        });
        return { ok: true, status: "error" };
      }
      if (row.state === "pending") store.markDelivered(id, via, now());
      finish(id, parsed.status, parsed.payload);
      return { ok: true, status: parsed.status };
    },

    poll(device, waitMs, signal) {
      remember(device);
      const t = now();
      const out: DeviceCommand[] = [];
      for (const row of store.pending(device, 100)) {
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
