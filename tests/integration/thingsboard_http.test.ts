/**
 * ThingsBoard's HTTP device API with curl against a running agent: telemetry and attributes by
 * device token (200 after commit, at the hub afterwards), the RPC long poll and its answer with a
 * command posted at the hub, and bad input: an unknown token (401), invalid JSON and a bad item
 * (400 with the JSON path), a bad timeout (400), a wait that ends (408).
 */
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
  waitDrained,
  waitFor,
  writeAgentConfig,
} from "../helpers/procs.ts";

interface CurlResult {
  status: number;
  body: string;
}

/** Runs curl; the last line of its output is the status code. */
async function curl(args: string[]): Promise<CurlResult> {
  const out = await new Deno.Command("curl", {
    args: ["-s", "-w", "\n%{http_code}", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const i = text.lastIndexOf("\n");
  return { status: Number(text.slice(i + 1)), body: text.slice(0, i) };
}

Deno.test({
  name: "ThingsBoard HTTP device API with curl: telemetry and attributes answered 200 after commit, " +
    "the RPC long poll and its answer reach the hub, bad tokens and bad JSON get 401 and 400",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-tb-http-");
    const edge = { id: "edge-tbhttp", routingKey: "rk-edge-tbhttp", secret: "secret-edge-tbhttp-0123" };
    const hub = await startHub({ dir: join(dir, "hub"), edges: [edge] });
    const configPath = writeAgentConfig(join(dir, "agent"), {
      edgeId: edge.id,
      dataDir: "data",
      api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
      mqtt: { broker: false },
      hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: edge.routingKey, secret: edge.secret },
    });
    const agent = await startAgent(configPath);
    try {
      await waitFor(
        async () => (await (await agent.api("/api/v1/status")).json()).hub.connected,
        15_000,
        "hub",
      );
      const { token } = await (await agent.api("/api/v1/devices", {
        method: "POST",
        body: JSON.stringify({ id: "sensor-http" }),
      })).json();
      const base = `http://127.0.0.1:${agent.apiPort}/api/v1`;
      const json = ["-H", "content-type: application/json"];

      let r = await curl([
        "-X",
        "POST",
        ...json,
        "-d",
        '{"temperature": 21.5}',
        `${base}/${token}/telemetry`,
      ]);
      assert.deepEqual(r, { status: 200, body: "" });
      r = await curl([
        ...json,
        "-d",
        '[{"ts": 1700000000000, "values": {"temperature": 20}}, {"temperature": 22}]',
        `${base}/${token}/telemetry`,
      ]);
      assert.equal(r.status, 200, r.body);
      r = await curl([...json, "-d", '{"firmware": "1.4.2"}', `${base}/${token}/attributes`]);
      assert.equal(r.status, 200, r.body);

      // Bad input: each gets its answer, nothing else changes.
      r = await curl([...json, "-d", '{"t": 1}', `${base}/not-a-token-000/telemetry`]);
      assert.equal(r.status, 401);
      assert.deepEqual(JSON.parse(r.body), { error: "Unknown device token" });
      r = await curl([...json, "-d", '{"temperature": 21.5', `${base}/${token}/telemetry`]);
      assert.equal(r.status, 400);
      const bad = JSON.parse(r.body);
      assert.equal(bad.errors[0].path, "");
      assert.match(bad.errors[0].message, /^Payload is not valid JSON/);
      r = await curl([...json, "-d", '[{"a": 1}, 7]', `${base}/${token}/telemetry`]);
      assert.equal(r.status, 400);
      assert.equal(JSON.parse(r.body).errors[0].path, "/1");
      assert.ok(!r.body.includes(token), "the token is never echoed");
      r = await curl([`${base}/${token}/rpc?timeout=abc`]);
      assert.equal(r.status, 400);
      assert.equal(JSON.parse(r.body).errors[0].path, "/timeout");
      r = await curl([`${base}/${token}/rpc?timeout=300`]);
      assert.equal(r.status, 408, r.body);

      // The long poll: open, then a command is posted at the hub; the device answers it.
      const poll = curl([`${base}/${token}/rpc?timeout=20000`]);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const res = await hub.api(`/api/v1/edges/${edge.id}/commands?async=1`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          device: "sensor-http",
          method: "reboot",
          params: { delay: 5 },
          timeoutMs: 20_000,
        }),
      });
      assert.equal(res.status, 202, await res.clone().text());
      const { id } = await res.json();
      const polled = await poll;
      assert.equal(polled.status, 200, polled.body);
      assert.deepEqual(JSON.parse(polled.body), { id, method: "reboot", params: { delay: 5 } });
      r = await curl([...json, "-d", '{"rebooting": true}', `${base}/${token}/rpc/${id}`]);
      assert.equal(r.status, 200, r.body);
      r = await curl([...json, "-d", '{"rebooting": true}', `${base}/${token}/rpc/${id}`]);
      assert.equal(r.status, 409, "a second answer is refused");
      const result = await waitFor(
        async () => {
          const c = await (await hub.api(`/api/v1/commands/${id}`)).json();
          return c.status === "ok" ? c : undefined;
        },
        15_000,
        "the result at the hub",
      );
      assert.deepEqual(result.payload, { rebooting: true });

      const devices = (await (await agent.api("/api/v1/devices")).json()).devices;
      const sensor = devices.find((d: any) => d.id === "sensor-http");
      assert.equal(sensor.state, "online");
      assert.equal(sensor.transport, "http");
      assert.equal(sensor.lastConnectAt, null);
      assert.ok(sensor.lastActivityAt);

      await waitDrained(agent);
      const records = (await hubRecords(hub, edge.id, { connectivity: true })).filter((x) =>
        x.device === "sensor-http"
      );
      // The connectivity event is stored just after the message that made the device online.
      assert.deepEqual(records.filter((x) => x.kind !== "event").map((x) => [x.kind, x.payload]), [
        ["telemetry", { temperature: 21.5 }],
        ["telemetry", { temperature: 20 }],
        ["telemetry", { temperature: 22 }],
        ["attributes", { firmware: "1.4.2" }],
      ]);
      assert.deepEqual(records.filter((x) => x.kind === "event").map((x) => x.payload), [
        { type: "connectivity", state: "online", transport: "http" },
      ]);
    } finally {
      await agent.stop("SIGKILL").catch(() => {});
      await hub.stop().catch(() => {});
      removeDir(dir);
    }
  },
});
