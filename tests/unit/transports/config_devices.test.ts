/**
 * The `coap` and `modbus` config keys: defaults filled in, and every mistake reported at once
 * with its JSON Pointer (unknown keys, wrong types, a type that does not fit its table, word
 * order on a 16-bit value, duplicate names and devices).
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../../src/config/mod.ts";

Deno.test("coap is off unless configured; modbus defaults: port 502, unit 1, every 5 s, 1 s timeout", () => {
  const none = parseConfig({}, "/");
  assert.ok(none.ok);
  assert.equal(none.value.coap, undefined);
  assert.deepEqual(none.value.modbus, []);

  const r = parseConfig({
    coap: { listen: "127.0.0.1:5683" },
    modbus: [{
      device: "meter-1",
      host: "10.0.0.5",
      registers: [
        { name: "power", table: "holding", address: 0 },
        { name: "energy", table: "input", address: 2, type: "float32", wordOrder: "little", scale: 0.001 },
        { name: "on", table: "coil", address: 0 },
      ],
    }],
  }, "/");
  assert.ok(r.ok, JSON.stringify(!r.ok && r.issues));
  assert.deepEqual(r.value.coap, { listen: "127.0.0.1:5683" });
  const m = r.value.modbus[0];
  assert.deepEqual(
    { port: m.port, unitId: m.unitId, interval: m.interval, timeout: m.timeout },
    { port: 502, unitId: 1, interval: 5000, timeout: 1000 },
  );
  assert.equal(m.registers.length, 3);
});

Deno.test("coap and modbus mistakes: each reported with its path, all at once", () => {
  const r = parseConfig({
    coap: { listen: "5683", port: 1 },
    modbus: [
      {
        device: "bad id!",
        host: "",
        port: 70000,
        unitId: 300,
        interval: "10ms",
        timeout: "soon",
        registers: [
          { name: "a", table: "coil", address: 1, type: "uint16" },
          { name: "b", table: "holding", address: 1, wordOrder: "little" },
          { name: "c", table: "holdings", address: -1 },
          { name: "d", table: "input", address: 65535, type: "float32" },
          { name: "e", table: "discrete", address: 0, scale: 2 },
          { name: "f", table: "holding", address: 0, extra: true },
        ],
      },
      { device: "m2", host: "h" },
    ],
  }, "/");
  assert.ok(!r.ok);
  const byPath = Object.fromEntries(r.issues.map((i) => [i.path, i.message]));
  assert.deepEqual(Object.keys(byPath).sort(), [
    "/coap/listen",
    "/coap/port",
    "/modbus/0/device",
    "/modbus/0/host",
    "/modbus/0/interval",
    "/modbus/0/port",
    "/modbus/0/registers/0/type",
    "/modbus/0/registers/1/wordOrder",
    "/modbus/0/registers/2/address",
    "/modbus/0/registers/2/table",
    "/modbus/0/registers/3/address",
    "/modbus/0/registers/4/scale",
    "/modbus/0/registers/5/extra",
    "/modbus/0/timeout",
    "/modbus/0/unitId",
    "/modbus/1/registers",
  ]);
  assert.equal(byPath["/coap/port"], "unknown key");
  assert.equal(byPath["/modbus/0/interval"], "must be at least 100ms");
  assert.equal(byPath["/modbus/0/registers/0/type"], 'a coil is a bit: type must be "bool"');
  assert.equal(
    byPath["/modbus/0/registers/1/wordOrder"],
    "applies only to 32-bit types (uint32, int32, float32)",
  );
  assert.match(byPath["/modbus/0/registers/3/address"], /32-bit value needs two registers/);
  assert.equal(byPath["/modbus/1/registers"], "is required");
});

Deno.test("duplicate register names in a device and a device polled twice are refused with their paths", () => {
  const register = { name: "t", table: "holding", address: 0 };
  const names = parseConfig({
    modbus: [{ device: "m1", host: "h", registers: [register, { ...register, address: 1 }] }],
  }, "/");
  assert.ok(!names.ok);
  assert.deepEqual(names.issues, [{
    path: "/modbus/0/registers/1/name",
    message: 'duplicate register name "t"',
  }]);
  const devices = parseConfig({
    modbus: [
      { device: "m1", host: "h", registers: [register] },
      { device: "m1", host: "h2", registers: [register] },
    ],
  }, "/");
  assert.ok(!devices.ok);
  assert.deepEqual(devices.issues, [{ path: "/modbus/1/device", message: 'device "m1" is polled twice' }]);
});
