import assert from "node:assert/strict";
import { join } from "node:path";
import {
  freePort,
  hubRecords,
  removeDir,
  startAgent,
  startHub,
  tempDir,
  TEST_TOKEN,
  waitFor,
  writeAgentConfig,
} from "../helpers/procs.ts";

Deno.test({
  name:
    "a wrong hub secret: the hub says UNAUTHENTICATED, status shows it, nothing is lost, delivery resumes once fixed",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir();
    const edge = { id: "gw-auth", routingKey: "rk-auth", secret: "the-right-secret-123" };
    const hub = await startHub({ dir: join(dir, "hub"), edges: [edge] });
    const apiPort = await freePort();
    const base = {
      edgeId: edge.id,
      dataDir: "data",
      api: { listen: `127.0.0.1:${apiPort}`, token: TEST_TOKEN },
      mqtt: { broker: false },
    };
    const hubUrl = `grpc://127.0.0.1:${hub.grpcPort}`;
    let configPath = writeAgentConfig(join(dir, "agent"), {
      ...base,
      hub: { url: hubUrl, routingKey: edge.routingKey, secret: "a-wrong-secret-456" },
    });
    let agent = await startAgent(configPath);
    try {
      for (let i = 0; i < 50; i++) {
        const res = await agent.api("/api/v1/devices/d1/telemetry", {
          method: "POST",
          body: JSON.stringify({ i }),
        });
        assert.equal(res.status, 202);
      }
      const status = await waitFor(
        async () => {
          const s = await (await agent.api("/api/v1/status")).json();
          return s.hub.error ? s : undefined;
        },
        15_000,
        "status to show the hub error",
      );
      assert.equal(status.hub.connected, false);
      assert.match(status.hub.error, /^UNAUTHENTICATED/);
      // The 50 messages and the agent's connectivity event for d1 (its first message).
      const outbox = (await (await agent.api("/api/v1/outbox?limit=100")).json()).records;
      assert.equal(outbox.filter((r: { kind: string }) => r.kind === "telemetry").length, 50);
      assert.deepEqual(
        outbox.filter((r: { kind: string }) => r.kind !== "telemetry").map((
          r: { payload: { type: string } },
        ) => r.payload.type),
        ["connectivity"],
      );
      assert.equal(status.outbox.depth, 51);
      assert.ok(!JSON.stringify(status).includes("a-wrong-secret-456"), "the secret never appears in status");
      assert.ok(
        !agent.proc.lines.join("\n").includes("a-wrong-secret-456"),
        "the secret never appears in logs",
      );
      assert.equal((await hubRecords(hub, edge.id)).length, 0);

      await agent.stop("SIGTERM");
      configPath = writeAgentConfig(join(dir, "agent"), {
        ...base,
        hub: { url: hubUrl, routingKey: edge.routingKey, secret: edge.secret },
      });
      agent = await startAgent(configPath);
      await waitFor(async () => (await hubRecords(hub, edge.id)).length === 50, 20_000, "all 50 at the hub");
      const got = (await hubRecords(hub, edge.id)).map((r) => r.payload.i);
      assert.deepEqual(got, Array.from({ length: 50 }, (_, i) => i));
      const s = await (await agent.api("/api/v1/status")).json();
      assert.equal(s.hub.connected, true);
      assert.equal(s.hub.error, undefined);
    } finally {
      await agent.stop("SIGKILL");
      await hub.stop();
      removeDir(dir);
    }
  },
});
