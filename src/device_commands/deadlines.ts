/**
 * Deadlines: one timer for the earliest open command; at it, every expired command finishes
 * with `timeout`, saying whether it was ever delivered.
 */
import { errorMessage } from "../core/errors.ts";
import type { Logger } from "../telemetry/mod.ts";
import type { Results } from "./results.ts";
import type { CommandRow, CommandStore } from "./store.ts";
import { iso } from "./view.ts";

const MAX_TIMER_MS = 2_147_483_647;

export interface Deadlines {
  /** Times out what expired (also while the agent was down) and sets the timer. */
  start(): void;
  stop(): void;
  /** A new command with this deadline: the timer moves if it is earlier. */
  added(deadline: number): void;
}

export function createDeadlines(
  store: CommandStore,
  results: Results,
  deps: { log: Logger; now: () => number },
): Deadlines {
  const { log, now } = deps;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let scheduledFor = Infinity;
  let running = false;

  function schedule(): void {
    const next = store.nextDeadline();
    if (timer) clearTimeout(timer);
    timer = undefined;
    scheduledFor = Infinity;
    if (next === undefined || !running) return;
    scheduledFor = next;
    timer = setTimeout(sweep, Math.min(MAX_TIMER_MS, Math.max(0, next - now())));
  }

  function sweep(): void {
    timer = undefined;
    try {
      for (;;) {
        const rows = store.expired(now(), 500);
        for (const row of rows) results.finish(row.id, "timeout", timeoutPayload(row));
        if (rows.length < 500) break;
      }
      schedule();
    } catch (error) {
      log.error("command.store_failed", { error: errorMessage(error) });
      if (running) timer = setTimeout(sweep, 1000);
    }
  }

  return {
    start() {
      running = true;
      sweep();
    },
    stop() {
      running = false;
      if (timer) clearTimeout(timer);
      timer = undefined;
    },
    added(deadline) {
      if (running && deadline < scheduledFor) schedule();
    },
  };
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
