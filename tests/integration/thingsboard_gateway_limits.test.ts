/**
 * Hostile input on the ThingsBoard gateway API, with mosquitto_pub as the gateway: an unknown
 * token, invalid JSON on each gateway topic, a child of the wrong shape, and one telemetry
 * message naming 100,000 devices. Each is answered (CONNACK refusal, PUBACK), dead-lettered or
 * counted, and harms nothing: the children past `devices.max` are refused and counted in
 * /metrics, logged once, and the agent keeps serving.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  freePort,
  removeDir,
  startAgent,
  tempDir,
  TEST_TOKEN,
  waitFor,
  writeAgentConfig,
} from "../helpers/procs.ts";
import { mosquittoTool, pub, requireTools } from "./mqtt_helpers.ts";

requireTools();

function metric(text: string, name: string): number {
  return text.split("\n").filter((l) => l.startsWith(name)).reduce(
    (n, l) => n + Number(l.split(" ").pop()),
    0,
  );
}

Deno.test({
  name: "ThingsBoard gateway bad input: unknown token refused at CONNECT, invalid JSON and bad children " +
    "dead-lettered and acknowledged, 100,000 devices in one message refused past devices.max; the agent keeps serving",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-tb-gateway-limits-");
    const port = await freePort();
    const configPath = writeAgentConfig(join(dir, "agent"), {
      edgeId: "edge-gwlimits",
      dataDir: "data",
      api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
      mqtt: { broker: { listen: `127.0.0.1:${port}`, auth: "token" } },
      devices: { max: 1_000 },
      limits: { maxPayloadBytes: 4 * 1024 * 1024 },
    });
    // Under Bun, the runtime of the binaries: the agent run by Deno stalls on an MQTT packet of a
    // few hundred KB (Deno's node:net, whatever the topic), which this test is not about.
    const agent = await startAgent(configPath, { runner: "bun" });
    try {
      const { token } = await (await agent.api("/api/v1/devices", {
        method: "POST",
        body: JSON.stringify({ id: "gw-big" }),
      })).json();
      const as = ["-u", token];

      // An unknown token: refused at CONNECT.
      const refused = await pub(port, "v1/gateway/telemetry", '{"a": [{"t": 1}]}', ["-u", "no-such-token"]);
      assert.notEqual(refused.code, 0, "mosquitto_pub is refused");

      // Invalid JSON: acknowledged (mosquitto_pub exits 0 after its PUBACK), dead-lettered or counted.
      for (
        const topic of [
          "v1/gateway/telemetry",
          "v1/gateway/attributes",
          "v1/gateway/connect",
          "v1/gateway/rpc",
        ]
      ) {
        const r = await pub(port, topic, '{"child-1": [', as);
        assert.equal(r.code, 0, `${topic}: ${r.stderr}`);
      }
      // A child of the wrong shape is left out; its neighbour is stored.
      assert.equal(
        (await pub(port, "v1/gateway/telemetry", '{"bad": {"t": 1}, "good": [{"t": 2}]}', as)).code,
        0,
      );

      const dead = await waitFor(
        async () => {
          const list = (await (await agent.api("/api/v1/deadletters")).json()).deadletters;
          return list.length >= 3 ? list : undefined;
        },
        10_000,
        "three dead letters",
      );
      assert.deepEqual(
        dead.map((d: any) => [d.topic, d.reason]),
        [
          ["v1/gateway/telemetry", "invalid-json"],
          ["v1/gateway/attributes", "invalid-json"],
          ["v1/gateway/telemetry", "invalid-child"],
        ],
      );
      assert.match(dead[2].message, /\/bad: must be an array/);
      let metrics = await (await agent.api("/metrics")).text();
      assert.equal(metric(metrics, 'outpost_mqtt_gateway_refused_total{reason="invalid-json"}'), 2);

      // One message naming 100,000 devices (about 2.6 MB), with devices.max 1,000.
      const big: Record<string, unknown> = {};
      for (let i = 0; i < 100_000; i++) big[`c${String(i).padStart(6, "0")}`] = [{ v: i }];
      const file = join(dir, "big.json");
      writeFileSync(file, JSON.stringify(big));
      const r = await mosquittoTool("mosquitto_pub", [
        ...["-h", "127.0.0.1", "-p", String(port), "-q", "1", ...as],
        ...["-t", "v1/gateway/telemetry", "-f", file],
      ]);
      assert.equal(r.code, 0, `the huge message is acknowledged: ${r.stderr}`);

      const devices = await waitFor(
        async () => {
          const body = await (await agent.api("/api/v1/devices?limit=10000")).json();
          return body.total === 1_000 ? body : undefined;
        },
        30_000,
        "the registry full at devices.max",
      );
      assert.equal(devices.devices.length, 1_000);
      metrics = await (await agent.api("/metrics")).text();
      // gw-big and "good" were tracked before: 998 children fit.
      assert.equal(metric(metrics, "outpost_devices_refused_total"), 100_000 - 998);
      const limitLines = agent.proc.lines.filter((l) => l.includes('"event":"devices.limit"'));
      assert.equal(limitLines.length, 1, "logged once, not per device");
      const lastDead = (await (await agent.api("/api/v1/deadletters")).json()).deadletters.at(-1);
      assert.equal(lastDead.reason, "device-limit");
      assert.match(lastDead.message, /^99002 child device\(s\) refused \(99002 over devices.max\)/);

      // The agent is healthy and keeps serving: a known child's next message is stored.
      assert.equal((await agent.api("/healthz")).status, 200);
      const before = (await (await agent.api("/api/v1/status")).json()).ingest.accepted;
      assert.equal((await pub(port, "v1/gateway/telemetry", '{"c000001": [{"v": -1}]}', as)).code, 0);
      await waitFor(
        async () => (await (await agent.api("/api/v1/status")).json()).ingest.accepted === before + 1,
        10_000,
        "the next message stored",
      );
    } finally {
      await agent.stop("SIGKILL").catch(() => {});
      removeDir(dir);
    }
  },
});
