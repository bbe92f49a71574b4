import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UsageError } from "../../../src/core/errors.ts";
import { hubConfigJsonSchema, loadHubConfig, parseHubConfig } from "../../../src/hub/mod.ts";

const edge = { id: "gw-01", routingKey: "rk", secret: "s" };

function withFile(content: unknown, fn: (path: string, dir: string) => void) {
  const dir = mkdtempSync(join(tmpdir(), "outpost-hubcfg-"));
  try {
    const path = join(dir, "hub.json");
    writeFileSync(path, typeof content === "string" ? content : JSON.stringify(content));
    fn(path, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

Deno.test("loadHubConfig fills defaults and resolves paths against the file's folder", () => {
  withFile(
    { dataDir: "data", edges: [edge], tls: { cert: "tls/cert.pem", key: "/abs/key.pem" } },
    (path, dir) => {
      assert.deepEqual(loadHubConfig(path), {
        listen: "127.0.0.1:7443",
        api: { listen: "127.0.0.1:8081" },
        dataDir: join(dir, "data"),
        edges: [edge],
        tls: { cert: join(dir, "tls/cert.pem"), key: "/abs/key.pem" },
      });
    },
  );
});

Deno.test("loadHubConfig names every bad key with its JSON Pointer", () => {
  const input = {
    listen: "nowhere",
    api: { listen: "127.0.0.1:8081", token: "short", colour: "red" },
    dataDir: "d",
    edges: [{ id: "gw-01", routingKey: "rk" }, { id: "gw-01", routingKey: "rk", secret: "s" }],
  };
  withFile(input, (path) => {
    assert.throws(() => loadHubConfig(path), (error: unknown) => {
      assert.ok(error instanceof UsageError);
      const lines = error.issues.map((i) => `${i.path}: ${i.message}`);
      assert.ok(lines.includes("/edges/0/secret: is required"), lines.join("\n"));
      assert.ok(lines.includes("/api/colour: unknown key"), lines.join("\n"));
      assert.ok(lines.some((l) => l.startsWith("/listen: ")), lines.join("\n"));
      assert.ok(lines.some((l) => l.startsWith("/api/token: ")), lines.join("\n"));
      return true;
    });
  });
});

Deno.test("duplicate edge ids are refused", () => {
  const result = parseHubConfig({ dataDir: "d", edges: [edge, edge] }, "/tmp");
  assert.deepEqual(result, {
    ok: false,
    issues: [{ path: "/edges/1/id", message: 'duplicate edge id "gw-01"' }],
  });
});

Deno.test("an unreadable or malformed file is a UsageError", () => {
  assert.throws(() => loadHubConfig("/nonexistent/hub.json"), UsageError);
  withFile("{nope", (path) => assert.throws(() => loadHubConfig(path), /not valid JSON/));
});

Deno.test("hubConfigJsonSchema describes the edges", () => {
  const schema = hubConfigJsonSchema() as any;
  assert.equal(schema.type, "object");
  assert.deepEqual(schema.properties.edges.items.required.sort(), ["id", "routingKey", "secret"]);
  assert.equal(schema.additionalProperties, false);
});

Deno.test("store and retention: a postgres URL is kept, a relative file: path resolves, bad values name their key", () => {
  const base = { dataDir: "d", edges: [] };
  const pg = parseHubConfig({
    ...base,
    store: { url: "postgres://hub:s3cret@db:5432/outpost" },
    retention: "30d",
  }, "/srv");
  assert.ok(pg.ok);
  assert.equal(pg.value.store?.url, "postgres://hub:s3cret@db:5432/outpost");
  assert.equal(pg.value.retention, 30 * 86_400_000);
  const file = parseHubConfig({ ...base, store: { url: "file:data/hub.db" } }, "/srv");
  assert.ok(file.ok);
  assert.equal(file.value.store?.url, "file:/srv/data/hub.db");
  const bad = parseHubConfig(
    { ...base, store: { url: "mysql://hub:s3cret@db/outpost" }, retention: "30 days" },
    "/srv",
  );
  assert.ok(!bad.ok);
  assert.deepEqual(bad.issues.map((i) => i.path).sort(), ["/retention", "/store/url"]);
  assert.ok(!JSON.stringify(bad.issues).includes("s3cret"), "the password is not echoed");
});
