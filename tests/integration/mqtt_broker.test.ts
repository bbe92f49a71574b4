/**
 * The embedded broker with clients nobody here wrote (Debian's mosquitto_pub / mosquitto_sub):
 * device identity and topic rights, bad input, and the MQTT 3.1.1 features a local bus needs.
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
  startAgent,
  startHub,
  tempDir,
  TEST_TOKEN,
  waitFor,
  writeAgentConfig,
} from "../helpers/procs.ts";
import { mosquittoTool, pub, requireTools, subscribe } from "./mqtt_helpers.ts";

async function brokerPort(agent: AgentHandle): Promise<number> {
  const started = await agent.proc.waitForEvent("mqtt.broker.started");
  return Number(String(started.listen).split(":").pop());
}

async function json(agent: AgentHandle, path: string): Promise<any> {
  const res = await agent.api(path);
  assert.equal(res.status, 200, `${path}: ${res.status}`);
  return await res.json();
}

function metric(text: string, name: string, labels = ""): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(" ").pop()) : 0;
}

Deno.test({
  name: "MQTT auth token: no token and a wrong token are refused at CONNECT, a device publishing under " +
    "another device's topic is dropped, a ThingsBoard-style client publishes with its token; all logged and counted",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    requireTools();
    const dir = tempDir("outpost-mqtt-auth-");
    let agent: AgentHandle | undefined;
    try {
      const configPath = writeAgentConfig(join(dir, "agent"), {
        edgeId: "gw-auth",
        dataDir: "data",
        api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
        mqtt: { broker: { listen: "127.0.0.1:0", auth: "token" } },
      });
      agent = await startAgent(configPath);
      const port = await brokerPort(agent);
      const tokens: Record<string, string> = {};
      for (const id of ["dev-a", "dev-b"]) {
        const res = await agent.api("/api/v1/devices", { method: "POST", body: JSON.stringify({ id }) });
        assert.equal(res.status, 201);
        tokens[id] = (await res.json()).token;
      }

      // A local-bus client with the API token may watch everything.
      const watcher = subscribe(port, ["#"], ["-u", "dashboard", "-P", TEST_TOKEN, "-v"]);
      await watcher.subscribed;

      const none = await pub(port, "devices/dev-a/telemetry", '{"t":1}');
      assert.equal(none.code, 5, "no credentials: CONNACK 5 (not authorised)");
      assert.match(none.stderr, /not authori[sz]ed/i);

      const wrong = await pub(port, "devices/dev-a/telemetry", '{"t":2}', [
        "-u",
        "dev-a",
        "-P",
        "not-the-token",
      ]);
      assert.equal(wrong.code, 4, "wrong token: CONNACK 4 (bad user name or password)");

      const tbWrong = await pub(port, "v1/devices/me/telemetry", '{"t":3}', ["-u", "not-a-device-token"]);
      assert.equal(tbWrong.code, 4);

      const own = await pub(port, "devices/dev-a/telemetry", '{"t":10}', [
        "-u",
        "dev-a",
        "-P",
        tokens["dev-a"],
      ]);
      assert.equal(own.code, 0, own.stderr);

      const foreign = await pub(port, "devices/dev-b/telemetry", '{"t":11}', [
        "-u",
        "dev-a",
        "-P",
        tokens["dev-a"],
      ]);
      assert.notEqual(foreign.code, 0, "the broker drops a client publishing under another device's topic");
      assert.match(foreign.stderr, /connection was lost/i);

      const tb = await pub(port, "v1/devices/me/telemetry", '{"ts":1700000000000,"values":{"t":12}}', [
        "-u",
        tokens["dev-b"],
      ]);
      assert.equal(tb.code, 0, tb.stderr);
      const tbAttr = await pub(port, "v1/devices/me/attributes", '{"fw":"2.1"}', ["-u", tokens["dev-b"]]);
      assert.equal(tbAttr.code, 0, tbAttr.stderr);

      // A device may subscribe to its own commands only.
      const subOther = await mosquittoTool("mosquitto_sub", [
        "-p",
        String(port),
        "-u",
        "dev-a",
        "-P",
        tokens["dev-a"],
        "-t",
        "devices/dev-b/commands/#",
        "-W",
        "2",
      ]);
      assert.match(subOther.stderr + subOther.stdout, /denied/i, "SUBACK 0x80 for another device's commands");
      const subOwn = subscribe(port, ["devices/dev-a/commands/#"], ["-u", "dev-a", "-P", tokens["dev-a"]]);
      await subOwn.subscribed;
      assert.ok(
        subOwn.proc.lines.some((l) => l.includes("Subscribed (mid: 1): 0")),
        subOwn.proc.lines.join("\n"),
      );
      const cmd = await pub(port, "devices/dev-a/commands/42", '{"id":"42","method":"reboot"}', [
        "-u",
        "svc",
        "-P",
        TEST_TOKEN,
      ]);
      assert.equal(cmd.code, 0);
      await waitFor(() => subOwn.messages().includes('{"id":"42","method":"reboot"}'), 5_000, "the command");
      await subOwn.stop();

      const a = agent;
      const outbox = await waitFor(
        async () => {
          const body = await json(a, "/api/v1/outbox");
          const records = body.records.filter((r: any) => !isConnectivityEvent(r));
          return records.length >= 3 ? records : undefined;
        },
        10_000,
        "three records",
      );
      assert.deepEqual(
        outbox.map((r: any) => [r.device, r.kind, r.topic, r.payload]),
        [
          ["dev-a", "telemetry", "devices/dev-a/telemetry", { t: 10 }],
          ["dev-b", "telemetry", "v1/devices/me/telemetry", { t: 12 }],
          ["dev-b", "attributes", "v1/devices/me/attributes", { fw: "2.1" }],
        ],
      );
      assert.equal(outbox[1].ts, 1700000000000, "ThingsBoard {ts, values}: the sample's own time");

      const log = agent.proc.lines.filter((l) => l.includes('"auth.refused"')).map((l) => JSON.parse(l));
      const reasons = log.map((l) => l.reason).sort();
      assert.deepEqual(reasons, [
        "foreign-subscription",
        "foreign-topic",
        "missing-credentials",
        "wrong-credentials",
        "wrong-credentials",
      ]);
      const refusedPublish = log.find((l) => l.reason === "foreign-topic");
      assert.equal(refusedPublish.device, "dev-a");
      assert.equal(refusedPublish.topic, "devices/dev-b/telemetry");
      for (const line of agent.proc.lines) {
        for (const token of Object.values(tokens)) {
          assert.ok(!line.includes(token), "a token appeared in the log");
        }
      }
      const metrics = await (await agent.api("/metrics")).text();
      assert.equal(metric(metrics, "outpost_auth_refused_total", '{reason="foreign-topic"}'), 1);
      assert.equal(metric(metrics, "outpost_auth_refused_total", '{reason="wrong-credentials"}'), 2);
      assert.equal(metric(metrics, "outpost_auth_refused_total", '{reason="missing-credentials"}'), 1);

      // Nothing refused reached the local bus either; ThingsBoard topics are never relayed.
      await waitFor(() => watcher.messages().some((l) => l.startsWith("devices/dev-a/commands/42 ")), 5_000);
      const seen = watcher.messages();
      assert.ok(seen.includes('devices/dev-a/telemetry {"t":10}'), seen.join("\n"));
      assert.ok(!seen.some((l) => l.includes('"t":11') || l.startsWith("v1/")), seen.join("\n"));
      await watcher.stop();
    } finally {
      await agent?.stop("SIGKILL").catch(() => {});
      removeDir(dir);
    }
  },
});

Deno.test({
  name: "MQTT bad input: invalid JSON, non-object and oversized payloads are acknowledged, dead-lettered, " +
    "counted, never at the hub, not relayed; the agent keeps serving everyone else",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    requireTools();
    const dir = tempDir("outpost-mqtt-bad-");
    const edge = { id: "gw-bad", routingKey: "rk-gw-bad", secret: "secret-gw-bad-abcdef" };
    let hub: HubHandle | undefined;
    let agent: AgentHandle | undefined;
    try {
      hub = await startHub({ dir: join(dir, "hub"), edges: [edge] });
      const configPath = writeAgentConfig(join(dir, "agent"), {
        edgeId: edge.id,
        dataDir: "data",
        api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
        mqtt: { broker: { listen: "127.0.0.1:0" } },
        limits: { maxPayloadBytes: 1024 },
        hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: edge.routingKey, secret: edge.secret },
      });
      agent = await startAgent(configPath);
      const port = await brokerPort(agent);
      const watcher = subscribe(port, ["devices/#"], ["-v"]);
      await watcher.subscribed;

      const big = JSON.stringify({ blob: "x".repeat(2000) });
      const cases: [string, string, string][] = [
        ["devices/bad-1/telemetry", "{not json", "invalid-json"],
        ["devices/bad-2/telemetry", "42", "not-object"],
        ["devices/bad-3/attributes", '["a", "b"]', "not-object"],
        ["devices/bad-4/events", big, "too-large"],
      ];
      for (const [topic, message] of cases) {
        const r = await pub(port, topic, message);
        assert.equal(r.code, 0, `${topic}: PUBACKed (so it is not resent for ever): ${r.stderr}`);
      }
      // Everyone else is still served, on the same and on new connections.
      for (let i = 0; i < 3; i++) {
        const r = await pub(port, "devices/good-1/telemetry", JSON.stringify({ i }));
        assert.equal(r.code, 0, r.stderr);
      }
      const qos0 = await pub(port, "devices/good-2/events", '{"door":"open"}', ["-q", "0"]);
      assert.equal(qos0.code, 0);

      const a = agent;
      const dead = (await json(a, "/api/v1/deadletters")).deadletters;
      assert.deepEqual(
        dead.map((d: any) => [d.topic, d.device, d.reason]),
        cases.map(([topic, , reason]) => [topic, topic.split("/")[1], reason]),
      );
      assert.equal(dead[0].head, "{not json");
      assert.ok(dead[3].head.length <= 256 && dead[3].head.startsWith('{"blob":"xxx'));

      const status = await json(a, "/api/v1/status");
      assert.equal(status.ingest.rejected, 4);
      const metrics = await (await a.api("/metrics")).text();
      assert.equal(metric(metrics, "outpost_ingest_rejected_total", '{reason="invalid-json"}'), 1);
      assert.equal(metric(metrics, "outpost_ingest_rejected_total", '{reason="not-object"}'), 2);
      assert.equal(metric(metrics, "outpost_ingest_rejected_total", '{reason="too-large"}'), 1);

      const h = hub;
      await waitFor(
        async () => (await hubRecords(h, edge.id)).length >= 4,
        20_000,
        "the good messages at the hub",
      );
      await new Promise((r) => setTimeout(r, 300));
      const all = await hubRecords(hub, edge.id);
      assert.deepEqual(all.map((r) => [r.device, r.kind, r.payload]), [
        ["good-1", "telemetry", { i: 0 }],
        ["good-1", "telemetry", { i: 1 }],
        ["good-1", "telemetry", { i: 2 }],
        ["good-2", "event", { door: "open" }],
      ]);

      // Local subscribers got the stored messages, and none of the refused ones.
      await waitFor(() => watcher.messages().length >= 4, 5_000, "relayed messages");
      const seen = watcher.messages();
      assert.deepEqual(seen, [
        'devices/good-1/telemetry {"i":0}',
        'devices/good-1/telemetry {"i":1}',
        'devices/good-1/telemetry {"i":2}',
        'devices/good-2/events {"door":"open"}',
      ]);
      await watcher.stop();
    } finally {
      await agent?.stop("SIGKILL").catch(() => {});
      await hub?.stop().catch(() => {});
      removeDir(dir);
    }
  },
});

Deno.test({
  name: "MQTT 3.1.1 on the embedded broker with mosquitto clients: retained messages, last will, " +
    "persistent and clean sessions, QoS 0 and 1 on a local-bus topic",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    requireTools();
    const dir = tempDir("outpost-mqtt-proto-");
    let agent: AgentHandle | undefined;
    try {
      const configPath = writeAgentConfig(join(dir, "agent"), {
        edgeId: "gw-proto",
        dataDir: "data",
        api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
        mqtt: { broker: { listen: "127.0.0.1:0" } },
      });
      agent = await startAgent(configPath);
      const port = await brokerPort(agent);
      const v311 = ["-V", "mqttv311"];

      // Retained: a later subscriber gets the last retained message at once.
      assert.equal((await pub(port, "bus/state", "on", [...v311, "-r"])).code, 0);
      const retained = await mosquittoTool("mosquitto_sub", [
        "-p",
        String(port),
        ...v311,
        "-t",
        "bus/state",
        "-C",
        "1",
        "-W",
        "5",
      ]);
      assert.equal(retained.stdout.trim(), "on");

      // Last will: published when its client dies without DISCONNECT.
      const willWatcher = subscribe(port, ["bus/will"], v311);
      await willWatcher.subscribed;
      const dying = subscribe(port, ["bus/nothing"], [
        ...v311,
        "--will-topic",
        "bus/will",
        "--will-payload",
        "gone",
      ]);
      await dying.subscribed;
      await dying.stop("SIGKILL");
      await waitFor(() => willWatcher.messages().includes("gone"), 10_000, "the last will");
      await willWatcher.stop();

      // Persistent session: QoS 1 messages published while the client is away are kept for it.
      const persistent = ["-c", "-i", "keeper", "-q", "1", ...v311];
      const first = subscribe(port, ["bus/queue"], persistent);
      await first.subscribed;
      await first.stop();
      for (const m of ["m1", "m2"]) assert.equal((await pub(port, "bus/queue", m, v311)).code, 0);
      assert.equal((await pub(port, "bus/queue", "m3", [...v311, "-q", "0"])).code, 0);
      const back = await mosquittoTool("mosquitto_sub", [
        "-p",
        String(port),
        ...persistent,
        "-t",
        "bus/queue",
        "-C",
        "2",
        "-W",
        "5",
      ]);
      assert.deepEqual(back.stdout.trim().split("\n"), ["m1", "m2"], "queued QoS 1 messages, in order");

      // Clean session: nothing is kept.
      const clean = ["-i", "forgetful", "-q", "1", ...v311];
      const c1 = subscribe(port, ["bus/clean"], clean);
      await c1.subscribed;
      await c1.stop();
      assert.equal((await pub(port, "bus/clean", "lost", v311)).code, 0);
      const c2 = await mosquittoTool("mosquitto_sub", [
        "-p",
        String(port),
        ...clean,
        "-t",
        "bus/clean",
        "-C",
        "1",
        "-W",
        "2",
      ]);
      assert.equal(c2.stdout.trim(), "");

      // Local-bus topics are not device data.
      const body = await json(agent, "/api/v1/outbox");
      assert.deepEqual(body.records.filter((r: any) => !isConnectivityEvent(r)), []);
    } finally {
      await agent?.stop("SIGKILL").catch(() => {});
      removeDir(dir);
    }
  },
});
