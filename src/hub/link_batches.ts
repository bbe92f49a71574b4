/**
 * Storing an edge's batches: the batches read together are stored in one transaction (exactly
 * once by record id), then each is acknowledged on the stream it came on; one edge's work runs
 * in order. A batch on a stream that closed meanwhile is not stored: the edge resends it.
 */
import { errorMessage } from "../core/errors.ts";
import { RefusalLog } from "../core/refusal_log.ts";
import type { Batch } from "../proto/mod.ts";
import type { Logger } from "../telemetry/mod.ts";
import type { HubStore } from "./store.ts";

export interface EdgeWork<S> {
  /** Runs `task` after every earlier task of the same edge. */
  serially(edge: string, task: () => void | Promise<void>): Promise<void>;
  /** A batch read from a session: stored with the others read with it. */
  take(session: S, batch: Batch): void;
  /** Stores what is waiting and waits for every edge's work to finish. */
  flush(): Promise<void>;
}

export function createEdgeWork<S extends { edge: string; open: boolean }>(deps: {
  store: HubStore;
  log: Logger;
  now: () => number;
  ack(session: S, seq: number): void;
  /** The store failed: the session's stream ends, and its edge resends. */
  fail(session: S): void;
}): EdgeWork<S> {
  const { store, log, now } = deps;
  const queues = new Map<string, Promise<void>>();
  const conflictLog = new RefusalLog(now);
  /** Batches received and not yet stored, per edge: stored together by the next `storeWaiting`. */
  const waiting = new Map<string, { session: S; batch: Batch }[]>();

  function serially(edge: string, task: () => void | Promise<void>): Promise<void> {
    const tail = (queues.get(edge) ?? Promise.resolve()).then(task).catch((error) => {
      log.error("hub.internal_error", { edge, error: errorMessage(error) });
    });
    queues.set(edge, tail);
    void tail.then(() => {
      if (queues.get(edge) === tail) queues.delete(edge);
    });
    return tail;
  }

  async function storeWaiting(edge: string): Promise<void> {
    const list = waiting.get(edge) ?? [];
    waiting.delete(edge);
    // Nobody to acknowledge to on a closed stream: the edge resends on its next one.
    const live = list.filter((w) => w.session.open);
    if (live.length === 0) return;
    const records = live.length === 1
      ? live[0].batch.records ?? []
      : live.flatMap((w) => w.batch.records ?? []);
    let added: number;
    try {
      added = await store.storeBatch(edge, records, now(), (ids) => {
        const n = conflictLog.note(ids.length);
        if (n === undefined) return;
        log.warn("hub.record_conflict", {
          edge,
          conflicts: n,
          example: ids[0].slice(0, 128),
          note: "record ids the hub holds with other content: a cloned or restored edge (docs/hub.md)",
        });
      });
    } catch (error) {
      log.error("hub.store_failed", { edge, seq: live.map((w) => w.batch.seq), error: errorMessage(error) });
      for (const session of new Set(live.map((w) => w.session))) deps.fail(session);
      return;
    }
    // A stream that closed while the batch was being stored gets no ack (the edge resends; the
    // hub holds the records once).
    for (const w of live) deps.ack(w.session, w.batch.seq);
    log.debug("batch.stored", { edge, batches: live.length, records: records.length, added });
  }

  return {
    serially,
    take(session, batch) {
      const edge = session.edge;
      let list = waiting.get(edge);
      if (list === undefined) {
        list = [];
        waiting.set(edge, list);
        // After the frames read with this one: they join the same transaction.
        setImmediate(() => void serially(edge, () => storeWaiting(edge)));
      }
      list.push({ session, batch });
    },
    async flush() {
      for (const edge of [...waiting.keys()]) void serially(edge, () => storeWaiting(edge));
      await Promise.all(queues.values());
    },
  };
}
