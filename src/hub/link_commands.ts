/** Commands the hub's API waits on: each settles once, with the edge's result or a timeout. */
import type { CommandStatus } from "./store.ts";

export type CommandOutcomeStatus = Exclude<CommandStatus, "pending">;

export interface CommandOutcome {
  id: string;
  status: CommandOutcomeStatus;
  payload: unknown;
}

interface Waiter {
  edge: string;
  settle(status: CommandOutcomeStatus, payload: unknown): void;
}

export class CommandWaiters {
  readonly #waiters = new Map<string, Waiter>();

  /** Waits for the result of `id` from `edge`; after `ms`, `onTimeout()` and a `timeout` outcome. */
  wait(id: string, edge: string, ms: number, onTimeout: () => void): Promise<CommandOutcome> {
    return new Promise<CommandOutcome>((resolve) => {
      const settle = (status: CommandOutcomeStatus, payload: unknown) => {
        clearTimeout(timer);
        this.#waiters.delete(id);
        resolve({ id, status, payload });
      };
      const timer = setTimeout(() => {
        onTimeout();
        settle("timeout", null);
      }, ms);
      this.#waiters.set(id, { edge, settle });
    });
  }

  /** Whether a wait for `id` is open here. */
  has(id: string): boolean {
    return this.#waiters.has(id);
  }

  /** The edge's result: settles the wait, if one is open for this edge. */
  settle(id: string, edge: string, status: CommandOutcomeStatus, payload: unknown): void {
    const waiter = this.#waiters.get(id);
    if (waiter?.edge === edge) waiter.settle(status, payload);
  }

  /** Ends every wait with `timeout` (the hub is closing), after `record(id, edge)`. */
  timeoutAll(record: (id: string, edge: string) => void): void {
    for (const [id, waiter] of this.#waiters) {
      try {
        record(id, waiter.edge);
      } catch { /* the answer below still goes out */ }
      waiter.settle("timeout", null);
    }
  }
}
