import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { findConfigPath, loadConfig, parseConfig, redactConfig } from "../../src/config/mod.ts";
import { UsageError } from "../../src/core/errors.ts";
import { removeDir, tempDir } from "../helpers/procs.ts";

Deno.test("built-in defaults: data in ./.outpost, API on 127.0.0.1:8080, broker on 127.0.0.1:1883, no hub", () => {
  const r = parseConfig({}, "/srv");
  assert.ok(r.ok);
  assert.equal(r.value.dataDir, "/srv/.outpost");
  assert.equal(r.value.api.listen, "127.0.0.1:8080");
  assert.deepEqual(r.value.mqtt.broker, { listen: "127.0.0.1:1883", auth: "none" });
  assert.equal(r.value.hub, undefined);
  assert.deepEqual(r.value.outbox, { maxBytes: 1073741824, onFull: "drop-oldest" });
  assert.equal(r.value.limits.maxPayloadBytes, 262144);
});

Deno.test("every config error is reported at once, each with its JSON Pointer", () => {
  const r = parseConfig({
    api: { listn: "x" },
    outbox: { maxBytes: "big", onFull: "shrug" },
    hub: { url: "http://x" },
    extra: 1,
  }, "/");
  assert.ok(!r.ok);
  const paths = r.issues.map((i) => i.path).sort();
  assert.deepEqual(paths, [
    "/api/listn",
    "/extra",
    "/hub/routingKey",
    "/hub/secret",
    "/hub/url",
    "/outbox/maxBytes",
    "/outbox/onFull",
  ]);
  assert.equal(r.issues.find((i) => i.path === "/extra")?.message, "unknown key");
  assert.equal(r.issues.find((i) => i.path === "/hub/secret")?.message, "is required");
  assert.match(
    r.issues.find((i) => i.path === "/outbox/maxBytes")!.message,
    /expected number, received "big"/,
  );
});

Deno.test("mqtt.broker: false disables the embedded broker", () => {
  const r = parseConfig({ mqtt: { broker: false } }, "/");
  assert.ok(r.ok);
  assert.equal(r.value.mqtt.broker, false);
});

Deno.test("config lookup: --config, then $OUTPOST_CONFIG, then ./outpost.json", () => {
  assert.equal(findConfigPath("/a/b.json", {}), "/a/b.json");
  assert.equal(findConfigPath(undefined, { OUTPOST_CONFIG: "/c/d.json" }), "/c/d.json");
});

Deno.test("loadConfig resolves relative paths against the config file's folder", () => {
  const dir = tempDir();
  try {
    const path = join(dir, "outpost.json");
    writeFileSync(path, JSON.stringify({ dataDir: "data" }));
    const c = loadConfig(path, {});
    assert.equal(c.dataDir, join(dir, "data"));
    assert.equal(c.source, path);
  } finally {
    removeDir(dir);
  }
});

Deno.test("loadConfig: invalid JSON and a wrong type are UsageErrors naming the file and key", () => {
  const dir = tempDir();
  try {
    const bad = join(dir, "bad.json");
    writeFileSync(bad, "{ not json");
    assert.throws(
      () => loadConfig(bad, {}),
      (e: unknown) => e instanceof UsageError && /not valid JSON/.test(e.message),
    );
    writeFileSync(bad, JSON.stringify({ api: { listen: 8080 } }));
    assert.throws(
      () => loadConfig(bad, {}),
      (e: unknown) => e instanceof UsageError && e.issues[0].path === "/api/listen",
    );
  } finally {
    removeDir(dir);
  }
});

Deno.test("redactConfig hides secrets and tokens", () => {
  const r = parseConfig({
    api: { token: "a".repeat(20) },
    hub: { url: "grpc://h:1", routingKey: "k", secret: "s3cret" },
  }, "/");
  assert.ok(r.ok);
  const text = JSON.stringify(redactConfig(r.value));
  assert.ok(!text.includes("s3cret") && !text.includes("a".repeat(20)));
});

Deno.test("hub.url may list several hubs; an empty list or a bad entry is an error naming its path", () => {
  const hub = { routingKey: "k", secret: "s" };
  const ok = parseConfig({ hub: { ...hub, url: ["grpc://a:7443", "grpcs://b:7443"] } }, "/srv");
  assert.ok(ok.ok);
  assert.deepEqual(ok.value.hub?.url, ["grpc://a:7443", "grpcs://b:7443"]);
  const empty = parseConfig({ hub: { ...hub, url: [] } }, "/srv");
  assert.ok(!empty.ok);
  assert.deepEqual(empty.issues.map((i) => i.path), ["/hub/url"]);
  const bad = parseConfig({ hub: { ...hub, url: ["grpc://a:7443", "http://b"] } }, "/srv");
  assert.ok(!bad.ok);
  assert.ok(bad.issues.every((i) => i.path.startsWith("/hub/url")), JSON.stringify(bad.issues));
});
