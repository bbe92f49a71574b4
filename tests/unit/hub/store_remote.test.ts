/**
 * The libSQL server store (`libsql://`, `https://`) through @libsql/client. No libSQL server runs
 * here, so this goes through the client's `file:` mode: the same client code path (batches, write
 * transactions, the hub's migrations), over a local file instead of the network. Kept short: the
 * client's local driver does not free its prepared statements.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { openRemoteStore } from "../../../src/hub/store_remote.ts";
import { createLogger } from "../../../src/telemetry/mod.ts";
import { removeDir, tempDir } from "../../helpers/procs.ts";
import { record } from "./_edge.ts";

Deno.test({
  name:
    "the libSQL server store (client file: mode): migrations, exactly once with conflicts, commands, pushes, retention",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-remote-");
    const url = `file:${join(dir, "hub.db")}`;
    const store = await openRemoteStore(url, { log: createLogger("error", () => {}) });
    try {
      await store.registerEdges(["gw"]);
      const first = Array.from({ length: 70 }, (_, k) => record(`r${k}`, "d", { n: k }, 1_000 + k));
      assert.equal(await store.storeBatch("gw", first, 1_000), 70, "two multi-row INSERTs, one transaction");
      const conflicts: string[] = [];
      const again = [
        record("r0", "d", { n: 0 }, 1_000),
        record("r1", "d", { n: -1 }, 1_001),
        record("x", "d", {}),
      ];
      assert.equal(await store.storeBatch("gw", again, 5_000, (ids) => conflicts.push(...ids)), 1);
      assert.deepEqual(conflicts, ["r1"]);
      const [edge] = await store.edges();
      assert.equal(edge.records, 71);
      assert.equal(edge.conflicts, 1);
      const page = await store.records({ after: 0, limit: 100, edge: "gw" });
      assert.deepEqual(page.map((r) => r.payload), [...first.map((_, k) => ({ n: k })), {}]);

      await store.saveReport("gw", "hello", { version: "1" }, 6_000);
      assert.deepEqual((await store.edges())[0].reports, { hello: { version: "1" } });
      await store.insertCommand({
        id: "c1",
        edge: "gw",
        device: "d",
        method: "m",
        params: { a: 1 },
        timeoutMs: 1000,
        status: "pending",
        createdAt: 1,
      });
      assert.equal(await store.settleCommand("c1", "gw", "ok", '{"done":true}', 2), true);
      assert.deepEqual((await store.command("c1"))?.payload, { done: true });
      await store.savePush({ edge: "gw", kind: "rules", version: "v1", body: "{}", createdAt: 1 });
      await store.savePush({ edge: "gw", kind: "rules", version: "v2", body: "{}", createdAt: 2 });
      assert.deepEqual((await store.pushesOf("gw")).map((p) => p.version), ["v2"]);

      assert.equal(await store.deleteBefore(2_000, 50), 50);
      assert.equal(await store.deleteBefore(2_000, 50), 20);
      assert.deepEqual((await store.records({ after: 0, limit: 10 })).map((r) => r.id), ["x"]);
    } finally {
      await store.close();
      removeDir(dir);
    }
  },
});
