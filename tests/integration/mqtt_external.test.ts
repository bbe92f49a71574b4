/**
 * External-broker mode against a real mosquitto (Debian), thin-edge.io style: outpost holds a
 * persistent session (fixed client id, `clean: false`) and acknowledges each message only after
 * its outbox commit, so while the agent is down the broker keeps what arrives. mosquitto resends
 * what outpost had not acknowledged; outpost recognises those of them it had already committed
 * (packet id memory, written in the same transaction as the messages).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type AgentHandle,
  freePort,
  type HubHandle,
  hubRecords,
  isConnectivityEvent,
  removeDir,
  sequencesByDevice,
  startAgent,
  startHub,
  tempDir,
  TEST_TOKEN,
  waitFor,
  writeAgentConfig,
} from "../helpers/procs.ts";
import {
  checkExactlyOnce,
  type Mosquitto,
  pub,
  requireTools,
  startMosquitto,
  startPublisher,
} from "./mqtt_helpers.ts";

async function accepted(agent: AgentHandle): Promise<number> {
  const s = await (await agent.api("/api/v1/status")).json();
  return s.ingest.accepted;
}

Deno.test({
  name: "MQTT external mosquitto → hub: broker down at start is not fatal; 20,000 QoS 1 messages from 10 " +
    "devices, agent SIGKILLed twice mid-stream: every message mosquitto PUBACKed at the hub exactly once, in order",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    requireTools();
    const dir = tempDir("outpost-mqtt-ext-");
    const edge = { id: "gw-ext", routingKey: "rk-gw-ext", secret: "secret-gw-ext-abcdef" };
    let hub: HubHandle | undefined;
    let agent: AgentHandle | undefined;
    let mosquitto: Mosquitto | undefined;
    let publisher: ReturnType<typeof startPublisher> | undefined;
    try {
      hub = await startHub({ dir: join(dir, "hub"), edges: [edge] });
      const mqttPort = await freePort();
      const configPath = writeAgentConfig(join(dir, "agent"), {
        edgeId: edge.id,
        dataDir: "data",
        api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
        mqtt: { broker: false, external: [{ url: `mqtt://127.0.0.1:${mqttPort}` }] },
        hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: edge.routingKey, secret: edge.secret },
      });

      // The broker is not there yet: the agent starts anyway, says so, and keeps trying.
      agent = await startAgent(configPath);
      const down = await agent.proc.waitForEvent("mqtt.external.unreachable", 15_000);
      assert.equal(down.clientId, `outpost-${edge.id}-0`);
      assert.equal((await agent.api("/healthz")).status, 200);
      mosquitto = await startMosquitto(join(dir, "mosquitto"), mqttPort);
      await agent.proc.waitForEvent("mqtt.external.subscribed", 15_000);

      const devices = Array.from({ length: 10 }, (_, i) => `meter-${i}`);
      const perDevice = 2_000;
      publisher = startPublisher({
        url: mosquitto.url,
        devices,
        perDevice,
        window: 100,
        progressEvery: 1_000,
        clientPrefix: "ext",
        ratePerDevice: 250, // 2,500/s in all: the stream lasts about 8 s, across both kills
      });
      let kills = 0;
      for (const at of [2_000, 2_000]) {
        const a = agent;
        await waitFor(async () => (await accepted(a)) >= at, 60_000, `the agent to accept ${at}`);
        assert.ok(!publisher.proc.lines.some((l) => l.includes('"event":"done"')), "killed mid-stream");
        await agent.stop("SIGKILL");
        kills++;
        await new Promise((r) => setTimeout(r, 500)); // mosquitto queues meanwhile
        agent = await startAgent(configPath);
      }
      const report = await publisher.done(120_000);
      assert.equal(report.errors, 0);
      const ackedTotal = Object.values(report.acked).reduce((n, a) => n + a.length, 0);
      assert.equal(ackedTotal, devices.length * perDevice, "mosquitto PUBACKed every message");

      const h = hub;
      await waitFor(
        async () => (await hubRecords(h, edge.id)).length >= ackedTotal,
        120_000,
        "every message at the hub",
      );
      await new Promise((r) => setTimeout(r, 500)); // anything extra would show now
      const records = await hubRecords(hub, edge.id);
      for (const r of records) assert.equal(r.kind, "telemetry");
      const byDevice = sequencesByDevice(records);
      const problems = devices.flatMap((d) => checkExactlyOnce(d, byDevice.get(d) ?? [], report.acked[d]));
      assert.deepEqual(problems, []);
      assert.equal(records.length, ackedTotal);
      assert.equal(kills, 2);
    } finally {
      await publisher?.proc.kill("SIGKILL");
      await agent?.stop("SIGKILL").catch(() => {});
      await mosquitto?.stop().catch(() => {});
      await hub?.stop().catch(() => {});
      removeDir(dir);
    }
  },
});

Deno.test({
  name: "MQTT external: devicePattern and kind map other topic layouts; unmapped topics are dead-lettered",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    requireTools();
    const dir = tempDir("outpost-mqtt-ext-pattern-");
    let agent: AgentHandle | undefined;
    let mosquitto: Mosquitto | undefined;
    try {
      mosquitto = await startMosquitto(join(dir, "mosquitto"));
      const configPath = writeAgentConfig(join(dir, "agent"), {
        edgeId: "gw-pattern",
        dataDir: "data",
        api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
        mqtt: {
          broker: false,
          external: [
            {
              url: mosquitto.url,
              topics: ["site/+/+/data"],
              devicePattern: "site/+/{device}/data",
              clientId: "pat-a",
            },
            {
              url: mosquitto.url,
              topics: ["te/device/+/+/e/+"],
              devicePattern: "te/device/{device}/+/e/#",
              kind: "events",
            },
            {
              url: mosquitto.url,
              topics: ["legacy/#"],
              devicePattern: "legacy/{device}/{kind}",
              clientId: "pat-c",
            },
          ],
        },
      });
      agent = await startAgent(configPath);
      await waitFor(() =>
        agent!.proc.lines.filter((l) => l.includes('"mqtt.external.subscribed"')).length === 3
      );
      const p = mosquitto.port;
      for (
        const [topic, body] of [
          ["site/plant-1/pump-7/data", '{"rpm":1450}'],
          ["te/device/door-2//e/opened", '{"text":"opened"}'],
          ["legacy/boiler-1/attributes", '{"fw":"1.2"}'],
          ["legacy/boiler-1/nonsense", '{"x":1}'],
          ["legacy/boiler-1/telemetry", "not json"],
        ]
      ) {
        const r = await pub(p, topic, body);
        assert.equal(r.code, 0, r.stderr);
      }
      const a = agent;
      const records = await waitFor(
        async () => {
          const body = await (await a.api("/api/v1/outbox?limit=100")).json();
          const data = body.records.filter((r: any) => !isConnectivityEvent(r));
          return data.length >= 3 ? data : undefined;
        },
        15_000,
        "three records in the outbox",
      );
      const seen = records.map((r: any) => [r.device, r.kind, r.topic, r.payload]).sort((x: any, y: any) =>
        String(x[0]).localeCompare(String(y[0]))
      );
      assert.deepEqual(seen, [
        ["boiler-1", "attributes", "legacy/boiler-1/attributes", { fw: "1.2" }],
        ["door-2", "event", "te/device/door-2//e/opened", { text: "opened" }],
        ["pump-7", "telemetry", "site/plant-1/pump-7/data", { rpm: 1450 }],
      ]);
      const dead = await waitFor(
        async () => {
          const body = await (await a.api("/api/v1/deadletters")).json();
          return body.deadletters.length >= 2 ? body.deadletters : undefined;
        },
        10_000,
        "two dead letters",
      );
      assert.deepEqual(dead.map((d: any) => [d.topic, d.reason]).sort(), [
        ["legacy/boiler-1/nonsense", "unmapped-topic"],
        ["legacy/boiler-1/telemetry", "invalid-json"],
      ]);
    } finally {
      await agent?.stop("SIGKILL").catch(() => {});
      await mosquitto?.stop().catch(() => {});
      removeDir(dir);
    }
  },
});
