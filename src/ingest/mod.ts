/**
 * The one doorway for device data: `accept(messages)` runs the rules, stores what goes to the hub
 * in the outbox (group commit), and resolves only after commit. Transports acknowledge (MQTT
 * PUBACK, HTTP 202) only when it has resolved.
 */
import type { Refused } from "../core/errors.ts";
import type { Message, RoutedMessage } from "../core/message.ts";
import type { DeviceRegistry } from "../devices/mod.ts";
import { type Outbox, OutboxClosedError, OutboxFullError, StorageFullError } from "../outbox/mod.ts";
import type { Telemetry } from "../telemetry/mod.ts";

export { DeadLetters } from "./deadletters.ts";
export type { DeadLetter } from "./deadletters.ts";
export { DEVICE_ID, parsePayload, toMessages } from "./parse.ts";
export type { ParseContext, ParseResult, RejectReason } from "./parse.ts";

/** What the rules do to one message: zero, one or many outputs. */
export interface MessageProcessor {
  process(message: Message, now: number): { outputs: RoutedMessage[]; errors: number };
  /** The rules' state journal, when the rules keep state (SPEC §14: it changes only with a commit). */
  journal?: RuleStateJournal;
}

/**
 * How ingest makes the rules' state part of the outbox transaction: `mark()` before the rules
 * run, `persist()` inside the transaction that stores their outputs, `release()` after it
 * committed, `undoTo(mark)` when it did not (refused, failed, stopping).
 */
export interface RuleStateJournal {
  mark(): number;
  undoTo(mark: number): void;
  release(): void;
  changedSince(mark: number): boolean;
  /** Writes the changed state entries; runs inside the outbox transaction. Must not throw. */
  persist(): void;
}

/** No rules: every message goes to the hub unchanged. */
export const passThrough: MessageProcessor = {
  process: (message) => ({ outputs: [message], errors: 0 }),
};

export interface IngestDeps {
  outbox: Outbox;
  devices: DeviceRegistry;
  telemetry: Telemetry;
  /** The rules in force, read at every call (replaced atomically by the rules host). */
  rules: () => MessageProcessor;
  /** Publishes a message routed to `mqtt:<topic>` on the local bus (best effort). */
  publishLocal?: (topic: string, message: RoutedMessage) => void;
  now?: () => number;
}

export interface AcceptOptions {
  /** Runs inside the outbox transaction that stores the outputs (also when the rules leave none). */
  inTransaction?: () => void;
}

/**
 * What `accept()` answers: stored (after commit), or refused for an expected reason, nothing
 * stored and no rule state changed. The transport answers with its own status: HTTP 507/503,
 * an MQTT PUBACK withheld.
 * - `full`: the outbox is full under `outbox.onFull: "reject"`;
 * - `storage`: the disk holding the outbox is full;
 * - `stopping`: the agent is shutting down.
 */
export type Accepted = { ok: true; accepted: number } | Refused<"full" | "storage" | "stopping">;

/** The refusal an outbox error stands for, or undefined for an unexpected failure. */
function refusalOf(error: unknown): Refused<"full" | "storage" | "stopping"> | undefined {
  if (error instanceof StorageFullError) return { ok: false, reason: "storage", message: error.message };
  if (error instanceof OutboxFullError) return { ok: false, reason: "full", message: error.message };
  if (error instanceof OutboxClosedError) return { ok: false, reason: "stopping", message: error.message };
  return undefined;
}

export interface Ingest {
  /**
   * Runs rules and stores the outputs; resolves after commit with the number of input messages,
   * or with the reason nothing was stored. Rejects only on an unexpected failure.
   */
  accept(messages: readonly Message[], options?: AcceptOptions): Promise<Accepted>;
  /** Stores messages created outside the data path (e.g. closed aggregate windows) as they are. */
  emit(outputs: readonly RoutedMessage[]): Promise<void>;
  /**
   * Runs `produce` (the rules closing aggregate windows) as a state change of its own: its
   * outputs are stored with the state it changed, or the state is undone and this rejects.
   */
  emitFrom?(produce: () => RoutedMessage[]): Promise<void>;
  /** The outbox's capacity: a payload needing more is refused as bad input (see parse.ts). */
  readonly maxBatchBytes?: number;
  /** Admits a device under `devices.max` (see parse.ts `ParseContext.admit`). */
  readonly admit?: (device: string) => string | undefined;
}

export function createIngest(deps: IngestDeps): Ingest {
  const now = deps.now ?? Date.now;

  function route(outputs: readonly RoutedMessage[], toHub: RoutedMessage[]): void {
    for (const out of outputs) {
      const r = out.route;
      if (r === undefined) {
        toHub.push(out);
        continue;
      }
      for (const dest of r) {
        if (dest === "hub") toHub.push(out);
        else if (dest.startsWith("mqtt:") && deps.publishLocal) deps.publishLocal(dest.slice(5), out);
      }
    }
  }

  /**
   * Stores the outputs with the rule state they changed, in one transaction; undoes the state
   * when they are not stored. Without state changes and outputs, no transaction is needed.
   */
  async function store(
    toHub: RoutedMessage[],
    journal: RuleStateJournal | undefined,
    mark: number | undefined,
    inTransaction: (() => void) | undefined,
  ): Promise<void> {
    if (journal === undefined) {
      await deps.outbox.enqueue(toHub, { inTransaction });
      return;
    }
    if (toHub.length === 0 && inTransaction === undefined && !journal.changedSince(mark!)) {
      journal.release();
      return;
    }
    let stored: Promise<void>;
    try {
      stored = deps.outbox.enqueue(toHub, {
        inTransaction: () => {
          journal.persist();
          inTransaction?.();
        },
        onRefused: () => journal.undoTo(mark!),
      });
    } catch (error) {
      journal.undoTo(mark!); // refused before it was queued (e.g. a payload that cannot be stored)
      throw error;
    }
    await stored;
    journal.release();
  }

  return {
    maxBatchBytes: deps.outbox.maxBytes,
    admit: (device) => deps.devices.admit(device),
    async accept(messages, options) {
      const t = now();
      const rules = deps.rules();
      const journal = rules.journal;
      const mark = journal?.mark();
      const toHub: RoutedMessage[] = [];
      let errors = 0;
      try {
        for (const m of messages) {
          const result = rules.process(m, t);
          errors += result.errors;
          route(result.outputs, toHub);
        }
      } catch (error) {
        if (journal) journal.undoTo(mark!);
        throw error;
      }
      if (errors > 0) deps.telemetry.rulesErrors(errors);
      try {
        await store(toHub, journal, mark, options?.inTransaction);
      } catch (error) {
        const refused = refusalOf(error);
        if (refused) return refused;
        throw error;
      }
      const source = messages[0]?.source ?? "unknown";
      // One label for every gateway (`gateway:<id>` names a client-chosen device).
      deps.telemetry.accepted(messages.length, source.startsWith("gateway:") ? "gateway" : source);
      deps.devices.observe(messages, t);
      return { ok: true, accepted: messages.length };
    },
    async emitFrom(produce) {
      const rules = deps.rules();
      const journal = rules.journal;
      const mark = journal?.mark();
      let outputs: RoutedMessage[];
      try {
        outputs = produce();
      } catch (error) {
        if (journal) journal.undoTo(mark!);
        throw error;
      }
      const toHub: RoutedMessage[] = [];
      route(outputs, toHub);
      await store(toHub, journal, mark, undefined);
    },
    async emit(outputs) {
      const toHub: RoutedMessage[] = [];
      route(outputs, toHub);
      await deps.outbox.enqueue(toHub);
    },
  };
}
