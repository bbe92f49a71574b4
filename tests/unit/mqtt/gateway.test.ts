/**
 * The ThingsBoard gateway API's pure parts: what a gateway's publishes become, what is refused and
 * with which JSON path, and the payloads outpost sends back.
 */
import assert from "node:assert/strict";
import {
  deviceAttributeResponse,
  gatewayAttributeResponse,
  gatewayRpcPayload,
  gatewayTopic,
  parseDeviceAttributeRequestTopic,
  parseGatewayAttributeRequest,
  parseGatewayData,
  parseGatewayRpcAnswer,
} from "../../../src/transports/mqtt/gateway.ts";
import { routePublish } from "../../../src/transports/mqtt/broker_parts.ts";

const enc = (v: unknown) => new TextEncoder().encode(typeof v === "string" ? v : JSON.stringify(v));
const ctx = {
  gateway: "gw",
  kind: "telemetry" as const,
  topic: "v1/gateway/telemetry",
  now: 5_000,
  maxBytes: 1 << 20,
};

Deno.test("gateway telemetry: each child's array of timestamped or bare entries becomes the child's messages", () => {
  const r = parseGatewayData(
    enc({ A: [{ ts: 1000, values: { t: 1 } }, { t: 2 }], B: [{ h: 3 }], C: [] }),
    ctx,
  );
  assert.ok(r.ok);
  assert.deepEqual(r.messages.map((m) => [m.device, m.ts, m.payload, m.source, m.kind]), [
    ["A", 1000, { t: 1 }, "gateway:gw", "telemetry"],
    ["A", 5000, { t: 2 }, "gateway:gw", "telemetry"],
    ["B", 5000, { h: 3 }, "gateway:gw", "telemetry"],
  ]);
  assert.equal(r.refused, 0);
});

Deno.test("gateway data: bad children are left out with their JSON path, the others kept", () => {
  const r = parseGatewayData(
    enc({ "bad id": [{ t: 1 }], "a/b": 1, obj: { t: 1 }, items: [{ t: 1 }, 3], ok: [{ t: 1 }] }),
    ctx,
  );
  assert.ok(r.ok);
  assert.deepEqual(r.messages.map((m) => m.device), ["ok"]);
  assert.equal(r.refused, 4);
  assert.match(r.problems[0], /^\/bad id: device name/);
  assert.match(r.problems[1], /^\/a~1b: device name/);
  assert.match(r.problems[2], /^\/obj: must be an array/);
  assert.match(r.problems[3], /^\/items: Payload item \/1 is a number/);
  const attrs = parseGatewayData(enc({ A: { fw: "1" }, B: [1] }), { ...ctx, kind: "attributes" });
  assert.ok(attrs.ok);
  assert.deepEqual(attrs.messages.map((m) => [m.device, m.kind, m.payload]), [["A", "attributes", {
    fw: "1",
  }]]);
  assert.match(attrs.problems[0], /^\/B: must be an object/);
});

Deno.test("gateway data: invalid JSON, non-objects, too large and too deep are refused whole", () => {
  const bad = (raw: string, max = 1 << 20) => {
    const r = parseGatewayData(enc(raw), { ...ctx, maxBytes: max });
    assert.ok(!r.ok);
    return r.reason;
  };
  assert.equal(bad('{"A": ['), "invalid-json");
  assert.equal(bad("[1]"), "not-object");
  assert.equal(bad('{"A": [{"t": 1}]}', 4), "too-large");
  assert.equal(bad(`{"A": [${"[".repeat(100)}${"]".repeat(100)}]}`), "too-deep");
  const big = parseGatewayData(enc({ A: [{ t: 1 }] }), { ...ctx, maxBatchBytes: 10 });
  assert.ok(!big.ok && big.reason === "batch-too-large");
});

Deno.test("gateway data: children past devices.max are refused and counted; admitted ones kept", () => {
  let room = 2;
  const r = parseGatewayData(enc({ a: [{ v: 1 }], b: [{ v: 1 }], c: [{ v: 1 }], d: [{ v: 1 }] }), {
    ...ctx,
    admit: () => (room-- > 0 ? undefined : "Device limit reached"),
  });
  assert.ok(r.ok);
  assert.deepEqual(r.messages.map((m) => m.device), ["a", "b"]);
  assert.equal(r.overLimit, 2);
  assert.equal(r.refused, 2);
});

