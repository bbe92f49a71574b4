/**
 * The PostgreSQL store against a real PostgreSQL (tests/helpers/postgres.ts): concurrent writers
 * and a reader paging `seq > after` (the reader never skips a record), exactly once with
 * conflicts counted, fencing of connectivity across replicas, bounded retention deletes.
 */
import assert from "node:assert/strict";
import { openPgStore } from "../../../src/hub/store_pg.ts";
import type { HubStore } from "../../../src/hub/mod.ts";
import { createLogger } from "../../../src/telemetry/mod.ts";
import { type Postgres, startPostgres } from "../../helpers/postgres.ts";
import postgres from "postgres";
import { record } from "./_edge.ts";

const silent = createLogger("error", () => {});

async function withPg(
  fn: (
    open: (o?: { replicaStaleSeconds?: number; heartbeatMs?: number }) => Promise<HubStore>,
    pg: Postgres,
  ) => Promise<void>,
) {
  const pg = await startPostgres();
  const stores: HubStore[] = [];
  try {
    await fn(async (o = {}) => {
      const store = await openPgStore(pg.url, { log: silent, ...o });
      stores.push(store);
      return store;
    }, pg);
  } finally {
    for (const s of stores) await s.close().catch(() => {});
    await pg.remove();
  }
}

Deno.test({
  name: "four writers commit concurrently while a reader pages seq > after: it sees every record, each once",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withPg(async (open, pg) => {
      const writers = await Promise.all([open(), open(), open(), open()]);
      // Beside it, for comparison, a reader paging the table with `seq > after` and no horizon.
      const raw = postgres(pg.url, { max: 1, onnotice: () => {} });
      const naiveSeen = new Set<number>();
      let naiveAfter = 0;
      const reader = await open();
      await writers[0].registerEdges(["e0", "e1", "e2", "e3"]);
      const perWriter = 6_000;
      const batch = 50;
      let done = false;
      const seen: number[] = [];
      let after = 0;
      const page = async () => {
        const rows = await reader.records({ after, limit: 500 });
        for (const r of rows) seen.push(r.seq);
        if (rows.length > 0) after = rows[rows.length - 1].seq;
        return rows.length;
      };
      const naive = (async () => {
        while (!done) {
          const rows =
            await raw`SELECT seq FROM records WHERE seq > ${naiveAfter}::int8 ORDER BY seq LIMIT 500`;
          for (const r of rows) naiveSeen.add(Number(r.seq));
          if (rows.length > 0) naiveAfter = Number(rows[rows.length - 1].seq);
        }
      })();
      const reading = (async () => {
        while (!done) await page();
        // The horizon is cached for 20 ms: read on past it to the end.
        await new Promise((r) => setTimeout(r, 100));
        while (await page() > 0);
      })();
      await Promise.all(writers.map(async (w, i) => {
        for (let n = 0; n < perWriter; n += batch) {
          const records = Array.from({ length: batch }, (_, k) => record(`r${n + k}`, `d${i}`, { n: n + k }));
          await w.storeBatch(`e${i}`, records, Date.now());
        }
      }));
      done = true;
      await reading;
      await naive;
      await raw.end();
      const all = (await reader.records({ after: 0, limit: 100_000 })).map((r) => r.seq);
      const naiveMissed = all.filter((seq) => seq <= naiveAfter && !naiveSeen.has(seq)).length;
      console.log(
        `without the horizon, a reader paging seq > after skipped ${naiveMissed} of ${all.length} records`,
      );
      assert.equal(all.length, 4 * perWriter);
      const missed = all.filter((seq) => !seen.includes(seq));
      assert.deepEqual(missed, [], "records the reader's cursor passed without seeing them");
      assert.equal(seen.length, all.length, "each once");
      assert.deepEqual(seen, [...seen].sort((a, b) => a - b), "in seq order");
    }),
});

