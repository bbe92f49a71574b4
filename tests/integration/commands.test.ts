/**
 * Device commands end to end, with real processes: the reference hub and an agent (each its own
 * process), devices played by Debian's mosquitto_sub / mosquitto_pub and by plain HTTP requests.
 * Commands are sent through the hub's HTTP API, as an operator would.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type AgentHandle,
  freePort,
  type HubHandle,
  hubRecords,
  removeDir,
  startAgent,
  startHub,
  tempDir,
  TEST_TOKEN,
  waitFor,
  writeAgentConfig,
} from "../helpers/procs.ts";
import { pub, requireTools, subscribe, type Subscriber } from "./mqtt_helpers.ts";

interface Setup {
  dir: string;
  hub: HubHandle;
  agent: AgentHandle;
  mqttPort: number;
  configPath: string;
  edge: string;
}

async function setup(prefix: string, edge: string): Promise<Setup> {
  const dir = tempDir(prefix);
  const creds = { id: edge, routingKey: `rk-${edge}`, secret: `secret-${edge}-0123` };
  const hub = await startHub({ dir: join(dir, "hub"), edges: [creds] });
  const mqttPort = await freePort();
  const configPath = writeAgentConfig(join(dir, "agent"), {
    edgeId: edge,
    dataDir: "data",
    api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
    mqtt: { broker: { listen: `127.0.0.1:${mqttPort}`, auth: "none" } },
    hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: creds.routingKey, secret: creds.secret },
  });
  const agent = await startAgent(configPath);
  await agent.proc.waitForEvent("mqtt.broker.started");
  await waitFor(
    async () => (await (await agent.api("/api/v1/status")).json()).hub.connected,
    15_000,
    "hub link",
  );
  return { dir, hub, agent, mqttPort, configPath, edge };
}

/** Sends a command through the hub's API; `async` answers 202 {id} at once. */
async function sendCommand(
  s: Setup,
  body: Record<string, unknown>,
  options: { async?: boolean } = {},
): Promise<{ id: string; status: string; payload: any }> {
  const res = await s.hub.api(`/api/v1/edges/${s.edge}/commands${options.async ? "?async=1" : ""}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(res.status, options.async ? 202 : 200, await res.clone().text());
  return await res.json();
}

async function hubCommand(s: Setup, id: string): Promise<any> {
  return await (await s.hub.api(`/api/v1/commands/${id}`)).json();
}

/** The first command a mosquitto_sub device received, parsed from its `-v` line. */
async function received(device: Subscriber): Promise<{ topic: string; body: any }> {
  const line = await waitFor(
    () => device.messages().find((l) => l.startsWith("devices/") || l.startsWith("v1/")),
    15_000,
    "a command at the device",
  ) as string;
  const i = line.indexOf(" ");
  return { topic: line.slice(0, i), body: JSON.parse(line.slice(i + 1)) };
}

async function postTelemetry(s: Setup, device: string, body: unknown): Promise<void> {
  const res = await s.agent.api(`/api/v1/devices/${device}/telemetry`, {
    method: "POST",
    body: JSON.stringify(body),
  });
  assert.equal(res.status, 202);
  await res.body?.cancel();
}

Deno.test({
  name:
    "commands through the hub's API: an MQTT device answers (ok round trip), a ThingsBoard-style device " +
    "answers over RPC, an offline device gets its command when it connects or it times out, an HTTP device " +
    "polls and answers; bad input (unknown device, oversized command) is a clear error and disturbs nothing",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    requireTools();
    const s = await setup("outpost-commands-", "gw-cmd");
    const devices: Subscriber[] = [];
    try {
      // 1. An MQTT device on the embedded broker answers a command: the hub's caller gets its payload.
      const valve = subscribe(s.mqttPort, ["devices/valve-1/commands/+"], ["-q", "1", "-v", "-i", "valve-1"]);
      devices.push(valve);
      await valve.subscribed;
      const pending = sendCommand(s, {
        device: "valve-1",
        method: "open",
        params: { to: 50 },
        timeoutMs: 15_000,
      });
      const got = await received(valve);
      assert.equal(got.topic, `devices/valve-1/commands/${got.body.id}`);
      assert.deepEqual({ method: got.body.method, params: got.body.params }, {
        method: "open",
        params: { to: 50 },
      });
      const answered = await pub(
        s.mqttPort,
        `devices/valve-1/commands/${got.body.id}/response`,
        '{"opened":true,"position":50}',
      );
      assert.equal(answered.code, 0, answered.stderr);
      assert.deepEqual(await pending, {
        id: got.body.id,
        status: "ok",
        payload: { opened: true, position: 50 },
      });

      // 2. A ThingsBoard-style device (its token as the MQTT username) gets {method, params} on RPC.
      const tb = await (await s.agent.api("/api/v1/devices", { method: "POST", body: '{"id":"tb-1"}' }))
        .json();
      const tbDevice = subscribe(s.mqttPort, ["v1/devices/me/rpc/request/+"], [
        "-q",
        "1",
        "-v",
        "-u",
        tb.token,
      ]);
      devices.push(tbDevice);
      await tbDevice.subscribed;
      const tbPending = sendCommand(s, { device: "tb-1", method: "getState", params: {}, timeoutMs: 15_000 });
      const tbGot = await received(tbDevice);
      assert.match(tbGot.topic, /^v1\/devices\/me\/rpc\/request\/[0-9a-f-]{36}$/);
      assert.deepEqual(tbGot.body, { method: "getState", params: {} });
      const tbId = tbGot.topic.split("/").pop()!;
      await pub(s.mqttPort, `v1/devices/me/rpc/response/${tbId}`, '{"error":"busy"}', ["-u", tb.token]);
      assert.deepEqual(await tbPending, { id: tbId, status: "error", payload: { error: "busy" } });

      // 3. An offline device: the command waits (async=1) and goes out when the device connects.
      await postTelemetry(s, "pump-1", { rpm: 1200, seq: 1 });
      const later = await sendCommand(s, {
        device: "pump-1",
        method: "stop",
        params: null,
        timeoutMs: 30_000,
      }, {
        async: true,
      });
      assert.equal(later.status, "pending");
      await new Promise((r) => setTimeout(r, 500));
      assert.equal((await hubCommand(s, later.id)).status, "pending", "nobody to deliver it to yet");
      const edgeView = await (await s.agent.api(`/api/v1/commands/${later.id}`)).json();
      assert.equal(edgeView.state, "pending");
      const pump = subscribe(s.mqttPort, ["devices/pump-1/commands/#"], ["-q", "1", "-v"]);
      devices.push(pump);
      const pumpGot = await received(pump);
      assert.deepEqual(
        pumpGot.body,
        { id: later.id, method: "stop", params: {} },
        "the hub sends {} for null params",
      );
      await pub(
        s.mqttPort,
        `devices/pump-1/commands/${later.id}/response`,
        '{"status":"ok","payload":{"stopped":true}}',
      );
      const done = await waitFor(
        async () => {
          const c = await hubCommand(s, later.id);
          return c.status !== "pending" ? c : undefined;
        },
        10_000,
        "the late result at the hub",
      );
      assert.equal(done.status, "ok");
      assert.deepEqual(done.payload, { stopped: true });

      // 4. ...and times out when it does not connect: the payload says it was never delivered.
      await postTelemetry(s, "meter-1", { kwh: 1 });
      const timedOut = await sendCommand(s, { device: "meter-1", method: "read", timeoutMs: 1500 });
      assert.equal(timedOut.status, "timeout");
      assert.equal(timedOut.payload.delivered, false, JSON.stringify(timedOut));
      assert.match(timedOut.payload.error, /did not connect within 1500 ms: the command was never delivered/);

      // 5. An HTTP-only device long-polls with its own token and answers by POST.
      const http = await (await s.agent.api("/api/v1/devices", { method: "POST", body: '{"id":"http-1"}' }))
        .json();
      const asDevice = { authorization: `Bearer ${http.token}` };
      const poll = fetch(`http://127.0.0.1:${s.agent.apiPort}/api/v1/devices/http-1/commands?wait=20`, {
        headers: asDevice,
      });
      await new Promise((r) => setTimeout(r, 300));
      const httpCmd = await sendCommand(s, {
        device: "http-1",
        method: "reboot",
        params: { delayS: 1 },
        timeoutMs: 15_000,
      }, {
        async: true,
      });
      const polled = await poll;
      assert.equal(polled.status, 200);
      assert.deepEqual(await polled.json(), [{ id: httpCmd.id, method: "reboot", params: { delayS: 1 } }]);
      const answer = await fetch(
        `http://127.0.0.1:${s.agent.apiPort}/api/v1/devices/http-1/commands/${httpCmd.id}`,
        {
          method: "POST",
          headers: { ...asDevice, "content-type": "application/json" },
          body: '{"rebooting":true}',
        },
      );
      assert.equal(answer.status, 200);
      assert.deepEqual(await answer.json(), { id: httpCmd.id, status: "ok" });
      const httpDone = await waitFor(
        async () => {
          const c = await hubCommand(s, httpCmd.id);
          return c.status !== "pending" ? c : undefined;
        },
        10_000,
        "the HTTP device's result at the hub",
      );
      assert.deepEqual([httpDone.status, httpDone.payload], ["ok", { rebooting: true }]);

      // 6. Bad input from the hub side: a clear error result each, and nothing else disturbed.
      await postTelemetry(s, "pump-1", { rpm: 1300, seq: 2 });
      const unknown = await sendCommand(s, { device: "ghost-7", method: "open", timeoutMs: 5000 });
      assert.equal(unknown.status, "error");
      assert.equal(
        unknown.payload.error,
        'Unknown device "ghost-7": it has never been seen by this edge and is not provisioned',
      );
      const oversized = await sendCommand(s, {
        device: "valve-1",
        method: "flash",
        params: { image: "x".repeat(80_000) },
        timeoutMs: 5000,
      });
      assert.equal(oversized.status, "error");
      assert.match(oversized.payload.error, /^Params of \d+ bytes are over the 65536-byte limit$/);
      await postTelemetry(s, "pump-1", { rpm: 1400, seq: 3 });
      // The device that was sent nothing saw nothing; the link and the broker carry on.
      assert.equal(valve.messages().length, 1);
      const again = sendCommand(s, { device: "valve-1", method: "close", timeoutMs: 15_000 });
      await waitFor(() => valve.messages().length === 2, 10_000, "the next command at valve-1");
      const next = JSON.parse(valve.messages()[1].slice(valve.messages()[1].indexOf(" ") + 1));
      await pub(s.mqttPort, `devices/valve-1/commands/${next.id}/response`, '"closed"');
      assert.deepEqual(await again, { id: next.id, status: "ok", payload: "closed" });
      const seqs = await waitFor(
        async () => {
          const got = (await hubRecords(s.hub, s.edge)).filter((r) => r.device === "pump-1").map((r) =>
            r.payload.seq
          );
          return got.length === 3 ? got : undefined;
        },
        10_000,
        "the telemetry around the bad commands",
      );
      assert.deepEqual(seqs, [1, 2, 3]);

      // What the edge reports: every command, finished and acknowledged by the hub.
      const list = await waitFor(
        async () => {
          const body = await (await s.agent.api("/api/v1/commands?limit=50")).json();
          return body.unacked === 0 ? body : undefined;
        },
        10_000,
        "every result acknowledged",
      );
      assert.equal(list.commands.length, 8);
      assert.ok(list.commands.every((c: any) => c.state === "done" && c.resultAcked));
    } finally {
      for (const d of devices) await d.stop();
      await s.agent.stop("SIGKILL");
      await s.hub.proc.kill("SIGKILL");
      removeDir(s.dir);
    }
  },
});

