/**
 * `hub.url` as a list (SPEC §11): the uplink uses the first hub that answers and, when the link
 * is lost, moves to the next one and resends everything unacknowledged. Real in-process gRPC hubs.
 */
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { join } from "node:path";
import { createOutbox, type Outbox } from "../../src/outbox/mod.ts";
import { type EdgeFrame, type HubFrame, hubService } from "../../src/proto/mod.ts";
import { createLogger, createTelemetry } from "../../src/telemetry/mod.ts";
import { createUplink } from "../../src/uplink/mod.ts";
import { freePort, removeDir, tempDir, waitFor } from "../helpers/procs.ts";

/** A hub that acknowledges the first `ackFirst` batches it gets (all when undefined) and holds the rest. */
async function hub(ackFirst?: number) {
  const server = new grpc.Server();
  const received: string[][] = [];
  const acked: string[] = [];
  server.addService(hubService(), {
    Connect(call: grpc.ServerDuplexStream<EdgeFrame, HubFrame>) {
      call.on("data", (frame: EdgeFrame) => {
        if (frame.frame !== "batch") return;
        const ids = frame.batch.records.map((r) => r.id);
        received.push(ids);
        if (ackFirst !== undefined && received.length > ackFirst) return;
        acked.push(...ids);
        call.write({ frame: "ack", ack: { seq: frame.batch.seq } } as HubFrame);
      });
      call.on("error", () => {});
      call.on("end", () => call.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (e, p) => e ? reject(e) : resolve(p),
    )
  );
  return { port, received, acked, close: () => server.forceShutdown() };
}

function put(outbox: Outbox, n: number): Promise<void> {
  return outbox.enqueue(
    Array.from({ length: n }, (_, i) => ({
      device: "d1",
      kind: "telemetry" as const,
      ts: 1_700_000_000_000 + i,
      payload: { n: i },
      source: "test",
    })),
  );
}

function setup(urls: string[]) {
  const dir = tempDir("outpost-failover-");
  const outbox = createOutbox({ path: join(dir, "outbox.db"), maxBytes: 1 << 26, onFull: "reject" });
  const telemetry = createTelemetry(createLogger("error", () => {}));
  const uplink = createUplink({ url: urls, routingKey: "k", secret: "s" }, outbox, telemetry, {
    edgeId: "gw-failover",
    batchRecords: 5,
    window: 16,
  });
  const ids = (from: number, to: number) =>
    Array.from({ length: to - from + 1 }, (_, i) => `${outbox.epoch}-${from + i}`);
  return {
    outbox,
    uplink,
    ids,
    close() {
      uplink.stop();
      outbox.close();
      removeDir(dir);
    },
  };
}

Deno.test({
  name:
    "a hub lost mid-stream: the uplink moves to the next URL and resends exactly what was not acknowledged",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const a = await hub(3);
    const b = await hub();
    const t = setup([`grpc://127.0.0.1:${a.port}`, `grpc://127.0.0.1:${b.port}`]);
    try {
      await put(t.outbox, 40);
      t.uplink.start();
      await waitFor(() => a.received.flat().length === 40, 10_000, "everything sent to the first hub");
      await waitFor(() => t.outbox.stats().depth === 25, 5_000, "three batches acknowledged and deleted");
      assert.equal(t.uplink.status().url, `grpc://127.0.0.1:${a.port}`);
      a.close();
      await waitFor(() => t.outbox.stats().depth === 0, 15_000, "the rest delivered to the second hub");
      assert.deepEqual(
        b.received.flat(),
        t.ids(16, 40),
        "the second hub got the unacknowledged, in order, once",
      );
      assert.deepEqual([...a.acked, ...b.acked], t.ids(1, 40), "each record acknowledged exactly once");
      const status = t.uplink.status();
      assert.equal(status.connected, true);
      assert.equal(status.url, `grpc://127.0.0.1:${b.port}`);
      assert.deepEqual(status.urls, [`grpc://127.0.0.1:${a.port}`, `grpc://127.0.0.1:${b.port}`]);
    } finally {
      t.close();
      b.close();
    }
  },
});

Deno.test({
  name:
    "the first URL does not answer: the uplink connects to the next one; status says what it waits for meanwhile",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dead = await freePort();
    const b = await hub();
    const t = setup([`grpc://127.0.0.1:${dead}`, `grpc://127.0.0.1:${b.port}`]);
    try {
      await put(t.outbox, 12);
      t.uplink.start();
      await waitFor(() => t.outbox.stats().depth === 0, 15_000, "delivered through the second URL");
      assert.deepEqual(b.received.flat(), t.ids(1, 12));
      assert.equal(t.uplink.status().url, `grpc://127.0.0.1:${b.port}`);
      b.close();
      const s = await waitFor(
        () => {
          const s = t.uplink.status();
          return !s.connected && s.waitingFor ? s : undefined;
        },
        10_000,
        "the link down",
      );
      assert.match(s!.waitingFor!, /next attempt|response headers/);
    } finally {
      t.close();
    }
  },
});
