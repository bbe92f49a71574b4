/**
 * The ThingsBoard gateway MQTT API with real clients: mosquitto_sub and mosquitto_pub sign in as
 * a gateway device (its token as the username) and act for three child devices: connect,
 * telemetry in both forms, attributes, attribute requests, a command from the hub answered by the
 * scripted gateway, disconnect, and the gateway's session ending. Also the ThingsBoard device
 * API's attribute request. Everything is checked at the agent and at the hub.
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
import { pub, requireTools, subscribe } from "./mqtt_helpers.ts";

requireTools();

Deno.test({
  name: "ThingsBoard gateway API: three children connect, send telemetry (both forms) and attributes, " +
    "ask for attributes, answer a command from the hub; disconnect and the gateway's session end make them offline",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-tb-gateway-");
    const edge = { id: "edge-tbgw", routingKey: "rk-edge-tbgw", secret: "secret-edge-tbgw-0123" };
    const hub = await startHub({ dir: join(dir, "hub"), edges: [edge] });
    const port = await freePort();
    const configPath = writeAgentConfig(join(dir, "agent"), {
      edgeId: edge.id,
      dataDir: "data",
      api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
      mqtt: { broker: { listen: `127.0.0.1:${port}`, auth: "token" } },
      hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: edge.routingKey, secret: edge.secret },
    });
    const agent = await startAgent(configPath);
    const subs: ReturnType<typeof subscribe>[] = [];
    try {
      await waitFor(
        async () => (await (await agent.api("/api/v1/status")).json()).hub.connected,
        15_000,
        "hub",
      );
      const created = await (await agent.api("/api/v1/devices", {
        method: "POST",
        body: JSON.stringify({ id: "gw-1" }),
      })).json();
      const token: string = created.token;
      const asGateway = ["-u", token];

      // The gateway's long-lived connection: commands and attribute answers arrive here.
      const gw = subscribe(port, ["v1/gateway/rpc", "v1/gateway/attributes/response"], [
        ...asGateway,
        "-q",
        "1",
        "-v",
        "-i",
        "gw-1-main",
      ]);
      subs.push(gw);
      await gw.subscribed;

      const gwPub = async (topic: string, body: unknown) => {
        const r = await pub(port, topic, JSON.stringify(body), asGateway);
        assert.equal(r.code, 0, `mosquitto_pub ${topic}: ${r.stderr}`);
      };
      for (const d of ["child-a", "child-b", "child-c"]) {
        await gwPub("v1/gateway/connect", { device: d, type: "thermometer" });
      }
      const devices = async () => {
        const body = await (await agent.api("/api/v1/devices")).json();
        return new Map<string, any>(body.devices.map((d: any) => [d.id, d]));
      };
      await waitFor(
        async () => {
          const m = await devices();
          return ["child-a", "child-b", "child-c"].every((d) => m.get(d)?.state === "online");
        },
        10_000,
        "three children online",
      );
      const online = await devices();
      for (const d of ["child-a", "child-b", "child-c"]) {
        assert.equal(online.get(d).transport, "gateway:gw-1");
        assert.ok(online.get(d).lastConnectAt, `${d} has lastConnectAt`);
      }
      assert.equal(online.get("gw-1").state, "online");
      assert.equal(online.get("gw-1").transport, "mqtt");

      // Telemetry in both forms: timestamped samples and bare entries.
      await gwPub("v1/gateway/telemetry", {
        "child-a": [{ ts: 1700000000000, values: { temperature: 21.5 } }, { temperature: 22 }],
        "child-b": [{ humidity: 40 }],
        "child-c": [{ ts: 1700000000500, values: { n: 1 } }],
      });
      await gwPub("v1/gateway/attributes", {
        "child-a": { fw: "1.2.0" },
        "child-b": { fw: "2.0.1", model: "h1" },
      });

      // Attribute requests: one key, and several.
      await gwPub("v1/gateway/attributes/request", { id: 1, device: "child-a", client: true, key: "fw" });
      await gwPub("v1/gateway/attributes/request", {
        id: 2,
        device: "child-b",
        client: true,
        keys: ["fw", "model", "absent"],
      });
      const answers = await waitFor(
        () => {
          const lines = gw.messages().filter((l) => l.startsWith("v1/gateway/attributes/response "));
          return lines.length >= 2 ? lines : undefined;
        },
        10_000,
        "two attribute answers",
      );
      const parsed = answers!.map((l) => JSON.parse(l.slice(l.indexOf(" ") + 1)));
      assert.deepEqual(parsed.find((a) => a.id === 1), { id: 1, device: "child-a", value: "1.2.0" });
      assert.deepEqual(parsed.find((a) => a.id === 2), {
        id: 2,
        device: "child-b",
        values: { fw: "2.0.1", model: "h1" },
      });

      // A command to child-b, posted at the hub, delivered on v1/gateway/rpc, answered by the gateway.
      const res = await hub.api(`/api/v1/edges/${edge.id}/commands?async=1`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          device: "child-b",
          method: "setInterval",
          params: { seconds: 30 },
          timeoutMs: 20_000,
        }),
      });
      assert.equal(res.status, 202, await res.clone().text());
      const { id } = await res.json();
      const rpcLine = await waitFor(
        () => gw.messages().find((l) => l.startsWith("v1/gateway/rpc ")),
        15_000,
        "the command at the gateway",
      ) as string;
      const rpc = JSON.parse(rpcLine.slice(rpcLine.indexOf(" ") + 1));
      assert.deepEqual(rpc, {
        device: "child-b",
        data: { id, method: "setInterval", params: { seconds: 30 } },
      });
      await gwPub("v1/gateway/rpc", { device: "child-b", id, data: { success: true, seconds: 30 } });
      const result = await waitFor(
        async () => {
          const c = await (await hub.api(`/api/v1/commands/${id}`)).json();
          return c.status === "ok" ? c : undefined;
        },
        15_000,
        "the command result at the hub",
      );
      assert.deepEqual(result.payload, { success: true, seconds: 30 });

      // The ThingsBoard device API: a child's attributes asked by a device connection of its own.
      const direct = await (await agent.api("/api/v1/devices", {
        method: "POST",
        body: JSON.stringify({ id: "meter-1" }),
      })).json();
      assert.equal(
        (await pub(port, "v1/devices/me/attributes", JSON.stringify({ fw: "0.9", serial: "X1" }), [
          "-u",
          direct.token,
        ]))
          .code,
        0,
      );
      const devSub = subscribe(port, ["v1/devices/me/attributes/response/+"], [
        "-u",
        direct.token,
        "-v",
        "-q",
        "1",
      ]);
      subs.push(devSub);
      await devSub.subscribed;
      await pub(port, "v1/devices/me/attributes/request/7", JSON.stringify({ clientKeys: "fw,absent" }), [
        "-u",
        direct.token,
      ]);
      const attrLine = await waitFor(
        () => devSub.messages().find((l) => l.startsWith("v1/devices/me/attributes/response/7 ")),
        10_000,
        "the device's attribute answer",
      ) as string;
      assert.deepEqual(JSON.parse(attrLine.slice(attrLine.indexOf(" ") + 1)), {
        client: { fw: "0.9" },
        shared: {},
      });
      // The gateway's topics are never relayed to other devices.
      assert.ok(!devSub.messages().some((l) => l.startsWith("v1/gateway/")));

      // child-c disconnects; then the gateway's connection ends and the others go offline.
      await gwPub("v1/gateway/disconnect", { device: "child-c" });
      await waitFor(
        async () => (await devices()).get("child-c")?.state === "offline",
        10_000,
        "child-c offline",
      );
      assert.equal((await devices()).get("child-a").state, "online");
      await gw.stop();
      subs.splice(subs.indexOf(gw), 1);
      await waitFor(
        async () => {
          const m = await devices();
          return m.get("child-a")?.state === "offline" && m.get("child-b")?.state === "offline" &&
            m.get("gw-1")?.state === "offline";
        },
        10_000,
        "the children offline with the gateway",
      );
      const after = await devices();
      assert.ok(after.get("child-a").lastDisconnectAt);
      assert.equal(after.get("child-a").transport, "gateway:gw-1");
      assert.equal(after.get("child-a").lastValues.temperature, 22);

      // At the hub: the children's data under their own ids, and their connectivity events.
      await waitDrained(agent);
      const records = await hubRecords(hub, edge.id, { connectivity: true });
      const of = (device: string, kind: string) =>
        records.filter((r) => r.device === device && r.kind === kind).map((r) => ({
          ts: r.ts,
          payload: r.payload,
        }));
      assert.deepEqual(of("child-a", "telemetry")[0], { ts: 1700000000000, payload: { temperature: 21.5 } });
      assert.deepEqual(of("child-a", "telemetry")[1].payload, { temperature: 22 });
      assert.deepEqual(of("child-b", "telemetry").map((r) => r.payload), [{ humidity: 40 }]);
      assert.deepEqual(of("child-c", "telemetry"), [{ ts: 1700000000500, payload: { n: 1 } }]);
      assert.deepEqual(of("child-b", "attributes").map((r) => r.payload), [{ fw: "2.0.1", model: "h1" }]);
      for (const d of ["child-a", "child-b", "child-c"]) {
        assert.deepEqual(of(d, "event").map((r) => r.payload), [
          { type: "connectivity", state: "online", transport: "gateway:gw-1" },
          { type: "connectivity", state: "offline", transport: "gateway:gw-1" },
        ], `${d}: online then offline at the hub`);
      }
      assert.deepEqual(of("gw-1", "event").map((r) => r.payload.state), ["online", "offline"]);
    } finally {
      for (const s of subs) await s.stop("SIGKILL");
      await agent.stop("SIGKILL").catch(() => {});
      await hub.stop().catch(() => {});
      removeDir(dir);
    }
  },
});
