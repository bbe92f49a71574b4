/** The control API and HTTP ingest, exercised through hono's `app.request()` over a real outbox. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createHttpIngest } from "../../src/transports/http/mod.ts";
import { createControlApp } from "../../src/control/mod.ts";
import { DeviceRegistry } from "../../src/devices/mod.ts";
import { createIngest, DeadLetters, passThrough } from "../../src/ingest/mod.ts";
import { createOutbox } from "../../src/outbox/mod.ts";
import { createLogger, createTelemetry } from "../../src/telemetry/mod.ts";
import { removeDir, tempDir } from "../helpers/procs.ts";

const TOKEN = "control-test-token-0123456789";

function setup(options: { maxBytes?: number; onFull?: "reject" | "drop-oldest" } = {}) {
  const dir = tempDir();
  const outbox = createOutbox({
    path: join(dir, "o.db"),
    maxBytes: options.maxBytes ?? 1 << 30,
    onFull: options.onFull ?? "reject",
  });
  const telemetry = createTelemetry(createLogger("error", () => {}));
  const devices = new DeviceRegistry(outbox.db);
  const ingest = createIngest({ outbox, devices, telemetry, rules: () => passThrough });
  const app = createControlApp({
    token: TOKEN,
    edgeId: "gw-test",
    version: "9.9.9",
    startedAt: Date.now(),
    outbox,
    devices,
    deadLetters: new DeadLetters(),
    telemetry,
    hubStatus: () => ({ configured: false, connected: false, lastAckAt: null }),
    routes: [createHttpIngest({ ingest, telemetry, maxPayloadBytes: 256 * 1024 })],
  });
  const req = (path: string, init: RequestInit & { token?: string | null } = {}) => {
    const headers = new Headers(init.headers);
    if (init.token !== null) headers.set("authorization", `Bearer ${init.token ?? TOKEN}`);
    return app.request(path, { ...init, headers });
  };
  return {
    app,
    outbox,
    req,
    close() {
      outbox.close();
      removeDir(dir);
    },
  };
}

const post = (body: string) => ({ method: "POST", body, headers: { "content-type": "application/json" } });

Deno.test("healthz answers without a token", async () => {
  const t = setup();
  try {
    const res = await t.req("/healthz", { token: null });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: "ok" });
  } finally {
    t.close();
  }
});

Deno.test("ingest: object, array batch and {ts, values} are accepted after commit (202 with the count)", async () => {
  const t = setup();
  try {
    let res = await t.req("/api/v1/devices/boiler-1/telemetry", post('{"temperature": 21.5}'));
    assert.equal(res.status, 202);
    assert.deepEqual(await res.json(), { accepted: 1 });
    res = await t.req(
      "/api/v1/devices/boiler-1/telemetry",
      post('[{"a":1},{"a":2},{"ts":1700000000000,"values":{"a":3}}]'),
    );
    assert.deepEqual(await res.json(), { accepted: 3 });
    res = await t.req("/api/v1/devices/boiler-1/events", post('{"door":"open"}'));
    assert.equal(res.status, 202);
    const rows = t.outbox.claim(0, 10);
    assert.equal(rows.length, 5, "all five are in the outbox when 202 is answered");
    assert.equal(rows[3].ts, 1700000000000);
    assert.deepEqual(JSON.parse(rows[3].payload), { a: 3 });
    assert.equal(rows[4].kind, "event");
  } finally {
    t.close();
  }
});

Deno.test("bad input: invalid JSON 400 (says why), non-object 400, over 256 KiB 413, nothing stored", async () => {
  const t = setup();
  try {
    let res = await t.req("/api/v1/devices/d1/telemetry", post('{"temperature": '));
    assert.equal(res.status, 400);
    assert.match((await res.json()).error, /not valid JSON/);
    res = await t.req("/api/v1/devices/d1/telemetry", post("42"));
    assert.equal(res.status, 400);
    assert.match((await res.json()).error, /a number, expected a JSON object/);
    res = await t.req("/api/v1/devices/d1/telemetry", post('[{"a":1}, "x"]'));
    assert.equal(res.status, 400);
    assert.match((await res.json()).error, /item \/1/);
    res = await t.req("/api/v1/devices/d1/telemetry", post(JSON.stringify({ big: "x".repeat(256 * 1024) })));
    assert.equal(res.status, 413);
    assert.equal(t.outbox.stats().depth, 0);
    const status = await (await t.req("/api/v1/status")).json();
    assert.equal(status.ingest.rejected, 4);
    assert.equal(status.ingest.accepted, 0);
  } finally {
    t.close();
  }
});

Deno.test("auth: no token and a wrong token are 401; a device's own token may post only for itself", async () => {
  const t = setup();
  try {
    assert.equal((await t.req("/api/v1/status", { token: null })).status, 401);
    assert.equal((await t.req("/api/v1/status", { token: "wrong" })).status, 401);
    assert.equal((await t.req("/metrics", { token: null })).status, 401);
    assert.equal((await t.req("/api/v1/devices/d1/telemetry", { ...post("{}"), token: null })).status, 401);
    const created = await t.req("/api/v1/devices", post('{"id":"sensor-7"}'));
    assert.equal(created.status, 201);
    const { id, token } = await created.json();
    assert.equal(id, "sensor-7");
    assert.equal((await t.req("/api/v1/devices", post('{"id":"sensor-7"}'))).status, 409);
    assert.equal(
      (await t.req("/api/v1/devices/sensor-7/telemetry", { ...post('{"a":1}'), token })).status,
      202,
    );
    assert.equal(
      (await t.req("/api/v1/devices/sensor-8/telemetry", { ...post('{"a":1}'), token })).status,
      401,
    );
    assert.equal(
      (await t.req("/api/v1/status", { token })).status,
      401,
      "a device token is not an API token",
    );
  } finally {
    t.close();
  }
});

Deno.test("outbox full under reject: 507, and accepted messages untouched", async () => {
  const t = setup({ maxBytes: 65536, onFull: "reject" });
  try {
    let codes: number[] = [];
    for (let i = 0; i < 40; i++) {
      codes.push(
        (await t.req("/api/v1/devices/d/telemetry", post(JSON.stringify({ i, pad: "x".repeat(4000) }))))
          .status,
      );
    }
    codes = [...new Set(codes)];
    assert.deepEqual(codes, [202, 507]);
    const depth = t.outbox.stats().depth;
    assert.deepEqual(
      t.outbox.claim(0, 100).map((r) => JSON.parse(r.payload).i),
      Array.from({ length: depth }, (_, i) => i),
    );
  } finally {
    t.close();
  }
});

Deno.test("outbox full under drop-oldest: 202 always, oldest dropped and counted in status", async () => {
  const t = setup({ maxBytes: 65536, onFull: "drop-oldest" });
  try {
    for (let i = 0; i < 40; i++) {
      assert.equal(
        (await t.req("/api/v1/devices/d/telemetry", post(JSON.stringify({ i, pad: "x".repeat(4000) }))))
          .status,
        202,
      );
    }
    const status = await (await t.req("/api/v1/status")).json();
    assert.equal(status.outbox.depth + status.outbox.dropped, 40);
    assert.ok(status.outbox.dropped > 0);
    const kept = t.outbox.claim(0, 100).map((r) => JSON.parse(r.payload).i);
    assert.equal(kept[kept.length - 1], 39);
  } finally {
    t.close();
  }
});

Deno.test("status carries the fields SPEC §7 lists; metrics are Prometheus text", async () => {
  const t = setup();
  try {
    await t.req("/api/v1/devices/d/telemetry", post('{"a":1}'));
    const s = await (await t.req("/api/v1/status")).json();
    assert.deepEqual(Object.keys(s).sort(), [
      "edgeId",
      "hub",
      "ingest",
      "outbox",
      "rules",
      "uptimeSeconds",
      "version",
    ]);
    assert.deepEqual(Object.keys(s.hub).sort(), ["configured", "connected", "lastAckAt"]);
    assert.deepEqual(Object.keys(s.outbox).sort(), ["bytes", "depth", "dropped", "oldestAgeSeconds"]);
    assert.equal(s.outbox.depth, 1);
    const m = await (await t.req("/metrics")).text();
    assert.match(m, /^outpost_ingest_accepted_total\{source="http"\} 1$/m);
    assert.match(m, /^outpost_outbox_depth 1$/m);
    const ob = await (await t.req("/api/v1/outbox?limit=5")).json();
    assert.deepEqual(ob.records[0].payload, { a: 1 });
    assert.equal((await t.req("/api/v1/outbox?limit=abc")).status, 400);
    const devices = await (await t.req("/api/v1/devices")).json();
    assert.deepEqual(devices.devices[0].lastValues, { a: 1 });
  } finally {
    t.close();
  }
});
