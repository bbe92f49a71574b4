/** The hub's operations table: a finished operation never changes again, and each edge's list is bounded. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createHubStore } from "../../../src/hub/mod.ts";
import { removeDir, tempDir } from "../../helpers/procs.ts";

const OPERATIONS_KEPT_PER_EDGE = 1000;

function withStore(fn: (store: ReturnType<typeof createHubStore>) => void): void {
  const dir = tempDir();
  const store = createHubStore(join(dir, "hub.db"));
  try {
    store.registerEdges(["gw-1", "gw-2"]);
    fn(store);
  } finally {
    store.close();
    removeDir(dir);
  }
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

Deno.test("pending → executing → successful; a finished operation never changes and its body is dropped", () =>
  withStore((store) => {
    store.insertOperation(op("a"));
    assert.equal(store.openOperations("gw-1")[0].body, '{"hub":{"secret":"s3cret"}}');
    assert.ok(
      !store.updateOperation("a", "gw-2", { status: "failed", reason: "x" }, 2),
      "another edge's report",
    );
    assert.ok(store.updateOperation("a", "gw-1", { status: "executing" }, 2));
    assert.ok(store.updateOperation("a", "gw-1", { status: "successful" }, 3));
    assert.ok(!store.updateOperation("a", "gw-1", { status: "failed", reason: "late" }, 4));
    const row = store.operation("a")!;
    assert.equal(row.status, "successful");
    assert.equal(row.reason, null);
    assert.equal(row.updatedAt, 3);
    assert.ok(!JSON.stringify(row).includes("s3cret"));
    assert.deepEqual(store.openOperations("gw-1"), []);
  }));

Deno.test("logs operations open at start-up fail; config operations stay open to be sent again", () =>
  withStore((store) => {
    store.insertOperation(op("c"));
    store.insertOperation(op("l", "gw-1", "logs"));
    assert.deepEqual(store.failOperations("logs", "the hub restarted before the edge answered", 5), ["l"]);
    assert.equal(store.operation("l")!.status, "failed");
    assert.equal(store.operation("c")!.status, "pending");
    assert.equal(store.countOpenOperations("gw-1"), 1);
  }));

Deno.test("each edge keeps its newest finished operations up to the bound; open ones are never pruned", () =>
  withStore((store) => {
    store.insertOperation(op("open-0", "gw-1", "config", 0));
    for (let i = 1; i <= OPERATIONS_KEPT_PER_EDGE + 50; i++) {
      store.insertOperation(op(`op-${i}`, "gw-1", "config", i));
      store.updateOperation(`op-${i}`, "gw-1", { status: "successful" }, i);
    }
    const list = store.operationsOf("gw-1", 5000);
    assert.ok(list.length <= OPERATIONS_KEPT_PER_EDGE + 1, `${list.length} kept`);
    assert.equal(list[0].id, `op-${OPERATIONS_KEPT_PER_EDGE + 50}`, "newest first");
    assert.ok(store.operation("open-0"), "the open one stays");
    assert.equal(store.operation("op-1"), undefined, "the oldest finished ones went");
  }));
