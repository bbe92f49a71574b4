/**
 * An attempt whose connection never comes up (the TCP handshake completes, HTTP/2 never starts,
 * as behind a network or a proxy that swallows it) ends after `dialTimeoutMs`: the uplink moves to
 * the next hub and delivers there. Nothing was claimed for the attempt that never connected.
 */
import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { createServer, type Socket } from "node:net";
import { join } from "node:path";
import { createOutbox } from "../../src/outbox/mod.ts";
import { type EdgeFrame, type HubFrame, hubService } from "../../src/proto/mod.ts";
import { createLogger, createTelemetry } from "../../src/telemetry/mod.ts";
import { createUplink } from "../../src/uplink/mod.ts";
import { removeDir, tempDir, waitFor } from "../helpers/procs.ts";

Deno.test({
  name: "a hub whose connection never comes up (TCP accepted, no HTTP/2): after dialTimeoutMs the uplink " +
    "gives up on it and delivers to the next one",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    // The silent "hub": accepts TCP connections, reads nothing, says nothing.
    const sockets: Socket[] = [];
    const silent = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const silentPort = (silent.address() as { port: number }).port;

    const received: string[] = [];
    const server = new grpc.Server();
    server.addService(hubService(), {
      Connect(call: grpc.ServerDuplexStream<EdgeFrame, HubFrame>) {
        call.on("data", (frame: EdgeFrame) => {
          if (frame.frame !== "batch") return;
          received.push(...frame.batch.records.map((r) => r.id));
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

    const dir = tempDir("outpost-dial-");
    const outbox = createOutbox({ path: join(dir, "outbox.db"), maxBytes: 1 << 26, onFull: "reject" });
    const telemetry = createTelemetry(createLogger("error", () => {}));
    const uplink = createUplink(
      { url: [`grpc://127.0.0.1:${silentPort}`, `grpc://127.0.0.1:${port}`], routingKey: "k", secret: "s" },
      outbox,
      telemetry,
      { edgeId: "gw-dial", dialTimeoutMs: 1_000 },
    );
    try {
      await outbox.enqueue(
        Array.from({ length: 10 }, (_, i) => ({
          device: "d1",
          kind: "telemetry" as const,
          ts: 1_700_000_000_000 + i,
          payload: { n: i },
          source: "test",
        })),
      );
      const t0 = performance.now();
      uplink.start();
      await waitFor(() => sockets.length >= 1, 5_000, "the first attempt's TCP connection");
      const dialling = uplink.status();
      assert.equal(dialling.connected, false);
      assert.equal(dialling.waitingFor, "the connection to the hub");
      await waitFor(() => outbox.stats().depth === 0, 10_000, "everything delivered to the second hub");
      const elapsed = performance.now() - t0;
      assert.ok(elapsed >= 1_000, `moved on after ${Math.round(elapsed)} ms, not before the dial timeout`);
      assert.equal(received.length, 10, "each record once at the second hub");
      assert.equal(uplink.status().url, `grpc://127.0.0.1:${port}`);
    } finally {
      uplink.stop();
      outbox.close();
      removeDir(dir);
      for (const s of sockets) s.destroy();
      silent.close();
      server.forceShutdown();
    }
  },
});