Deno.test("gateway attribute requests and answers, shaped as ThingsBoard's server shapes them: one found is value, several values", () => {
  const one = parseGatewayAttributeRequest({ id: 1, device: "A", client: true, key: "fw" });
  assert.ok(one.ok);
  assert.equal(
    gatewayAttributeResponse(one.request, { fw: "1.2", t: 3 }),
    '{"id":1,"device":"A","value":"1.2"}',
  );
  assert.equal(gatewayAttributeResponse(one.request, {}), '{"id":1,"device":"A"}');
  const many = parseGatewayAttributeRequest({ id: "r2", device: "A", keys: ["fw", "x"] });
  assert.ok(many.ok);
  assert.equal(
    gatewayAttributeResponse(many.request, { fw: "1.2", t: 3 }),
    '{"id":"r2","device":"A","value":"1.2"}',
  );
  assert.equal(
    gatewayAttributeResponse(many.request, { fw: "1.2", x: 0 }),
    '{"id":"r2","device":"A","values":{"fw":"1.2","x":0}}',
  );
  const shared = parseGatewayAttributeRequest({ id: 3, device: "A", client: false, key: "fw" });
  assert.ok(shared.ok);
  assert.equal(gatewayAttributeResponse(shared.request, { fw: "1.2" }), '{"id":3,"device":"A"}');
  const noKey = parseGatewayAttributeRequest({ id: 1, device: "A" });
  assert.ok(!noKey.ok && noKey.message.startsWith("/key"));
  const noDevice = parseGatewayAttributeRequest({ id: 1, key: "a" });
  assert.ok(!noDevice.ok && noDevice.message.startsWith("/device"));
});

Deno.test("gateway commands: the payload on v1/gateway/rpc and the gateway's answer", () => {
  assert.equal(
    gatewayRpcPayload({ id: "c1", device: "A", method: "set", params: { v: 1 } }),
    '{"device":"A","data":{"id":"c1","method":"set","params":{"v":1}}}',
  );
  assert.deepEqual(parseGatewayRpcAnswer({ device: "A", id: 17, data: { ok: true } }), {
    ok: true,
    device: "A",
    id: "17",
    data: { ok: true },
  });
  assert.equal(parseGatewayRpcAnswer({ device: "A", data: {} }).ok, false);
});

Deno.test("device attribute requests: v1/devices/me/attributes/request/{n}, answered from the last values", () => {
  assert.equal(parseDeviceAttributeRequestTopic("v1/devices/me/attributes/request/7"), "7");
  assert.equal(parseDeviceAttributeRequestTopic("v1/devices/me/attributes/request/a/b"), undefined);
  assert.equal(
    deviceAttributeResponse({ clientKeys: "fw, x" }, { fw: 1, t: 2 }),
    '{"client":{"fw":1},"shared":{}}',
  );
  assert.equal(deviceAttributeResponse({}, { fw: 1, t: 2 }), '{"client":{"fw":1,"t":2},"shared":{}}');
  assert.equal(deviceAttributeResponse({ sharedKeys: "s" }, { fw: 1 }), '{"client":{},"shared":{}}');
});

Deno.test("gateway topics route by the connection's device identity; without one, data is refused", () => {
  const gw = { type: "device" as const, device: "gw", via: "thingsboard" as const };
  assert.deepEqual(gatewayTopic("v1/gateway/telemetry"), { type: "data", kind: "telemetry" });
  assert.equal(gatewayTopic("v1/gateway/other"), undefined);
  assert.deepEqual(routePublish(gw, "v1/gateway/telemetry", true), {
    type: "store",
    target: { type: "gateway", gateway: "gw", kind: "telemetry" },
  });
  assert.deepEqual(routePublish(gw, "v1/gateway/connect", true), {
    type: "gateway",
    gateway: "gw",
    op: "connect",
  });
  const nobody = routePublish({ type: "anonymous" }, "v1/gateway/attributes", true);
  assert.equal(nobody.type === "store" && nobody.target.type, "invalid");
  assert.deepEqual(routePublish({ type: "anonymous" }, "v1/gateway/connect", true), { type: "ignore" });
  assert.deepEqual(routePublish(gw, "v1/devices/me/attributes/request/3", true), {
    type: "attributes-request",
    device: "gw",
    n: "3",
  });
});
