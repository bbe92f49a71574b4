/**
 * Results to the hub: every command ends in exactly one result, stored before it is sent, and
 * sent again until the hub acknowledges it.
 */
import { Buffer } from "node:buffer";
import { errorMessage } from "../core/errors.ts";
import type { EdgeFrame } from "../proto/mod.ts";
import type { Logger, Telemetry } from "../telemetry/mod.ts";
import { COMMAND_ID, type CommandInput, type CommandStatus } from "./parse.ts";
import type { CommandRow, CommandStore } from "./store.ts";

export interface Results {
  /** Sends a result to the hub; false when the link is down (it is sent after reconnect). */
  send(row: Pick<CommandRow, "id" | "status" | "payload">): boolean;
  /** Sends again every unacknowledged result last sent before `sentBefore`, oldest first. */
  resend(sentBefore: number): void;
  /** Finishes an open command with a result and sends it; false when it was already finished. */
  finish(id: string, status: CommandStatus, payload: unknown): boolean;
  /** A command refused on arrival: stored done (when its id can be a key) and its result sent. */
  refuse(frame: CommandInput, problems: string[]): void;
}

export function createResults(
  store: CommandStore,
  deps: { send: (frame: EdgeFrame) => boolean; telemetry: Telemetry; log: Logger; now: () => number },
): Results {
  const { log, now } = deps;
  const counted = deps.telemetry.metrics.family("outpost_commands_total");

  function send(row: Pick<CommandRow, "id" | "status" | "payload">): boolean {
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

  return {
    send,
    resend(sentBefore) {
      let after = 0;
      for (;;) {
        const rows = store.unacked(sentBefore, after, 500);
        for (const row of rows) if (!send(row)) return;
        if (rows.length < 500) return;
        after = rows[rows.length - 1].n;
      }
    },
    finish(id, status, payload) {
      const t = now();
      const text = JSON.stringify(payload ?? null);
      if (!store.finish(id, status, text, t)) return false;
      counted.add(1, `{status="${status}"}`);
      const row = store.get(id);
      log.info("command.finished", {
        id,
        device: row?.device,
        method: row?.method,
        status,
        via: row?.deliveredVia ?? undefined,
        ms: row ? t - row.receivedAt : undefined,
      });
      send({ id, status, payload: text });
      return true;
    },
    refuse(frame, problems) {
      const payload = JSON.stringify({ error: problems.join("; ") });
      const id = String(frame.id ?? "");
      const existing = COMMAND_ID.test(id) ? store.get(id) : undefined;
      if (existing !== undefined) {
        // The id is taken: answer with its result, or let the command in progress finish.
        if (existing.state === "done") send(existing);
        else log.warn("command.repeated", { id, device: existing.device });
        return;
      }
      counted.add(1, `{status="error"}`);
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
      send({ id, status: "error", payload });
    },
  };
}