Deno.test({
  name: "a resend is stored once; a held id with other content is a conflict, counted on the edge",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withPg(async (open) => {
      const store = await open();
      await store.registerEdges(["gw"]);
      assert.equal(
        await store.storeBatch("gw", [record("a", "d", { n: 1 }), record("b", "d", { n: 2 })], 1),
        2,
      );
      const conflicts: string[] = [];
      const added = await store.storeBatch(
        "gw",
        [record("a", "d", { n: 1 }), record("b", "d", { n: 99 }), record("c", "d", { n: 3 })],
        2,
        (ids) => conflicts.push(...ids),
      );
      assert.equal(added, 1);
      assert.deepEqual(conflicts, ["b"]);
      const edge = (await store.edges()).find((e) => e.id === "gw")!;
      assert.equal(edge.records, 3);
      assert.equal(edge.conflicts, 1);
      const rows = await store.records({ after: 0, limit: 10 });
      assert.deepEqual(rows.map((r) => [r.id, r.payload]), [["a", { n: 1 }], ["b", { n: 2 }], ["c", {
        n: 3,
      }]]);
      // A payload that is not JSON is kept as {"_raw": text}; one with a NUL escape as it is.
      const odd = [record("d", "d", "not json {"), record("e", "d", '{"s":"\\u0000"}')];
      assert.equal(await store.storeBatch("gw", odd, 3), 2);
      await new Promise((r) => setTimeout(r, 50)); // past the 20 ms the read horizon is cached
      const more = await store.records({ after: rows[2].seq, limit: 10 });
      assert.deepEqual(more.map((r) => r.payload), [{ _raw: "not json {" }, { s: "\u0000" }]);
    }),
});

Deno.test({
  name:
    "connectivity across replicas: the replica that lost an edge cannot mark it offline; a dead replica's edges age out",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withPg(async (open) => {
      const a = await open({ replicaStaleSeconds: 2 });
      // B beats once, at its start, and then never again: as if SIGKILLed.
      const b = await open({ replicaStaleSeconds: 2, heartbeatMs: 3_600_000 });
      await a.registerEdges(["gw"]);
      await a.shared!.listen(() => {});
      await b.shared!.listen(() => {});
      await a.setConnected("gw", true, 1);
      assert.deepEqual([...await b.shared!.connectedEdges()], ["gw"]);
      // The edge moves to B; A learns late that its stream ended.
      await b.setConnected("gw", true, 2);
      await a.setConnected("gw", false, 3);
      assert.deepEqual([...await a.shared!.connectedEdges()], ["gw"], "A's late disconnect was fenced off");
      assert.equal((await a.edges())[0].connected, true);
      // B is silent: once its heartbeat is older than 2 s, the edge is no longer connected.
      await new Promise((r) => setTimeout(r, 3_000));
      assert.deepEqual([...await a.shared!.connectedEdges()], []);
      assert.equal((await a.edges())[0].connected, false);
    }),
});

Deno.test({
  name:
    "a command notified by one replica reaches the other's listener; retention deletes in bounded batches",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withPg(async (open) => {
      const a = await open();
      const b = await open();
      const heard: unknown[] = [];
      await b.shared!.listen((m) => heard.push(m));
      await a.shared!.notify({ type: "command", edge: "gw", id: "c1" });
      const deadline = Date.now() + 5_000;
      while (heard.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(heard, [{ type: "command", edge: "gw", id: "c1" }]);

      await a.registerEdges(["gw"]);
      await a.storeBatch("gw", Array.from({ length: 25 }, (_, k) => record(`old${k}`, "d", { k })), 1_000);
      await a.storeBatch("gw", [record("new", "d", { k: 0 })], 5_000);
      assert.equal(await a.deleteBefore(2_000, 10), 10);
      assert.equal(await a.deleteBefore(2_000, 10), 10);
      assert.equal(await a.deleteBefore(2_000, 10), 5);
      assert.equal(await a.deleteBefore(2_000, 10), 0);
      assert.deepEqual((await a.records({ after: 0, limit: 100 })).map((r) => r.id), ["new"]);
    }),
});
