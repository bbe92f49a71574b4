/** Command topics on MQTT: which filters make a device listen, and which topics carry answers. */
import assert from "node:assert/strict";
import {
  commandPayload,
  listensForCommand,
  listensForRpc,
  parseResponseTopic,
  parseRpcResponseTopic,
  rpcRequestPayload,
  topicMatches,
} from "../../../src/transports/mqtt/commands.ts";

Deno.test("a device listens when a filter names it; a wildcard device level is not the device", () => {
  for (
    const f of [
      "devices/valve-1/commands/+",
      "devices/valve-1/commands/#",
      "devices/valve-1/#",
      "devices/valve-1/commands/c1",
    ]
  ) {
    assert.ok(listensForCommand(f, "valve-1", "c1"), f);
  }
  for (
    const f of [
      "devices/+/commands/+",
      "#",
      "devices/#",
      "devices/valve-2/commands/+",
      "devices/valve-1/commands/c2",
      "devices/valve-1/telemetry",
    ]
  ) {
    assert.ok(!listensForCommand(f, "valve-1", "c1"), f);
  }
  assert.ok(listensForRpc("v1/devices/me/rpc/request/+"));
  assert.ok(listensForRpc("v1/devices/me/#"));
  assert.ok(!listensForRpc("v1/devices/me/attributes"));
});

Deno.test("answer topics carry the device and command id; anything else is not an answer", () => {
  assert.deepEqual(parseResponseTopic("devices/valve-1/commands/c-1/response"), {
    device: "valve-1",
    id: "c-1",
  });
  assert.equal(parseResponseTopic("devices/valve-1/commands/c-1"), undefined);
  assert.equal(parseResponseTopic("devices/valve-1/telemetry/c-1/response"), undefined);
  assert.equal(parseResponseTopic("devices/+/commands/c-1/response"), undefined);
  assert.equal(parseRpcResponseTopic("v1/devices/me/rpc/response/42"), "42");
  assert.equal(parseRpcResponseTopic("v1/devices/me/rpc/request/42"), undefined);
  assert.equal(parseRpcResponseTopic("v1/devices/me/rpc/response/a/b"), undefined);
  assert.ok(topicMatches("a/+/c/#", "a/b/c"));
  assert.ok(topicMatches("a/+/c/#", "a/b/c/d/e"));
  assert.ok(!topicMatches("a/+", "a/b/c"));
});

Deno.test("payloads: {id, method, params} on the commands topic, {method, params} for ThingsBoard RPC", () => {
  const c = { id: "c1", device: "valve-1", method: "open", params: { to: 5 } };
  assert.deepEqual(JSON.parse(commandPayload(c)), { id: "c1", method: "open", params: { to: 5 } });
  assert.deepEqual(JSON.parse(rpcRequestPayload(c)), { method: "open", params: { to: 5 } });
});
