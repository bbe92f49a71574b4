/**
 * The hub's operations table, on each store: the libSQL file, the libSQL server store (through
 * the client's `file:` mode) and PostgreSQL (a real server, tests/helpers/postgres.ts). A finished
 * operation never changes again, each edge's list is bounded, and a logs answer left for another
 * replica is read once.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createHubStore, type HubStore } from "../../../src/hub/mod.ts";
import { openRemoteStore } from "../../../src/hub/store_remote.ts";
import { openPgStore } from "../../../src/hub/store_pg.ts";
import { createLogger } from "../../../src/telemetry/mod.ts";
import { type Postgres, startPostgres } from "../../helpers/postgres.ts";
import { removeDir, tempDir } from "../../helpers/procs.ts";

const OPERATIONS_KEPT_PER_EDGE = 1000;
const silent = createLogger("error", () => {});

type Kind = "file" | "remote" | "postgres";
let pg: Postgres | undefined;
let pgDbs = 0;

async function open(kind: Kind, dir: string): Promise<HubStore> {
  if (kind === "file") return createHubStore(join(dir, "hub.db"));
  if (kind === "remote") return await openRemoteStore(`file:${join(dir, "hub.db")}`, { log: silent });
  pg ??= await startPostgres();
  // A database of its own per test, on the one server.
  const name = `ops${++pgDbs}`;
  const { default: postgres } = await import("postgres");
  const admin = postgres(pg.url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE ${name}`);
  await admin.end();
  return await openPgStore(pg.url.replace(/\/[^/]*$/, `/${name}`), { log: silent });
}

function withStore(kind: Kind, fn: (store: HubStore) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = tempDir();
    const store = await open(kind, dir);
    try {
      await store.registerEdges(["gw-1", "gw-2"]);
      // A live replica (its heartbeat written): its own logs requests are not orphans.
      await store.shared?.listen(() => {});
      await fn(store);
    } finally {
      await store.close();
      removeDir(dir);
    }
  };
}

const op = (id: string, edge = "gw-1", kind: "config" | "logs" = "config", createdAt = 1) => ({
  id,
  edge,
  kind,
  version: null,
  status: "pending" as const,
  request: { config: { hub: { secret: "***" } } },
  body: '{"hub":{"secret":"s3cret"}}',
  createdAt,
});

const test = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, sanitizeResources: false, sanitizeOps: false, fn });

for (const kind of ["file", "remote", "postgres"] as const) {
  test(
    `${kind}: pending → executing → successful; a finished operation never changes and its body is dropped`,
    withStore(kind, async (store) => {
      await store.insertOperation(op("a"));
      assert.equal((await store.openOperations("gw-1"))[0].body, '{"hub":{"secret":"s3cret"}}');
      assert.ok(
        !await store.updateOperation("a", "gw-2", { status: "failed", reason: "x" }, 2),
        "another edge's report",
      );
      assert.ok(await store.updateOperation("a", "gw-1", { status: "executing" }, 2));
      assert.ok(await store.updateOperation("a", "gw-1", { status: "successful" }, 3));
      assert.ok(!await store.updateOperation("a", "gw-1", { status: "failed", reason: "late" }, 4));
      const row = (await store.operation("a"))!;
      assert.equal(row.status, "successful");
      assert.equal(row.reason, null);
      assert.equal(row.updatedAt, 3);
      assert.ok(!JSON.stringify(row).includes("s3cret"));
      assert.deepEqual(await store.openOperations("gw-1"), []);
      assert.equal(await store.takeOperationAnswer("a"), null);
    }),
  );

  test(
    `${kind}: logs operations open at start-up fail; config operations stay open to be sent again`,
    withStore(kind, async (store) => {
      await store.insertOperation(op("c"));
      await store.insertOperation(op("l", "gw-1", "logs"));
      assert.deepEqual(await store.failOperations("logs", "the hub restarted before the edge answered", 5), [
        "l",
      ]);
      assert.equal((await store.operation("l"))!.status, "failed");
      assert.equal((await store.operation("c"))!.status, "pending");
      assert.equal(await store.countOpenOperations("gw-1"), 1);
    }),
  );

  test(
    `${kind}: a logs answer kept for another replica is read once; a sweep fails only old requests`,
    withStore(kind, async (store) => {
      await store.insertOperation(op("old", "gw-1", "logs", 10));
      await store.insertOperation(op("new", "gw-1", "logs", 100));
      const answer = JSON.stringify({
        id: "new",
        status: "successful",
        lines: [{ msg: "x" }],
        truncated: false,
      });
      assert.ok(
        await store.updateOperation(
          "new",
          "gw-1",
          { status: "successful", result: { lines: 1 }, answer },
          101,
        ),
      );
      assert.deepEqual(
        (await store.openOperations("gw-1")).map((o) => o.id),
        ["old"],
        "an answer is not sent again",
      );
      assert.deepEqual(await store.failOperations("logs", "stopped", 200, 50), ["old"]);
      assert.equal((await store.operation("new"))!.status, "successful");
      assert.ok(!JSON.stringify(await store.operationsOf("gw-1", 10)).includes("msg"), "never shown");
      assert.equal(await store.takeOperationAnswer("new"), answer);
      assert.equal(await store.takeOperationAnswer("new"), null, "taken once");
      // A pushed rules version supersedes the older ones still open.
      await store.insertOperation({
        ...op("r1"),
        kind: "rules" as never,
        version: "v1",
        body: null,
        createdAt: 300,
      });
      await store.insertOperation({
        ...op("r2"),
        kind: "rules" as never,
        version: "v2",
        body: null,
        createdAt: 300,
      });
      assert.equal((await store.openOperationOf("gw-1", "rules", "v2"))?.id, "r2");
      await store.supersedeOperations("gw-1", "rules", "r2", "replaced", 301);
      assert.equal((await store.operation("r1"))!.status, "failed");
      assert.equal((await store.operation("r2"))!.status, "pending");
    }),
  );

  // The client's local driver keeps every prepared statement: the bound is checked on the others.
  if (kind !== "remote") {
    test(
      `${kind}: each edge keeps its newest finished operations up to the bound; open ones are never pruned`,
      withStore(kind, async (store) => {
        await store.insertOperation(op("open-0", "gw-1", "config", 0));
        for (let i = 1; i <= OPERATIONS_KEPT_PER_EDGE + 50; i++) {
          await store.insertOperation(op(`op-${i}`, "gw-1", "config", i));
          await store.updateOperation(`op-${i}`, "gw-1", { status: "successful" }, i);
        }
        const list = await store.operationsOf("gw-1", 5000);
        assert.ok(list.length <= OPERATIONS_KEPT_PER_EDGE + 1, `${list.length} kept`);
        assert.equal(list[0].id, `op-${OPERATIONS_KEPT_PER_EDGE + 50}`, "newest first");
        assert.ok(await store.operation("open-0"), "the open one stays");
        assert.equal(await store.operation("op-1"), undefined, "the oldest finished ones went");
      }),
    );
  }
}

test("postgres: the server stops", async () => {
  await pg?.remove();
});
