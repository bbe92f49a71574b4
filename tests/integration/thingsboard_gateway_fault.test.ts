/**
 * The gateway path under faults: two ThingsBoard gateway devices carry ten children (one mqtt.js
 * connection per child, signed in with its gateway's token, publishing on
 * `v1/gateway/telemetry`), 5,000 QoS 1 messages in all, while the agent is SIGKILLed midway and
 * restarted. Children whose connection resends what was not acknowledged (persistent sessions)
 * end with every message PUBACKed and at the hub exactly once, in order; children that send each
 * message once have every message they saw PUBACKed at the hub exactly once, in order.
 */
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
  waitFor,
  writeAgentConfig,
} from "../helpers/procs.ts";
import { checkExactlyOnce, type Publisher, startPublisher } from "./mqtt_helpers.ts";

Deno.test({
  name:
    "ThingsBoard gateway → hub: 10 children of 2 gateways, 5,000 QoS 1 messages, agent SIGKILLed midway: " +
    "every PUBACKed message at the hub exactly once, in per-device order",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-tb-gateway-fault-");
    const edge = { id: "edge-gwfault", routingKey: "rk-edge-gwfault", secret: "secret-edge-gwfault-0123" };
    let hub: HubHandle | undefined;
    let agent: AgentHandle | undefined;
    const publishers: Publisher[] = [];
    try {
      hub = await startHub({ dir: join(dir, "hub"), edges: [edge] });
      const brokerPort = await freePort();
      const configPath = writeAgentConfig(join(dir, "agent"), {
        edgeId: edge.id,
        dataDir: "data",
        api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
        mqtt: { broker: { listen: `127.0.0.1:${brokerPort}`, auth: "token" } },
        hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: edge.routingKey, secret: edge.secret },
      });
      agent = await startAgent(configPath);
      const tokens: string[] = [];
      for (const id of ["gw-once", "gw-resend"]) {
        const res = await agent.api("/api/v1/devices", { method: "POST", body: JSON.stringify({ id }) });
        tokens.push((await res.json()).token);
      }
      const once = Array.from({ length: 5 }, (_, i) => `once-child-${i}`);
      const resending = Array.from({ length: 5 }, (_, i) => `resend-child-${i}`);
      const perDevice = 500;
      const window = 20;
      const url = `mqtt://127.0.0.1:${brokerPort}`;
      const as = (devices: string[], token: string) =>
        Object.fromEntries(devices.map((d) => [d, { username: token }]));
      publishers.push(
        startPublisher({
          url,
          devices: once,
          perDevice,
          window,
          progressEvery: 100,
          resend: false,
          clientPrefix: "gw-once",
          topic: "v1/gateway/telemetry",
          gateway: true,
          credentials: as(once, tokens[0]),
        }),
        startPublisher({
          url,
          devices: resending,
          perDevice,
          window,
          progressEvery: 100,
          clientPrefix: "gw-keep",
          topic: "v1/gateway/telemetry",
          gateway: true,
          credentials: as(resending, tokens[1]),
        }),
      );
      const acked = () => publishers.reduce((n, p) => n + p.acked(), 0);
      await waitFor(() => acked() >= 2_000, 60_000, "2,000 PUBACKs");
      await agent.stop("SIGKILL");
      await new Promise((r) => setTimeout(r, 300));
      agent = await startAgent(configPath);
      const [onceReport, resendReport] = await Promise.all(publishers.map((p) => p.done(120_000)));
      assert.deepEqual(
        [onceReport.errors, resendReport.errors],
        [0, 0],
        "the publishers saw no publish errors",
      );

      await waitDrained(agent);
      const records = await hubRecords(hub, edge.id);
      const byDevice = sequencesByDevice(records.filter((r) => r.kind === "telemetry"));
      const problems: string[] = [];
      let ackedOnce = 0;
      let unanswered = 0;
      for (const d of once) {
        ackedOnce += onceReport.acked[d].length;
        unanswered += onceReport.unanswered[d].length;
        problems.push(
          ...checkExactlyOnce(d, byDevice.get(d) ?? [], onceReport.acked[d], onceReport.unanswered[d]),
        );
      }
      for (const d of resending) {
        assert.equal(resendReport.acked[d].length, perDevice, `${d}: every message eventually PUBACKed`);
        problems.push(...checkExactlyOnce(d, byDevice.get(d) ?? [], resendReport.acked[d]));
      }
      assert.deepEqual(problems, []);
      assert.equal(ackedOnce + unanswered, once.length * perDevice);
      assert.ok(ackedOnce >= once.length * perDevice - once.length * window, `${ackedOnce} PUBACKed`);
      // Stored under the children's own ids, on the gateway topic.
      const sample = records.find((r) => r.device === "resend-child-0" && r.kind === "telemetry");
      assert.equal(sample?.topic, "v1/gateway/telemetry");
      console.log(
        `gateway, sending once: ${ackedOnce} PUBACKed (each exactly once at the hub), ${unanswered} unanswered; ` +
          `resending: ${resending.length * perDevice} PUBACKed, each exactly once at the hub`,
      );
    } finally {
      for (const p of publishers) await p.proc.kill("SIGKILL");
      await agent?.stop("SIGKILL").catch(() => {});
      await hub?.stop().catch(() => {});
      removeDir(dir);
    }
  },
});
