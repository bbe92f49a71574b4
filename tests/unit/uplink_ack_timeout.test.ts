/**
 * The uplink against a real gRPC server that keeps the stream open but stops acknowledging
 * (SPEC §14): after `hub.ackTimeout` the uplink counts the link as broken, reconnects and resends;
 * records leave the outbox only once acknowledged.
 */
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { join } from "node:path";
import { createOutbox } from "../../src/outbox/mod.ts";
import { type EdgeFrame, type HubFrame, hubService } from "../../src/proto/mod.ts";
import { createLogger, createTelemetry } from "../../src/telemetry/mod.ts";
import { createUplink } from "../../src/uplink/mod.ts";
import { removeDir, tempDir, waitFor } from "../helpers/procs.ts";

Deno.test({
  name:
    "a hub that stops acknowledging while the stream stays open: after ackTimeout the uplink reconnects and " +
    "resends; each record is acknowledged once and leaves the outbox",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-ack-timeout-");
    const server = new grpc.Server();
    /** Record ids received per connection, in order. */
    const received: string[][] = [];
    const lines: string[] = [];
    server.addService(hubService(), {
      Connect(call: grpc.ServerDuplexStream<EdgeFrame, HubFrame>) {
        const mine: string[] = [];
        const index = received.push(mine) - 1;
        call.sendMetadata(new grpc.Metadata());
        call.on("data", (frame: EdgeFrame) => {
          if (frame.frame !== "batch") return;
          for (const r of frame.batch.records) mine.push(r.id);
          // The first connection never acknowledges; later ones do at once.
          if (index > 0) call.write({ frame: "ack", ack: { seq: frame.batch.seq } } as HubFrame);
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
    const outbox = createOutbox({ path: join(dir, "outbox.db"), maxBytes: 1 << 26, onFull: "reject" });
    const telemetry = createTelemetry(createLogger("info", (l) => lines.push(l)));
    const uplink = createUplink(
      { url: `grpc://127.0.0.1:${port}`, routingKey: "k", secret: "s" },
      outbox,
      telemetry,
      { edgeId: "gw-ack", ackTimeoutMs: 400 },
    );
    try {
      await outbox.enqueue(
        Array.from({ length: 20 }, (_, i) => ({
          device: "d1",
          kind: "telemetry" as const,
          ts: 1_700_000_000_000 + i,
          payload: { n: i },
          source: "test",
        })),
      );
      uplink.start();
      await waitFor(() => outbox.stats().depth === 0 ? true : undefined, 10_000, "the outbox to drain");
      assert.ok(received.length >= 2, `connections: ${received.length}`);
      const ids = outbox.epoch;
      const expected = Array.from({ length: 20 }, (_, i) => `${ids}-${i + 1}`);
      // The unacknowledged connection saw them all; the next one got them all again, in order.
      assert.deepEqual(received[0], expected);
      assert.deepEqual(received[received.length - 1], expected);
      assert.equal(uplink.status().connected, true);
      const broke = lines.map((l) => JSON.parse(l)).find((l) => l.event === "hub.disconnected");
      assert.match(
        String(broke?.reason ?? broke?.error ?? JSON.stringify(broke)),
        /no acknowledgement within/,
      );
    } finally {
      uplink.stop();
      outbox.close();
      server.forceShutdown();
      removeDir(dir);
    }
  },
});
