/** Topic → device mapping (pure): the embedded broker's topics, ThingsBoard's, and `devicePattern`s. */
import assert from "node:assert/strict";
import {
  checkDevicePattern,
  compileDevicePattern,
  routeDeviceTopic,
  thingsBoardKind,
} from "../../../src/transports/mqtt/topics.ts";

Deno.test("devices/{device}/telemetry|attributes|events are device data; other topics are the local bus", () => {
  assert.deepEqual(routeDeviceTopic("devices/boiler-1/telemetry"), {
    type: "device",
    device: "boiler-1",
    kind: "telemetry",
  });
  assert.deepEqual(routeDeviceTopic("devices/b.2:x_y/attributes"), {
    type: "device",
    device: "b.2:x_y",
    kind: "attributes",
  });
  assert.deepEqual(routeDeviceTopic("devices/b/events"), { type: "device", device: "b", kind: "event" });
  for (
    const bus of [
      "devices/b/event",
      "devices/b/commands/1",
      "devices/b/telemetry/x",
      "sensors/b/telemetry",
      "devices",
    ]
  ) {
    assert.deepEqual(routeDeviceTopic(bus), { type: "bus" }, bus);
  }
  const bad = routeDeviceTopic("devices/has space/telemetry");
  assert.equal(bad.type, "invalid");
  assert.equal(bad.type === "invalid" && bad.reason, "invalid-device");
  assert.equal(routeDeviceTopic("devices//telemetry").type, "invalid");
});

Deno.test("ThingsBoard device API topics", () => {
  assert.equal(thingsBoardKind("v1/devices/me/telemetry"), "telemetry");
  assert.equal(thingsBoardKind("v1/devices/me/attributes"), "attributes");
  assert.equal(thingsBoardKind("v1/devices/me/rpc/response/1"), undefined);
  assert.equal(thingsBoardKind("v1/devices/you/telemetry"), undefined);
});

Deno.test("checkDevicePattern names what is wrong", () => {
  assert.equal(checkDevicePattern("devices/{device}/{kind}"), undefined);
  assert.equal(checkDevicePattern("a/+/{device}/#"), undefined);
  assert.match(checkDevicePattern("a/b")!, /exactly one \{device\}/);
  assert.match(checkDevicePattern("{device}/{device}")!, /exactly one/);
  assert.match(checkDevicePattern("{device}/#/x")!, /last level/);
  assert.match(checkDevicePattern("{device}/{kind}/{kind}")!, /at most one \{kind\}/);
  assert.match(checkDevicePattern("{device}/{what}")!, /Unknown placeholder/);
  assert.match(checkDevicePattern("{device}/a+")!, /whole level/);
});

Deno.test("compileDevicePattern maps topics to device and kind", () => {
  const def = compileDevicePattern("devices/{device}/{kind}");
  assert.deepEqual(def("devices/d1/events"), { type: "device", device: "d1", kind: "event" });
  assert.equal(def("devices/d1/other").type, "invalid");
  assert.equal(def("devices/d1/telemetry/x").type, "invalid");

  const site = compileDevicePattern("site/+/{device}/data", "attributes");
  assert.deepEqual(site("site/s1/pump-7/data"), { type: "device", device: "pump-7", kind: "attributes" });
  assert.equal(site("site/s1/pump-7/other").type, "invalid");

  const rest = compileDevicePattern("te/device/{device}/#", "event");
  assert.deepEqual(rest("te/device/door/x/e/opened"), { type: "device", device: "door", kind: "event" });
  assert.deepEqual(rest("te/device/door"), { type: "device", device: "door", kind: "event" });

  const badId = def("devices/no good/telemetry");
  assert.equal(badId.type === "invalid" && badId.reason, "invalid-device");
  assert.throws(() => compileDevicePattern("nothing"), /\{device\}/);
});
