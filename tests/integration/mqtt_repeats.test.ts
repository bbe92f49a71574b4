/**
 * A repeated payload is a new message (SPEC §14): a QoS 1 publish counts as a resend only with
 * DUP=1, or on a persistent session under a packet id left unacknowledged at the disconnect.
 * mosquitto_pub starts its packet ids at 1 on every connection, and sensors repeat payloads.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type AgentHandle,
  freePort,
  isConnectivityEvent,
  removeDir,
  startAgent,
  tempDir,
  TEST_TOKEN,
  writeAgentConfig,
} from "../helpers/procs.ts";
import { brokerPort, pub, requireTools } from "./mqtt_helpers.ts";

function metric(text: string, name: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(" ").pop()) : 0;
}

async function outboxOf(agent: AgentHandle, device: string): Promise<unknown[]> {
  const res = await agent.api("/api/v1/outbox?limit=1000");
  assert.equal(res.status, 200);
  const body = await res.json();
  const records = (Array.isArray(body) ? body : body.records) as {
    device: string;
    kind: string;
    payload: unknown;
  }[];
  return records.filter((r) => r.device === device && !isConnectivityEvent(r)).map((r) => r.payload);
}

Deno.test({
  name:
    "the same QoS 1 payload published three times by mosquitto_pub (new connection each, packet id 1 each " +
    "time, clean and persistent sessions) is stored three times; none is counted as a resend",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    requireTools();
    const dir = tempDir("outpost-mqtt-repeats-");
    let agent: AgentHandle | undefined;
    try {
      const configPath = writeAgentConfig(join(dir, "agent"), {
        edgeId: "gw-repeats",
        dataDir: "data",
        api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
        mqtt: { broker: { listen: "127.0.0.1:0", auth: "none" } },
      });
      agent = await startAgent(configPath);
      const port = await brokerPort(agent);
      const door = '{"door":"open"}';
      // Clean session (mosquitto_pub's default): three connections, packet id 1 each time.
      for (let i = 0; i < 3; i++) {
        const r = await pub(port, "devices/sensor-7/events", door, ["-i", "sensor-7", "-q", "1"]);
        assert.equal(r.code, 0, r.stderr);
      }
      // Persistent session (-c): each PUBACK arrived before the disconnect, so nothing was
      // unacknowledged and a repeat is new again.
      for (let i = 0; i < 3; i++) {
        const r = await pub(port, "devices/sensor-8/events", door, ["-i", "sensor-8", "-q", "1", "-c"]);
        assert.equal(r.code, 0, r.stderr);
      }
      assert.deepEqual(await outboxOf(agent, "sensor-7"), [{ door: "open" }, { door: "open" }, {
        door: "open",
      }]);
      assert.deepEqual(await outboxOf(agent, "sensor-8"), [{ door: "open" }, { door: "open" }, {
        door: "open",
      }]);
      const metrics = await (await agent.api("/metrics")).text();
      assert.equal(metric(metrics, "outpost_mqtt_resends_total"), 0);
    } finally {
      await agent?.stop();
      removeDir(dir);
    }
  },
});
