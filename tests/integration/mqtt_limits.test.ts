/**
 * The embedded broker's bounds (SPEC §14, `mqtt.broker.limits`) against a real agent: a CONNECT
 * declaring 200 MB, more connections than allowed, more retained topics than allowed, a
 * persistent `#` lurker that went away, a session that never comes back, and a client guessing
 * tokens. Each refusal is counted exactly in /metrics, and the agent keeps serving.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { join } from "node:path";
import mqtt from "mqtt";
import {
  type AgentHandle,
  freePort,
  removeDir,
  startAgent,
  tempDir,
  TEST_TOKEN,
  waitFor,
  writeAgentConfig,
} from "../helpers/procs.ts";
import { brokerPort, pub, requireTools } from "./mqtt_helpers.ts";

async function limited(agent: AgentHandle, limit: string): Promise<number> {
  const text = await (await agent.api("/metrics")).text();
  const line = text.split("\n").find((l) => l.startsWith(`outpost_mqtt_limited_total{limit="${limit}"} `));
  return line ? Number(line.split(" ").pop()) : 0;
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

function connectClient(port: number, options: mqtt.IClientOptions): Promise<mqtt.MqttClient> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
      reconnectPeriod: 0,
      connectTimeout: 5_000,
      ...options,
    });
    c.once("connect", () => resolve(c));
    c.once("error", (e) => {
      c.end(true);
      reject(e);
    });
  });
}

async function startLimitedAgent(dir: string, broker: Record<string, unknown>): Promise<AgentHandle> {
  const configPath = writeAgentConfig(join(dir, "agent"), {
    edgeId: "gw-limits",
    dataDir: "data",
    api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
    mqtt: { broker: { listen: "127.0.0.1:0", ...broker } },
  });
  return await startAgent(configPath);
}

Deno.test({
  name:
    "a CONNECT declaring 200 MB is closed after its first bytes, before authentication, without the agent " +
    "growing; one connection over maxConnections is closed at once; both counted",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    requireTools();
    const dir = tempDir("outpost-mqtt-limits-");
    let agent: AgentHandle | undefined;
    const open: Socket[] = [];
    try {
      agent = await startLimitedAgent(dir, { auth: "token", limits: { maxConnections: 3 } });
      const port = await brokerPort(agent);
      const before = rssMb(agent.proc.pid);
      // Fixed header: CONNECT, remaining length 200 MB (variable-length encoding), then a stream.
      let n = 200 * 1024 * 1024;
      const header = [0x10];
      do {
        let b = n % 128;
        n = Math.floor(n / 128);
        if (n > 0) b |= 0x80;
        header.push(b);
      } while (n > 0);
      const sent = await new Promise<number>((resolve) => {
        const s = createConnection({ port, host: "127.0.0.1" });
        let bytes = 0;
        const chunk = new Uint8Array(64 * 1024);
        s.on("error", () => {});
        s.on("close", () => resolve(bytes));
        s.on("connect", () => {
          s.write(new Uint8Array(header));
          const pump = () => {
            while (bytes < 200 * 1024 * 1024 && !s.destroyed) {
              bytes += chunk.length;
              if (!s.write(chunk)) return void s.once("drain", pump);
            }
          };
          pump();
        });
      });
      assert.ok(sent < 32 * 1024 * 1024, `the agent read ${sent} bytes before closing`);
      const after = rssMb(agent.proc.pid);
      assert.ok(after - before < 20, `RSS ${before.toFixed(1)} → ${after.toFixed(1)} MB`);
      assert.equal(await limited(agent, "packet-size"), 1);

      // maxConnections 3: three sockets stay, the fourth is closed on accept.
      for (let i = 0; i < 3; i++) {
        const s = createConnection({ port, host: "127.0.0.1" });
        s.on("error", () => {});
        await new Promise((r) => s.once("connect", r));
        open.push(s);
      }
      await new Promise((r) => setTimeout(r, 100));
      const closedAt = await new Promise<boolean>((resolve) => {
        const s = createConnection({ port, host: "127.0.0.1" });
        s.on("error", () => {});
        s.on("close", () => resolve(true));
        setTimeout(() => resolve(false), 3_000);
      });
      assert.ok(closedAt, "the fourth connection is closed");
      assert.equal(await limited(agent, "connections"), 1);
      for (const s of open.splice(0)) s.destroy();
      const health = await agent.api("/api/v1/status");
      assert.equal(health.status, 200);
      await health.body?.cancel();
    } finally {
      for (const s of open) s.destroy();
      await agent?.stop();
      removeDir(dir);
    }
  },
});

Deno.test({
  name:
    "maxRetained: past the bound new retained topics are delivered but not kept, replacing a kept one works; " +
    "maxOfflineQueue: a persistent # lurker that left gets only the newest messages; sessionExpiry forgets it",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    requireTools();
    const dir = tempDir("outpost-mqtt-limits-");
    let agent: AgentHandle | undefined;
    const clients: mqtt.MqttClient[] = [];
    try {
      agent = await startLimitedAgent(dir, {
        auth: "none",
        limits: { maxRetained: 20, maxOfflineQueue: 10, sessionExpiry: "2s" },
      });
      const port = await brokerPort(agent);
      const publisher = await connectClient(port, { clientId: "pub-1" });
      clients.push(publisher);
      for (let i = 0; i < 30; i++) {
        await publisher.publishAsync(`bus/retained/${i}`, `v${i}`, { qos: 1, retain: true });
      }
      await publisher.publishAsync("bus/retained/0", "v0-new", { qos: 1, retain: true });
      const reader = await connectClient(port, { clientId: "reader-1" });
      clients.push(reader);
      const got = new Map<string, string>();
      reader.on("message", (topic, payload) => got.set(topic, payload.toString()));
      await reader.subscribeAsync("bus/retained/#", { qos: 1 });
      await waitFor(() => got.size >= 20, 5_000, "the retained messages");
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(got.size, 20);
      assert.equal(got.get("bus/retained/0"), "v0-new");
      assert.ok(!got.has("bus/retained/25"));
      assert.equal(await limited(agent, "retained"), 10);

      // A persistent lurker on # leaves; 50 QoS 1 messages are published; it keeps the newest 10.
      const lurker = await connectClient(port, { clientId: "lurker", clean: false });
      await lurker.subscribeAsync("bus/queue/#", { qos: 1 });
      await lurker.endAsync();
      for (let i = 0; i < 50; i++) await publisher.publishAsync("bus/queue/x", `m${i}`, { qos: 1 });
      const back = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
        clientId: "lurker",
        clean: false,
        reconnectPeriod: 0,
      });
      clients.push(back);
      const queued: string[] = [];
      back.on("message", (_t, payload) => queued.push(payload.toString()));
      await waitFor(() => queued.length >= 10, 5_000, "the queued messages");
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(queued, Array.from({ length: 10 }, (_, i) => `m${40 + i}`));
      assert.equal(await limited(agent, "offline-queue"), 40);
      await back.endAsync();

      // It does not come back within sessionExpiry (2 s): the session and its queue are gone.
      await waitFor(
        async () => (await limited(agent!, "session-expiry")) === 1,
        10_000,
        "the session to expire",
      );
      for (let i = 0; i < 5; i++) await publisher.publishAsync("bus/queue/x", `late${i}`, { qos: 1 });
      const again = await connectClient(port, { clientId: "lurker", clean: false });
      clients.push(again);
      const late: string[] = [];
      again.on("message", (_t, payload) => late.push(payload.toString()));
      await new Promise((r) => setTimeout(r, 500));
      assert.deepEqual(late, [], "an expired session has no subscriptions and no queue");
    } finally {
      for (const c of clients) c.end(true);
      await agent?.stop();
      removeDir(dir);
    }
  },
});

Deno.test({
  name:
    "MQTT failed authentication: after 10 wrong tokens from one address, the right token is refused for the " +
    "rest of the minute",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    requireTools();
    const dir = tempDir("outpost-mqtt-authlimit-");
    let agent: AgentHandle | undefined;
    try {
      agent = await startLimitedAgent(dir, { auth: "token" });
      const port = await brokerPort(agent);
      const res = await agent.api("/api/v1/devices", {
        method: "POST",
        body: JSON.stringify({ id: "dev-a" }),
      });
      const token = (await res.json()).token;
      const ok = await pub(port, "devices/dev-a/telemetry", '{"t":1}', [
        "-u",
        "dev-a",
        "-P",
        token,
        "-q",
        "1",
      ]);
      assert.equal(ok.code, 0, ok.stderr);
      for (let i = 0; i < 10; i++) {
        const r = await pub(port, "devices/dev-a/telemetry", '{"t":1}', [
          "-u",
          "dev-a",
          "-P",
          `wrong${i}`,
          "-q",
          "1",
        ]);
        assert.notEqual(r.code, 0);
      }
      const refused = await pub(port, "devices/dev-a/telemetry", '{"t":2}', [
        "-u",
        "dev-a",
        "-P",
        token,
        "-q",
        "1",
      ]);
      assert.notEqual(refused.code, 0, "the right token is refused for the rest of the minute");
      const line = await agent.proc.waitForEvent("auth.limited", 5_000);
      assert.equal(line.transport, "mqtt");
    } finally {
      await agent?.stop();
      removeDir(dir);
    }
  },
});
