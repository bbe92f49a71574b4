/** The hub's side of the link against a store that can fail: nothing is acked that is not committed. */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hubService } from "../../../src/proto/mod.ts";
import { createEdgeLink, createHubStore, type HubStore } from "../../../src/hub/mod.ts";
import { createLogger } from "../../../src/telemetry/mod.ts";

const silent = createLogger("error", () => {});
import { connectEdge, EDGE, record } from "./_edge.ts";

Deno.test("a batch the store cannot commit is not acknowledged and ends the stream with UNAVAILABLE", async () => {
  const dir = mkdtempSync(join(tmpdir(), "outpost-hublink-"));
  const real = createHubStore(join(dir, "hub.db"));
  await real.registerEdges([EDGE.id]);
  let diskFull = false;
  const store: HubStore = {
    ...real,
    storeBatch(edge, records, now) {
      if (diskFull) return Promise.reject(new Error("database or disk is full"));
      return real.storeBatch(edge, records, now);
    },
  };
  const link = createEdgeLink({ store, edges: [EDGE], log: silent });
  const server = new grpc.Server();
  server.addService(hubService(), { connect: link.connect });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (e, p) => e ? reject(e) : resolve(p),
    )
  );
  try {
    const edge = connectEdge(port, EDGE);
    edge.batch(1, [record("a", "d", { n: 1 })]);
    await edge.next("ack");
    diskFull = true;
    edge.batch(2, [record("b", "d", { n: 2 })]);
    const status = await edge.status;
    assert.equal(status.code, grpc.status.UNAVAILABLE);
    assert.deepEqual(edge.frames.map((f) => f.frame === "ack" && f.ack.seq), [1]);
    assert.deepEqual((await real.records({ after: 0, limit: 10 })).map((r) => r.id), ["a"]);
    assert.equal(link.isConnected(EDGE.id), false);

    // Once the disk has room again, the edge's resend is stored and acknowledged.
    diskFull = false;
    const again = connectEdge(port, EDGE);
    again.batch(1, [record("b", "d", { n: 2 })]);
    await again.next("ack");
    await again.close();
    assert.deepEqual((await real.records({ after: 0, limit: 10 })).map((r) => r.id), ["a", "b"]);
  } finally {
    await link.close();
    server.forceShutdown();
    await real.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
