/**
 * Retention (`retention` in the hub config): records received longer ago than the retention are
 * deleted, oldest first, in batches of at most `batch` records, each its own short statement with
 * a pause between, so ingest never waits behind one long delete.
 */
import { errorMessage } from "../core/errors.ts";
import type { Logger } from "../telemetry/mod.ts";
import type { HubStore } from "./store.ts";

export const RETENTION_BATCH = 5_000;

export function startRetention(
  store: Pick<HubStore, "deleteBefore">,
  o: { keepMs: number; intervalMs: number; log: Logger; batch?: number; now?: () => number },
): { stop(): Promise<void> } {
  const batch = o.batch ?? RETENTION_BATCH;
  const now = o.now ?? Date.now;
  let stopped = false;
  let running: Promise<void> = Promise.resolve();

  async function pass(): Promise<void> {
    const before = now() - o.keepMs;
    let deleted = 0;
    let batches = 0;
    try {
      for (;;) {
        if (stopped) break;
        const n = await store.deleteBefore(before, batch);
        deleted += n;
        batches++;
        if (n < batch) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      if (deleted > 0) {
        o.log.info("hub.retention", { deleted, batches, before: new Date(before).toISOString() });
      }
    } catch (error) {
      o.log.warn("hub.retention_failed", { error: errorMessage(error) });
    }
  }

  const tick = () => {
    running = running.then(pass);
  };
  tick();
  const timer = setInterval(tick, o.intervalMs);
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
