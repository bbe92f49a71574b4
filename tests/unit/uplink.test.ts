/**
 * The uplink's promises, each against a real in-process gRPC server whose acknowledgements the
 * test holds and releases (SPEC §6):
 * - a record leaves the outbox only after the hub acknowledged the batch holding it;
 * - after a disconnect everything unacknowledged is sent again, oldest first;
 * - at most `window` batches are unacknowledged at once;
 * - a partial batch waits for more records at most `lingerMs` while others are in flight, and
 *   goes at once when nothing is in flight.
 */
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { join } from "node:path";
import { createOutbox, type Outbox } from "../../src/outbox/mod.ts";
import { type EdgeFrame, type HubFrame, hubService } from "../../src/proto/mod.ts";
import { createLogger, createTelemetry } from "../../src/telemetry/mod.ts";
import { createUplink, type UplinkOptions } from "../../src/uplink/mod.ts";
import { removeDir, tempDir, waitFor } from "../helpers/procs.ts";

interface Received {
  /** The connection it came on (0, 1, …). */
  connection: number;
  seq: number;
  ids: string[];
  at: number;
}

/** A hub that records every batch and acknowledges only when told to. */
async function holdingHub() {
  const server = new grpc.Server();
  const batches: Received[] = [];
  const calls: grpc.ServerDuplexStream<EdgeFrame, HubFrame>[] = [];
  server.addService(hubService(), {
    Connect(call: grpc.ServerDuplexStream<EdgeFrame, HubFrame>) {
      const connection = calls.push(call) - 1;
      call.sendMetadata(new grpc.Metadata());
      call.on("data", (frame: EdgeFrame) => {
        if (frame.frame !== "batch") return;
        batches.push({
          connection,
          seq: frame.batch.seq,
          ids: frame.batch.records.map((r) => r.id),
          at: performance.now(),
        });
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
  return {
    port,
    batches,
    /** Acknowledges these batches on the connection they came on. */
    ack(...which: Received[]) {
      for (const b of which) calls[b.connection].write({ frame: "ack", ack: { seq: b.seq } } as HubFrame);
    },
    /** Ends the current connection from the hub's side. */
    hangUp() {
      const call = calls[calls.length - 1];
      call.emit("error", new Error("hang up"));
      call.destroy(new Error("hang up"));
    },
    get connections() {
      return calls.length;
    },
    close: () => server.forceShutdown(),
  };
}

async function setup(options: Partial<UplinkOptions> = {}) {
  const dir = tempDir("outpost-uplink-");
  const hub = await holdingHub();
  const outbox = createOutbox({ path: join(dir, "outbox.db"), maxBytes: 1 << 26, onFull: "reject" });
  const telemetry = createTelemetry(createLogger("error", () => {}));
  const uplink = createUplink(
    { url: `grpc://127.0.0.1:${hub.port}`, routingKey: "k", secret: "s" },
    outbox,
    telemetry,
    { edgeId: "gw-uplink", ...options },
  );
  return {
    hub,
    outbox,
    uplink,
    ids: (from: number, to: number) =>
      Array.from({ length: to - from + 1 }, (_, i) => `${outbox.epoch}-${from + i}`),
    close() {
      uplink.stop();
      outbox.close();
      hub.close();
      removeDir(dir);
    },
  };
}

function put(outbox: Outbox, n: number, start = 0): Promise<void> {
  return outbox.enqueue(
    Array.from({ length: n }, (_, i) => ({
      device: "d1",
      kind: "telemetry" as const,
      ts: 1_700_000_000_000 + start + i,
      payload: { n: start + i },
      source: "test",
    })),
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sent = (batches: Received[]) => batches.flatMap((b) => b.ids);

Deno.test({
  name: "a record leaves the outbox only after the hub acknowledged its batch; unacknowledged ones stay",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const t = await setup({ batchRecords: 5, window: 4 });
    try {
      await put(t.outbox, 10);
      t.uplink.start();
      await waitFor(() => sent(t.hub.batches).length === 10, 10_000, "both batches at the hub");
      await sleep(200);
      assert.equal(t.outbox.stats().depth, 10, "nothing acknowledged, nothing deleted");
      t.hub.ack(t.hub.batches[0]);
      await waitFor(() => t.outbox.stats().depth === 5, 5_000, "the first batch deleted");
      assert.deepEqual(t.outbox.peek(10).map((r) => r.seq), [6, 7, 8, 9, 10]);
      t.hub.ack(t.hub.batches[1]);
      await waitFor(() => t.outbox.stats().depth === 0, 5_000, "the second batch deleted");
    } finally {
      t.close();
    }
  },
});

Deno.test({
  name:
    "after the hub hangs up, everything unacknowledged is sent again, oldest first, and nothing acknowledged",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const t = await setup({ batchRecords: 4, window: 8 });
    try {
      await put(t.outbox, 12);
      t.uplink.start();
      await waitFor(() => sent(t.hub.batches).length === 12, 10_000, "all sent once");
      t.hub.ack(t.hub.batches[0]); // records 1–4 acknowledged, 5–12 not
      await waitFor(() => t.outbox.stats().depth === 8, 5_000, "the first batch deleted");
      t.hub.hangUp();
      await waitFor(() => t.hub.connections >= 2, 10_000, "a reconnect");
      const again = () => sent(t.hub.batches.filter((b) => b.connection === t.hub.connections - 1));
      await waitFor(() => again().length === 8, 10_000, "the unacknowledged resent");
      assert.deepEqual(again(), t.ids(5, 12));
      t.hub.ack(...t.hub.batches.filter((b) => b.connection === t.hub.connections - 1));
      await waitFor(() => t.outbox.stats().depth === 0, 5_000, "all deleted");
    } finally {
      t.close();
    }
  },
});

Deno.test({
  name: "at most `window` batches are unacknowledged at once; each ack lets exactly one more go",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const t = await setup({ batchRecords: 5, window: 2 });
    try {
      await put(t.outbox, 30);
      t.uplink.start();
      await waitFor(() => t.hub.batches.length === 2, 10_000, "two batches");
      await sleep(300);
      assert.equal(t.hub.batches.length, 2, "the window is full: no third batch");
      assert.deepEqual(sent(t.hub.batches), t.ids(1, 10));
      t.hub.ack(t.hub.batches[0]);
      await waitFor(() => t.hub.batches.length === 3, 5_000, "a third batch");
      await sleep(300);
      assert.equal(t.hub.batches.length, 3, "one ack, one more batch");
      assert.deepEqual(t.hub.batches[2].ids, t.ids(11, 15));
    } finally {
      t.close();
    }
  },
});

Deno.test({
  name: "linger: alone, a record goes at once; while a batch is in flight, later ones gather for lingerMs",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const t = await setup({ batchRecords: 100, window: 8, lingerMs: 600 });
    try {
      t.uplink.start();
      await waitFor(() => t.uplink.status().connected, 10_000, "the link");
      const t0 = performance.now();
      await put(t.outbox, 1);
      await waitFor(() => t.hub.batches.length === 1, 5_000, "the first record");
      assert.ok(
        t.hub.batches[0].at - t0 < 400,
        `nothing in flight: sent after ${t.hub.batches[0].at - t0} ms`,
      );
      // Its batch is unacknowledged: three more records, one at a time, gather into one batch.
      const t1 = performance.now();
      for (let i = 1; i <= 3; i++) await put(t.outbox, 1, i);
      await sleep(250);
      assert.equal(t.hub.batches.length, 1, "still lingering");
      await waitFor(() => t.hub.batches.length === 2, 5_000, "the lingering batch");
      assert.deepEqual(t.hub.batches[1].ids, t.ids(2, 4));
      assert.ok(t.hub.batches[1].at - t1 >= 500, `went after ${t.hub.batches[1].at - t1} ms`);
    } finally {
      t.close();
    }
  },
});
