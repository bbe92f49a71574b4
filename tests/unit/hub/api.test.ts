/** The hub API as a plain fetch handler (`app.request()`), over a real store and a fake link. */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHubApi, createHubStore, type HubApiDeps, type HubStore } from "../../../src/hub/mod.ts";
import { record } from "./_edge.ts";

const TOKEN = "api-token-0123456789abcdef";

async function withApi(
  fn: (app: ReturnType<typeof createHubApi>, store: HubStore, sent: unknown[]) => Promise<void>,
) {
  const dir = mkdtempSync(join(tmpdir(), "outpost-hubapi-"));
  const store = createHubStore(join(dir, "hub.db"));
  await store.registerEdges(["gw-01"]);
  const sent: unknown[] = [];
  const link: HubApiDeps["link"] = {
    connectedEdges: () => Promise.resolve(new Set()),
    runCommand: (edge, request) => {
      sent.push({ edge, ...request });
      return Promise.resolve({ id: "c1", status: "device-offline", payload: null });
    },
    startCommand: (edge, request) => {
      sent.push({ edge, ...request });
      const id = request.id ?? "c1";
      return Promise.resolve({
        id,
        outcome: Promise.resolve({ id, status: "device-offline", payload: null }),
      });
    },
    push: (edge, kind, version) => {
      sent.push({ edge, kind, version });
      return Promise.resolve("pending");
    },
    operate: () => {
      throw new Error("not used here");
    },
    fetchLogs: () => Promise.reject(new Error("not used here")),
    logsWaiting: () => 0,
  };
  try {
    await fn(createHubApi({ store, link, edges: ["gw-01"], token: TOKEN }), store, sent);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const auth = { authorization: `Bearer ${TOKEN}` };

Deno.test("healthz is open; everything else needs the bearer token", () =>
  withApi(async (app) => {
    assert.deepEqual(await (await app.request("/healthz")).json(), { status: "ok" });
    const denied = await app.request("/api/v1/records");
    assert.equal(denied.status, 401);
    assert.equal(denied.headers.get("www-authenticate"), 'Bearer realm="outpost-hub"');
    assert.equal(
      (await app.request("/api/v1/records", { headers: { authorization: "Bearer nope" } })).status,
      401,
    );
    assert.equal((await app.request("/api/v1/records", { headers: auth })).status, 200);
    assert.equal((await app.request("/api/v1/nothing", { headers: auth })).status, 404);
  }));

Deno.test("records come back in seq order with decoded payloads and a next cursor", () =>
  withApi(async (app, store) => {
    await store.storeBatch("gw-01", [record("a", "d1", { v: 1 }), record("b", "d2", "[1,2]")], 1000);
    const page = await (await app.request("/api/v1/records?limit=1", { headers: auth })).json();
    assert.deepEqual(page.records.map((r: any) => r.payload), [{ v: 1 }]);
    assert.equal(page.next, page.records[0].seq);
    const rest = await (await app.request(`/api/v1/records?after=${page.next}`, { headers: auth })).json();
    assert.deepEqual(rest, {
      records: [{
        seq: page.next + 1,
        id: "b",
        edge: "gw-01",
        device: "d2",
        kind: "telemetry",
        ts: 1_700_000_000_000,
        topic: "devices/d2/telemetry",
        payload: [1, 2],
        receivedAt: new Date(1000).toISOString(),
      }],
      next: null,
    });
  }));

Deno.test("bad query parameters and bodies are 400 with JSON Pointer paths", () =>
  withApi(async (app, _store, sent) => {
    const check = async (path: string, init: RequestInit, expected: unknown) => {
      const res = await app.request(path, { ...init, headers: auth });
      assert.equal(res.status, 400, path);
      assert.deepEqual((await res.json()).errors, expected);
    };
    await check("/api/v1/records?limit=abc", {}, [{
      path: "/limit",
      message: "must be an integer from 1 to 10000",
    }]);
    await check("/api/v1/records?after=-1", {}, [{
      path: "/after",
      message: "must be a seq: an integer of 0 or more",
    }]);
    await check("/api/v1/records?edge=", {}, [{ path: "/edge", message: "must not be empty" }]);
    await check("/api/v1/records?limit=1&limit=2", {}, [{ path: "/limit", message: "must be given once" }]);
    await check("/api/v1/records?sort=desc", {}, [{ path: "/sort", message: "unknown query parameter" }]);
    const notJson = await app.request("/api/v1/edges/gw-01/commands", {
      method: "POST",
      headers: auth,
      body: "{",
    });
    assert.equal(notJson.status, 400);
    const [issue] = (await notJson.json()).errors;
    assert.equal(issue.path, "");
    assert.match(issue.message, /^body is not valid JSON: /);
    await check("/api/v1/edges/gw-01/commands", {
      method: "POST",
      body: JSON.stringify({ device: "v", method: "m", timeoutMs: 0 }),
    }, [{ path: "/timeoutMs", message: "must be at least 1" }]);
    await check("/api/v1/edges/gw-01/update", {
      method: "POST",
      body: JSON.stringify({ version: "1", url: "x" }),
    }, [
      { path: "/url", message: "must be a URL" },
    ]);
    assert.deepEqual(sent, []);
  }));

Deno.test("commands default their params and timeout; rules get a content version", () =>
  withApi(async (app, _store, sent) => {
    const res = await app.request("/api/v1/edges/gw-01/commands", {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ device: "v", method: "reboot" }),
    });
    assert.deepEqual(await res.json(), { id: "c1", status: "device-offline", payload: null });
    const doc = JSON.stringify({ version: 1, rules: [] });
    const put = () => app.request("/api/v1/edges/gw-01/rules", { method: "PUT", headers: auth, body: doc });
    const a = await (await put()).json();
    const b = await (await put()).json();
    assert.equal(a.version, b.version);
    assert.deepEqual(sent, [
      { edge: "gw-01", device: "v", method: "reboot", params: {}, timeoutMs: 30000 },
      { edge: "gw-01", kind: "rules", version: a.version },
      { edge: "gw-01", kind: "rules", version: a.version },
    ]);
  }));
