/** Retention deletes records older than the retention, oldest first, in bounded batches. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createHub, createHubStore } from "../../../src/hub/mod.ts";
import { startRetention } from "../../../src/hub/retention.ts";
import { createLogger } from "../../../src/telemetry/mod.ts";
import { removeDir, tempDir, waitFor } from "../../helpers/procs.ts";
import { record } from "./_edge.ts";

Deno.test({
  name:
    "retention deletes what is older than the retention in batches of at most `batch`, and keeps the rest",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-retention-");
    const store = createHubStore(join(dir, "hub.db"));
    const lines: string[] = [];
    const log = createLogger("info", (line) => lines.push(line));
    const calls: number[] = [];
    try {
      await store.registerEdges(["gw"]);
      const day = 86_400_000;
      const now = 100 * day;
      await store.storeBatch(
        "gw",
        Array.from({ length: 23 }, (_, k) => record(`old${k}`, "d", { k })),
        now - 31 * day,
      );
      await store.storeBatch("gw", [record("recent", "d", {})], now - 29 * day);
      const counting = {
        deleteBefore: async (before: number, limit: number) => {
          const n = await store.deleteBefore(before, limit);
          calls.push(n);
          return n;
        },
      };
      const retention = startRetention(counting, {
        keepMs: 30 * day,
        intervalMs: 60_000,
        log,
        batch: 10,
        now: () => now,
      });
      await waitFor(
        () => lines.some((l) => l.includes('"event":"hub.retention"')),
        5_000,
        "a retention pass",
      );
      await retention.stop();
      assert.deepEqual(calls, [10, 10, 3], "bounded batches, until one is not full");
      assert.deepEqual((await store.records({ after: 0, limit: 100 })).map((r) => r.id), ["recent"]);
      assert.match(lines.find((l) => l.includes("hub.retention"))!, /"deleted":23/);
    } finally {
      await store.close();
      removeDir(dir);
    }
  },
});

Deno.test({
  name: "a hub with retention set deletes older records from its store at start and keeps the rest",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-retention-hub-");
    try {
      const before = createHubStore(join(dir, "hub.db"));
      await before.registerEdges(["gw"]);
      await before.storeBatch("gw", [record("old", "d", {})], Date.now() - 2 * 3_600_000);
      await before.storeBatch("gw", [record("new", "d", {})], Date.now());
      await before.close();
      const hub = createHub(
        {
          listen: "127.0.0.1:0",
          api: { listen: "127.0.0.1:0" },
          dataDir: dir,
          edges: [{ id: "gw", routingKey: "rk", secret: "secret" }],
          retention: 3_600_000,
        },
        { log: createLogger("error", () => {}) },
      );
      const { apiPort } = await hub.start();
      try {
        await waitFor(
          async () => {
            const body = await (await fetch(`http://127.0.0.1:${apiPort}/api/v1/records`)).json();
            return body.records.map((r: { id: string }) => r.id).join() === "new";
          },
          10_000,
          "the old record deleted, the new one kept",
        );
      } finally {
        await hub.stop();
      }
    } finally {
      removeDir(dir);
    }
  },
});