Deno.test({
  name:
    "the hub link cut while a command is in flight: the device answers while the hub is down, the result " +
    "reaches the hub after reconnect; a waiting command survives an agent restart",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    requireTools();
    const s = await setup("outpost-commands-cut-", "gw-cut");
    let hub = s.hub;
    let agent = s.agent;
    const devices: Subscriber[] = [];
    try {
      const valve = subscribe(s.mqttPort, ["devices/valve-9/commands/+"], ["-q", "1", "-v"]);
      devices.push(valve);
      await valve.subscribed;
      const cmd = await sendCommand(s, {
        device: "valve-9",
        method: "open",
        params: { to: 10 },
        timeoutMs: 60_000,
      }, {
        async: true,
      });
      const got = await received(valve);
      assert.equal(got.body.id, cmd.id);

      // The agent has the command; the hub goes away (SIGKILL: a crash, no goodbye).
      await hub.proc.kill("SIGKILL");
      await waitFor(
        async () => !(await (await agent.api("/api/v1/status")).json()).hub.connected,
        10_000,
        "link down",
      );
      const answered = await pub(
        s.mqttPort,
        `devices/valve-9/commands/${cmd.id}/response`,
        '{"opened":true}',
      );
      assert.equal(answered.code, 0, answered.stderr);
      const kept = await waitFor(
        async () => {
          const c = await (await agent.api(`/api/v1/commands/${cmd.id}`)).json();
          return c.state === "done" ? c : undefined;
        },
        10_000,
        "the answer stored at the edge",
      );
      assert.equal(kept.status, "ok");
      assert.equal(kept.resultAcked, false, "the hub has not seen it");

      // The hub comes back on the same ports with the same database: the result arrives.
      hub = await startHub({
        dir: join(s.dir, "hub"),
        edges: [{ id: s.edge, routingKey: `rk-${s.edge}`, secret: `secret-${s.edge}-0123` }],
        grpcPort: hub.grpcPort,
        apiPort: hub.apiPort,
      });
      const late = await waitFor(
        async () => {
          const c = await (await hub.api(`/api/v1/commands/${cmd.id}`)).json();
          return c.status === "ok" ? c : undefined;
        },
        20_000,
        "the result at the restarted hub",
      );
      assert.deepEqual(late.payload, { opened: true });
      await waitFor(
        async () => (await (await agent.api(`/api/v1/commands/${cmd.id}`)).json()).resultAcked,
        10_000,
        "ack",
      );

      // A command for a device that is away survives an agent crash and goes out when it connects.
      await valve.stop();
      const waiting = await sendCommand(s, { device: "valve-9", method: "close", timeoutMs: 60_000 }, {
        async: true,
      });
      await waitFor(
        async () => (await (await agent.api(`/api/v1/commands/${waiting.id}`)).json()).state === "pending",
        10_000,
      );
      await agent.stop("SIGKILL");
      agent = await startAgent(s.configPath);
      await agent.proc.waitForEvent("mqtt.broker.started");
      const back = subscribe(s.mqttPort, ["devices/valve-9/commands/+"], ["-q", "1", "-v"]);
      devices.push(back);
      const again = await received(back);
      assert.deepEqual(again.body, { id: waiting.id, method: "close", params: {} });
      await pub(s.mqttPort, `devices/valve-9/commands/${waiting.id}/response`, '{"closed":true}');
      const closed = await waitFor(
        async () => {
          const c = await (await hub.api(`/api/v1/commands/${waiting.id}`)).json();
          return c.status === "ok" ? c : undefined;
        },
        20_000,
        "the result after the agent restart",
      );
      assert.deepEqual(closed.payload, { closed: true });
    } finally {
      for (const d of devices) await d.stop();
      await agent.stop("SIGKILL");
      await hub.proc.kill("SIGKILL");
      removeDir(s.dir);
    }
  },
});
