/**
 * ThingsBoard's HTTP device API behind the control API's authentication, with a real outbox
 * (hono's `app.request()`): 200 only once the record is in the outbox, an unknown token is a
 * counted failed authentication that never shows the token, and the RPC long poll ends in 408.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createControlApp } from "../../src/control/mod.ts";
import { createCommands } from "../../src/device_commands/mod.ts";
import { DeviceRegistry } from "../../src/devices/mod.ts";
import { createIngest, DeadLetters, passThrough } from "../../src/ingest/mod.ts";
import { createOutbox } from "../../src/outbox/mod.ts";
import { createLogger, createTelemetry } from "../../src/telemetry/mod.ts";
import { createThingsBoardHttp, thingsBoardToken } from "../../src/transports/http/mod.ts";
import { removeDir, tempDir } from "../helpers/procs.ts";

function setup() {
  const dir = tempDir("outpost-tb-http-unit-");
  const outbox = createOutbox({ path: join(dir, "o.db"), maxBytes: 1 << 26, onFull: "reject" });
  const lines: string[] = [];
  const telemetry = createTelemetry(createLogger("debug", (line: string) => lines.push(line)));
  const devices = new DeviceRegistry(outbox.db, { telemetry });
  const ingest = createIngest({ outbox, devices, telemetry, rules: () => passThrough });
  const commands = createCommands({
    db: outbox.db,
    telemetry,
    send: () => false,
    isKnownDevice: (id) => devices.isKnown(id),
    seenDevices: () => devices.ids(),
  });
  commands.start();
  const app = createControlApp({
    token: "api-token-0123456789abcdef",
    edgeId: "e",
    version: "0.0.0",
    startedAt: Date.now(),
    outbox,
    devices,
    deadLetters: new DeadLetters(),
    telemetry,
    hubStatus: () => ({ configured: false, connected: false, lastAckAt: null }),
    tokenInPath: thingsBoardToken,
    extend: (a) => {
      a.route("/", createThingsBoardHttp({ ingest, telemetry, maxPayloadBytes: 1024, devices, commands }));
    },
  });
  const { token } = devices.create("meter-1") as { token: string };
  return {
    app,
    token,
    outbox,
    lines,
    devices,
    close() {
      commands.stop();
      outbox.close();
      removeDir(dir);
    },
  };
}

const post = (body: string) => ({ method: "POST", body, headers: { "content-type": "application/json" } });

Deno.test("ThingsBoard HTTP: 200 only once the records are in the outbox; attributes too; the device is online over http", async () => {
  const s = setup();
  try {
    const res = await s.app.request(
      `/api/v1/${s.token}/telemetry`,
      post('[{"ts": 1000, "values": {"t": 1}}, {"t": 2}]'),
    );
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "");
    const data = s.outbox.peek(10).filter((r) => r.kind !== "event");
    assert.deepEqual(data.map((r) => [r.device, r.kind, JSON.parse(r.payload)]), [
      ["meter-1", "telemetry", { t: 1 }],
      ["meter-1", "telemetry", { t: 2 }],
    ]);
    assert.equal((await s.app.request(`/api/v1/${s.token}/attributes`, post('{"fw": "1"}'))).status, 200);
    const meter = s.devices.list().find((d) => d.id === "meter-1");
    assert.equal(meter?.state, "online");
    assert.equal(meter?.transport, "http");
  } finally {
    s.close();
  }
});

Deno.test("ThingsBoard HTTP: unknown tokens are 401, counted, never logged; ten in a minute make it 429", async () => {
  const s = setup();
  try {
    const secret = "not-a-real-token-but-secret";
    for (let i = 0; i < 10; i++) {
      const res = await s.app.request(`/api/v1/${secret}/telemetry`, post('{"t": 1}'));
      assert.equal(res.status, 401);
      assert.deepEqual(await res.json(), { error: "Unknown device token" });
    }
    assert.equal((await s.app.request(`/api/v1/${secret}/telemetry`, post('{"t": 1}'))).status, 429);
    assert.ok(s.lines.some((l) => l.includes('"auth.refused"')));
    assert.ok(!s.lines.some((l) => l.includes(secret)), "the token is never logged");
    assert.equal(s.outbox.peek(10).length, 0);
  } finally {
    s.close();
  }
});

Deno.test("ThingsBoard HTTP: bad JSON is 400 with the path, too large 413, the poll without a command 408", async () => {
  const s = setup();
  try {
    let res = await s.app.request(`/api/v1/${s.token}/telemetry`, post('{"t": '));
    assert.equal(res.status, 400);
    assert.equal((await res.json()).errors[0].path, "");
    res = await s.app.request(`/api/v1/${s.token}/telemetry`, post(`{"t": "${"x".repeat(2000)}"}`));
    assert.equal(res.status, 413);
    res = await s.app.request(`/api/v1/${s.token}/rpc?timeout=10`);
    assert.equal(res.status, 408);
    res = await s.app.request(`/api/v1/${s.token}/rpc?timeout=300001`);
    assert.equal(res.status, 400);
    assert.equal((await res.json()).errors[0].path, "/timeout");
    res = await s.app.request(`/api/v1/${s.token}/rpc/nope`, post('{"ok": true}'));
    assert.equal(res.status, 404);
  } finally {
    s.close();
  }
});
