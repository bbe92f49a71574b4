/**
 * Hostile input on the HTTP ingest path (SPEC §14): deep payloads, batches larger than the outbox,
 * invented device ids past `devices.max`, and what the dead-letter list keeps. A real outbox
 * (libSQL file) behind hono's `app.request()`.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { createHttpIngest } from "../../src/transports/http/mod.ts";
import { createControlApp } from "../../src/control/mod.ts";
import { DeviceRegistry } from "../../src/devices/mod.ts";
import { createIngest, DeadLetters, passThrough } from "../../src/ingest/mod.ts";
import { createOutbox } from "../../src/outbox/mod.ts";
import { createLogger, createTelemetry } from "../../src/telemetry/mod.ts";
import { removeDir, tempDir } from "../helpers/procs.ts";

const TOKEN = "input-limits-token-0123456789";

function setup(options: { maxBytes?: number; onFull?: "reject" | "drop-oldest"; maxDevices?: number } = {}) {
  const dir = tempDir();
  const outbox = createOutbox({
    path: join(dir, "o.db"),
    maxBytes: options.maxBytes ?? 1 << 30,
    onFull: options.onFull ?? "drop-oldest",
  });
  const logs: Record<string, unknown>[] = [];
  const telemetry = createTelemetry(createLogger("warn", (line: string) => logs.push(JSON.parse(line))));
  const devices = new DeviceRegistry(outbox.db, { max: options.maxDevices, telemetry });
  const ingest = createIngest({ outbox, devices, telemetry, rules: () => passThrough });
  const deadLetters = new DeadLetters();
  const app = createControlApp({
    token: TOKEN,
    edgeId: "gw-test",
    version: "9.9.9",
    startedAt: Date.now(),
    outbox,
    devices,
    deadLetters,
    telemetry,
    hubStatus: () => ({ configured: false, connected: false, lastAckAt: null }),
    routes: [createHttpIngest({ ingest, telemetry, maxPayloadBytes: 16 * 1024 * 1024 })],
  });
  const req = (path: string, init: RequestInit = {}) => {
    const headers = new Headers(init.headers);
    headers.set("authorization", `Bearer ${TOKEN}`);
    return app.request(path, { ...init, headers });
  };
  return {
    outbox,
    devices,
    deadLetters,
    telemetry,
    logs,
    req,
    close() {
      outbox.close();
      removeDir(dir);
    },
  };
}

const post = (body: string) => ({ method: "POST", body, headers: { "content-type": "application/json" } });

Deno.test("a payload nested deeper than 64 levels is 400 naming the depth, and never reaches the outbox", async () => {
  const t = setup();
  try {
    // 120 KB nested 60,000 deep: parses, but JSON.stringify overflows the stack under Bun.
    const deep = "[".repeat(60_000) + "]".repeat(60_000);
    let res = await t.req("/api/v1/devices/d1/telemetry", post(deep));
    assert.equal(res.status, 400);
    const body = await res.json();
    assert.match(body.error, /nested deeper than 64 levels \(at byte 64\)/);
    // An object 65 deep is refused; 64 deep is fine, brackets inside strings do not count.
    const nest = (n: number) => '{"a":'.repeat(n - 1) + '{"b":"[[[{{{\\"]]"}' + "}".repeat(n - 1);
    res = await t.req("/api/v1/devices/d1/telemetry", post(nest(65)));
    assert.equal(res.status, 400);
    res = await t.req("/api/v1/devices/d1/telemetry", post(nest(64)));
    assert.equal(res.status, 202, await res.text());
    // Lone surrogates are valid JSON: stored (escaped by JSON.stringify) and read back intact.
    res = await t.req("/api/v1/devices/d1/telemetry", post('{"s":"\\ud800x\\udfff"}'));
    assert.equal(res.status, 202);
    const rows = t.outbox.claim(0, 10);
    assert.equal(rows.length, 2, "only the two good payloads are stored");
    assert.equal(JSON.parse(rows[1].payload).s, "\ud800x\udfff");
    const metrics = t.telemetry.metrics.render();
    assert.match(metrics, /outpost_ingest_rejected_total\{reason="too-deep"\} 2/);
  } finally {
    t.close();
  }
});

Deno.test("a batch larger than the whole outbox is 413 under drop-oldest, and drops nothing", async () => {
  const t = setup({ maxBytes: 65536, onFull: "drop-oldest" });
  try {
    let res = await t.req("/api/v1/devices/d1/telemetry", post('{"first":1}'));
    assert.equal(res.status, 202);
    // 30 KB of tiny objects: under maxPayloadBytes, but 10,000 records × 48+ bytes each.
    const batch = "[" + Array.from({ length: 10_000 }, () => "{}").join(",") + "]";
    res = await t.req("/api/v1/devices/d1/telemetry", post(batch));
    assert.equal(res.status, 413);
    assert.match((await res.json()).error, /more than the whole outbox \(outbox\.maxBytes 65536\)/);
    // One large payload alone.
    res = await t.req("/api/v1/devices/d1/telemetry", post(JSON.stringify({ blob: "x".repeat(70_000) })));
    assert.equal(res.status, 413);
    assert.equal(t.outbox.stats().depth, 1, "the earlier record was not dropped for a batch that cannot fit");
    assert.equal(t.outbox.stats().dropped, 0);
  } finally {
    t.close();
  }
});

Deno.test("devices.max: new ids past the bound are 429, counted, logged once; known ids still pass; the list stays small", async () => {
  const t = setup({ maxDevices: 100 });
  try {
    t.devices.create("provisioned-1");
    for (let i = 0; i < 99; i++) {
      const res = await t.req(`/api/v1/devices/dev-${i}/telemetry`, post(`{"v":${i}}`));
      assert.equal(res.status, 202);
    }
    for (let i = 99; i < 150; i++) {
      const res = await t.req(`/api/v1/devices/dev-${i}/telemetry`, post(`{"v":${i}}`));
      assert.equal(res.status, 429);
      assert.match((await res.json()).error, /Device limit reached: 100 device ids.*devices\.max/);
    }
    assert.equal((await t.req("/api/v1/devices/dev-5/telemetry", post('{"v":5}'))).status, 202);
    // Bad input from a new id takes no place; provisioning a seen id does not count it twice.
    assert.equal((await t.req("/api/v1/devices/junk-1/telemetry", post("not json"))).status, 400);
    assert.equal(t.devices.size, 100);
    t.devices.create("dev-3");
    assert.equal(t.devices.size, 100);
    assert.equal((await t.req("/api/v1/devices/provisioned-1/telemetry", post('{"v":5}'))).status, 202);
    assert.equal(t.outbox.stats().depth, 101);
    assert.match(t.telemetry.metrics.render(), /outpost_devices_refused_total 51/);
    assert.equal(t.logs.filter((l) => l.event === "devices.limit").length, 1, "logged once a minute");
    const all = await (await t.req("/api/v1/devices")).json();
    assert.equal(all.devices.length, 100);
    assert.equal(all.total, 100);
    const page = await (await t.req("/api/v1/devices?limit=10&after=dev-50")).json();
    assert.deepEqual(page.devices.map((d: { id: string }) => d.id).slice(0, 2), ["dev-51", "dev-52"]);
    assert.equal(page.devices.length, 10);
  } finally {
    t.close();
  }
});

Deno.test("last values: at most 64 keys and 4 KiB per device; a value over 1 KiB is kept as a marker", async () => {
  const t = setup();
  try {
    const wide: Record<string, unknown> = {};
    for (let i = 0; i < 200; i++) wide[`k${i}`] = i;
    wide.big = "y".repeat(50_000);
    let res = await t.req("/api/v1/devices/d1/telemetry", post(JSON.stringify(wide)));
    assert.equal(res.status, 202);
    res = await t.req(
      "/api/v1/devices/d2/telemetry",
      post(JSON.stringify({ big: "z".repeat(50_000), t: 1 })),
    );
    assert.equal(res.status, 202);
    const list = await (await t.req("/api/v1/devices")).json();
    const d1 = list.devices.find((d: { id: string }) => d.id === "d1");
    assert.equal(Object.keys(d1.lastValues).length, 64);
    const d2 = list.devices.find((d: { id: string }) => d.id === "d2");
    assert.deepEqual(d2.lastValues, { big: { omitted: "too-large", bytes: "over 1024" }, t: 1 });
    assert.ok(JSON.stringify(list).length < 8_000, `list is ${JSON.stringify(list).length} bytes`);
  } finally {
    t.close();
  }
});

Deno.test("dead letters keep at most 256 bytes of topic, device and payload", () => {
  const d = new DeadLetters(10);
  d.add({
    device: "x",
    topic: "t/".repeat(32 * 1024),
    reason: "r",
    message: "m",
    payload: "p".repeat(65536),
  });
  d.add({ topic: "é".repeat(1000), reason: "r", message: "m", payload: new Uint8Array(65536) });
  const [a, b] = d.list();
  assert.equal(a.topic!.length, 256);
  assert.equal(a.head.length, 256);
  assert.equal(new TextEncoder().encode(b.topic!).length, 256);
  assert.equal(b.head.length, 256);
});

Deno.test("API JSON bodies nested deeper than 64 levels are 400 with the reason", async () => {
  const t = setup();
  try {
    const res = await t.req("/api/v1/devices", post("[".repeat(60_000) + "]".repeat(60_000)));
    assert.equal(res.status, 400);
    const body = await res.json();
    assert.match(body.errors[0].message, /nested deeper than 64 levels/);
  } finally {
    t.close();
  }
});

Deno.test("the failed-authentication limiter: 10 failures block an address for the rest of the minute; its map is bounded", async () => {
  const { AuthLimiter } = await import("../../src/core/auth_limiter.ts");
  let t = 0;
  const l = new AuthLimiter({ now: () => t, maxAddresses: 100 });
  for (let i = 0; i < 9; i++) l.fail("10.0.0.1");
  assert.equal(l.blocked("10.0.0.1"), false);
  l.fail("10.0.0.1");
  assert.equal(l.blocked("10.0.0.1"), true);
  assert.equal(l.blocked("10.0.0.2"), false, "other addresses are not affected");
  t = 59_999;
  assert.equal(l.blocked("10.0.0.1"), true);
  t = 60_000;
  assert.equal(l.blocked("10.0.0.1"), false, "the window ends a minute after the first failure");
  // 10,000 invented addresses: the map stays at its bound, the overflow shares one limited bucket.
  for (let i = 0; i < 10_000; i++) l.fail(`192.168.${i >> 8}.${i & 255}`);
  assert.ok(l.size <= 101, `size ${l.size}`);
  assert.equal(l.blocked("172.16.0.1"), true, "past the bound, new addresses share the overflow bucket");
});
