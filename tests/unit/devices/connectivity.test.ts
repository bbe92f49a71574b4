/**
 * Connectivity (SPEC §10) with an injected clock, a real registry and a real outbox: a
 * connectionless device goes online with its activity, offline when `inactivityTimeout` passes
 * without more, and online again; session devices (MQTT, gateway children) stay online while a
 * session is open, whatever the clock; every change becomes an `event` record for the hub.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createConnectivity, DeviceRegistry } from "../../../src/devices/mod.ts";
import { createIngest, passThrough } from "../../../src/ingest/mod.ts";
import { createOutbox } from "../../../src/outbox/mod.ts";
import { createLogger, createTelemetry } from "../../../src/telemetry/mod.ts";
import { removeDir, tempDir } from "../../helpers/procs.ts";

function setup(options: { max?: number } = {}) {
  const dir = tempDir("outpost-connectivity-");
  const outbox = createOutbox({ path: join(dir, "o.db"), maxBytes: 1 << 26, onFull: "reject" });
  const telemetry = createTelemetry(createLogger("error", () => {}));
  let t = Date.UTC(2026, 0, 1);
  const clock = { now: () => t, advance: (ms: number) => (t += ms) };
  const registry = new DeviceRegistry(outbox.db, {
    max: options.max,
    telemetry,
    now: clock.now,
    inactivityTimeout: 60_000,
  });
  const ingest = createIngest({
    outbox,
    devices: registry,
    telemetry,
    rules: () => passThrough,
    now: clock.now,
  });
  const connectivity = createConnectivity({
    registry,
    emit: (records) => ingest.emit(records),
    telemetry,
    sweepEveryMs: 3_600_000, // the test sweeps by hand, on its own clock
    onOnline: (device) => cameOnline.push(device),
  });
  const cameOnline: string[] = [];
  const controller = new AbortController();
  connectivity.start({ signal: controller.signal });
  const events = async () => {
    await connectivity.flush();
    return outbox.peek(1000).filter((r) => r.kind === "event").map((r) => ({
      device: r.device,
      ts: r.ts,
      ...JSON.parse(r.payload),
    }));
  };
  const state = (id: string) => registry.list().find((d) => d.id === id);
  return {
    registry,
    ingest,
    clock,
    events,
    state,
    cameOnline,
    async close() {
      controller.abort();
      await connectivity.stop();
      outbox.close();
      removeDir(dir);
    },
  };
}

Deno.test("a connectionless device: online with activity, offline after the inactivity timeout, online again; each change an event record", async () => {
  const s = setup();
  try {
    const t0 = s.clock.now();
    const accepted = await s.ingest.accept([{
      device: "pump-1",
      kind: "telemetry",
      ts: t0,
      payload: { p: 1 },
      source: "http",
    }]);
    assert.equal(accepted.ok, true);
    assert.equal(s.state("pump-1")?.state, "online");
    assert.equal(s.state("pump-1")?.transport, "http");
    assert.equal(s.state("pump-1")?.lastActivityAt, new Date(t0).toISOString());

    s.clock.advance(59_999);
    assert.equal(s.registry.sweep(), 0, "still within the timeout");
    assert.equal(s.state("pump-1")?.state, "online");

    s.clock.advance(1);
    assert.equal(s.registry.sweep(), 1);
    assert.equal(s.state("pump-1")?.state, "offline");
    assert.equal(s.state("pump-1")?.lastActivityAt, new Date(t0).toISOString());

    s.clock.advance(5_000);
    const t2 = s.clock.now();
    assert.equal(s.registry.activity("pump-1", "coap"), true);
    assert.equal(s.state("pump-1")?.state, "online");
    assert.equal(s.state("pump-1")?.transport, "coap");

    assert.deepEqual(await s.events(), [
      { device: "pump-1", ts: t0, type: "connectivity", state: "online", transport: "http" },
      { device: "pump-1", ts: t0 + 60_000, type: "connectivity", state: "offline", transport: "http" },
      { device: "pump-1", ts: t2, type: "connectivity", state: "online", transport: "coap" },
    ]);
    assert.deepEqual(s.cameOnline, ["pump-1", "pump-1"], "told each time it came online");
  } finally {
    await s.close();
  }
});

Deno.test("a session keeps a device online past the inactivity timeout; the last session closing takes it offline", async () => {
  const s = setup();
  try {
    assert.equal(s.registry.connected("meter-1", "mqtt"), true);
    assert.equal(s.registry.connected("meter-1", "mqtt"), true); // a second connection
    s.clock.advance(3_600_000);
    assert.equal(s.registry.sweep(), 0);
    assert.equal(s.state("meter-1")?.state, "online");
    s.registry.disconnected("meter-1", "mqtt");
    assert.equal(s.state("meter-1")?.state, "online", "one connection is still open");
    s.registry.disconnected("meter-1", "mqtt");
    assert.equal(s.state("meter-1")?.state, "offline");
    assert.ok(s.state("meter-1")?.lastDisconnectAt);
    assert.deepEqual((await s.events()).map((e) => e.state), ["online", "offline"]);
  } finally {
    await s.close();
  }
});

Deno.test("gateway children: online through their gateway, offline on disconnect or when the gateway's session ends", async () => {
  const s = setup();
  try {
    s.registry.connected("gw", "mqtt");
    s.registry.connected("a", "gateway:gw");
    s.registry.connected("a", "gateway:gw"); // announced again: still one session
    // A child named only in telemetry is connected through its gateway too.
    await s.ingest.accept([{
      device: "b",
      kind: "telemetry",
      ts: 1,
      payload: { x: 1 },
      source: "gateway:gw",
    }]);
    s.registry.connected("c", "gateway:gw");
    assert.deepEqual(s.registry.childrenOf("gw").sort(), ["a", "b", "c"]);
    assert.equal(s.registry.gatewayOf("b"), "gw");
    assert.equal(s.state("b")?.transport, "gateway:gw");
    s.clock.advance(3_600_000);
    s.registry.sweep();
    assert.equal(s.state("a")?.state, "online", "children are session devices");
    s.registry.disconnected("c", "gateway:gw");
    assert.equal(s.state("c")?.state, "offline");
    s.registry.disconnected("gw", "mqtt");
    for (const d of ["gw", "a", "b", "c"]) assert.equal(s.state(d)?.state, "offline", d);
    assert.equal(s.registry.gatewayOf("a"), undefined);
    const events = await s.events();
    assert.deepEqual(events.filter((e) => e.device === "a").map((e) => [e.state, e.transport]), [
      ["online", "gateway:gw"],
      ["offline", "gateway:gw"],
    ]);
    assert.equal(events.length, 8);

    // A child announced by a second gateway moves to it: one gateway at a time.
    s.registry.connected("gw2", "mqtt");
    s.registry.connected("gw3", "mqtt");
    s.registry.connected("m", "gateway:gw2");
    s.registry.connected("m", "gateway:gw3");
    assert.deepEqual([s.registry.childrenOf("gw2"), s.registry.childrenOf("gw3")], [[], ["m"]]);
    s.registry.disconnected("gw3", "mqtt");
    assert.equal(s.state("m")?.state, "offline", "its one session closed with its gateway");
  } finally {
    await s.close();
  }
});

Deno.test("connectivity of invented ids is bounded by devices.max: refused past it, counted", async () => {
  const s = setup({ max: 3 });
  try {
    assert.equal(s.registry.connected("a", "mqtt"), true);
    assert.equal(s.registry.activity("b", "http"), true);
    assert.equal(s.registry.connected("c", "gateway:gw"), true);
    assert.equal(s.registry.connected("d", "gateway:gw"), false);
    assert.equal(s.registry.activity("e", "http"), false);
    assert.equal(s.registry.size, 3);
    assert.equal(s.registry.refused, 2);
    assert.equal(s.registry.list().length, 3);
  } finally {
    await s.close();
  }
});
