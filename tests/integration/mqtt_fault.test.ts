/**
 * The MQTT promise under faults: a PUBACK means "stored", and a resend is recognised. 10 devices
 * (mqtt.js clients in their own processes) publish 20,000 QoS 1 messages while the agent is
 * killed with SIGKILL twice and restarted. Two kinds of device, five each:
 * - devices with persistent sessions that resend what was not acknowledged (what MQTT devices
 *   do): every message ends up PUBACKed and at the hub exactly once, in order;
 * - devices that send each message once (a publish whose connection died is given up): every
 *   message they saw PUBACKed is at the hub exactly once, in order.
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
  name: "MQTT embedded broker → hub: 10 devices, 20,000 QoS 1 messages, agent SIGKILLed twice: " +
    "every PUBACKed message at the hub exactly once, in per-device order (devices resending and devices sending once)",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-mqtt-fault-");
    const edge = { id: "gw-mqtt", routingKey: "rk-gw-mqtt", secret: "secret-gw-mqtt-abcdef" };
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
        mqtt: { broker: { listen: `127.0.0.1:${brokerPort}` } },
        hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: edge.routingKey, secret: edge.secret },
      });
      agent = await startAgent(configPath);

      const once = Array.from({ length: 5 }, (_, i) => `once-${i}`);
      const resending = Array.from({ length: 5 }, (_, i) => `resend-${i}`);
      const perDevice = 2_000;
      const window = 50;
      const url = `mqtt://127.0.0.1:${brokerPort}`;
      publishers.push(
        startPublisher({
          url,
          devices: once,
          perDevice,
          window,
          progressEvery: 250,
          resend: false,
          clientPrefix: "once",
        }),
        startPublisher({
          url,
          devices: resending,
          perDevice,
          window,
          progressEvery: 250,
          clientPrefix: "keep",
        }),
      );
      const acked = () => publishers.reduce((n, p) => n + p.acked(), 0);
      let kills = 0;
      for (const at of [4_000, 11_000]) {
        await waitFor(() => acked() >= at, 60_000, `${at} PUBACKs`);
        await agent.stop("SIGKILL");
        kills++;
        await new Promise((r) => setTimeout(r, 300));
        agent = await startAgent(configPath);
      }
      const [onceReport, resendReport] = await Promise.all(publishers.map((p) => p.done(120_000)));
      assert.deepEqual(
        [onceReport.errors, resendReport.errors],
        [0, 0],
        "the publishers saw no publish errors",
      );

      await waitDrained(agent);

      const byDevice = sequencesByDevice(await hubRecords(hub, edge.id));
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
      assert.ok(ackedOnce + unanswered === once.length * perDevice);
      assert.ok(ackedOnce >= once.length * perDevice - 2 * once.length * window, `${ackedOnce} PUBACKed`);
      assert.equal(kills, 2);
      console.log(
        `sending once: ${ackedOnce} PUBACKed (each exactly once at the hub), ${unanswered} unanswered; ` +
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
