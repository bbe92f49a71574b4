import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type AgentHandle,
  freePort,
  type HubHandle,
  hubRecords,
  removeDir,
  sequencesByDevice,
  startAgent,
  startHub,
  tempDir,
  TEST_TOKEN,
  waitDrained,
  writeAgentConfig,
} from "../helpers/procs.ts";
import { deliveryScenario } from "./delivery_scenario.ts";

Deno.test({
  name:
    "HTTP → hub: 20,000 messages from 4 clients for 8 devices, agent SIGKILLed twice, hub stopped by SIGTERM " +
    "for 4 s: every 202 exactly once at the hub, per-device order kept (Deno)",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const r = await deliveryScenario({
      runner: "deno",
      total: 20_000,
      devices: 8,
      clients: 4,
      perRequest: 1,
      killsAt: [5_000, 11_000],
      hubDownAt: 14_000,
      hubDownMs: 4_000,
      hubStopSignal: "SIGTERM",
    });
    assert.ok(r.accepted >= 19_900, `accepted ${r.accepted}`);
    assert.ok(r.atHub >= r.accepted && r.atHub <= r.accepted + r.unanswered);
    console.log(`accepted ${r.accepted}, unanswered ${r.unanswered}, at hub ${r.atHub}`);
  },
});

Deno.test({
  name: "HTTP → hub under Bun: 4,000 messages in arrays of 10, one SIGKILL, hub SIGKILLed for 2 s",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const r = await deliveryScenario({
      runner: "bun",
      total: 4_000,
      devices: 8,
      clients: 4,
      perRequest: 10,
      killsAt: [1_500],
      hubDownAt: 2_500,
      hubDownMs: 2_000,
      hubStopSignal: "SIGKILL",
    });
    assert.ok(r.accepted >= 3_900, `accepted ${r.accepted}`);
    console.log(`accepted ${r.accepted}, unanswered ${r.unanswered}, at hub ${r.atHub}`);
  },
});

Deno.test({
  name:
    "under Deno the agent outlives a hub that stops gracefully (HTTP/2 GOAWAY) 8 times while it delivers: " +
    "the same process throughout, every 202 at the hub once, in order",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-goaway-");
    const edge = { id: "gw-goaway", routingKey: "rk-goaway", secret: "secret-goaway-0123456789" };
    let hub: HubHandle | undefined;
    let agent: AgentHandle | undefined;
    try {
      hub = await startHub({ dir: join(dir, "hub"), edges: [edge], runner: "bun" });
      const { grpcPort, apiPort } = hub;
      const configPath = writeAgentConfig(join(dir, "agent"), {
        edgeId: edge.id,
        dataDir: "data",
        api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
        mqtt: { broker: false },
        hub: { url: `grpc://127.0.0.1:${grpcPort}`, routingKey: edge.routingKey, secret: edge.secret },
      });
      const a = agent = await startAgent(configPath, { runner: "deno" });
      let exited: number | string | undefined;
      a.proc.exited.then((code) => exited = code);
      let n = 0;
      for (let round = 1; round <= 8; round++) {
        for (let i = 0; i < 25; i++) {
          const res: Response = await a.api("/api/v1/devices/g-1/telemetry", {
            method: "POST",
            body: JSON.stringify({ n: ++n }),
          });
          const body = await res.text();
          assert.equal(res.status, 202, body);
        }
        await waitDrained(a, 30_000);
        await hub.stop(); // SIGTERM: the hub ends the stream and sends GOAWAY
        await new Promise((r) => setTimeout(r, 500));
        assert.equal(
          exited,
          undefined,
          `round ${round}: the agent is still running\n${a.proc.lines.slice(-5).join("\n")}`,
        );
        hub = await startHub({ dir: join(dir, "hub"), edges: [edge], runner: "bun", grpcPort, apiPort });
      }
      await waitDrained(a, 30_000);
      const byDevice = sequencesByDevice(await hubRecords(hub, edge.id));
      assert.deepEqual(byDevice.get("g-1"), Array.from({ length: n }, (_, i) => i + 1));
      console.log(
        `8 graceful hub stops: agent pid ${a.proc.pid} throughout, ${n} messages once each, in order`,
      );
    } finally {
      await agent?.stop("SIGKILL").catch(() => {});
      await hub?.stop().catch(() => {});
      removeDir(dir);
    }
  },
});
