/**
 * The web console's security promises (SPEC §9), through hono's `app.request()` over a real
 * outbox: sign-in sets an HttpOnly, SameSite=Strict cookie; the cookie works on the API; a change
 * signed in by cookie needs a matching Origin (else 403); wrong tokens are limited (429); every
 * console answer has the CSP; no page or asset holds the token; sessions are bounded and expire.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { createControlApp } from "../../src/control/mod.ts";
import { ASSETS, CSP, sessionCookie, sessionFromCookie, SessionTable } from "../../src/console/mod.ts";
import { createHubApi } from "../../src/hub/api.ts";
import { DeviceRegistry } from "../../src/devices/mod.ts";
import { createIngest, DeadLetters, passThrough } from "../../src/ingest/mod.ts";
import { createOutbox } from "../../src/outbox/mod.ts";
import { createLogger, createTelemetry } from "../../src/telemetry/mod.ts";
import { createHttpIngest } from "../../src/transports/http/mod.ts";
import { removeDir, tempDir } from "../helpers/procs.ts";

const TOKEN = "console-test-token-0123456789";
const ORIGIN = "http://gw.local:8080";

function setup() {
  const dir = tempDir();
  const outbox = createOutbox({ path: join(dir, "o.db"), maxBytes: 1 << 30, onFull: "reject" });
  const lines: string[] = [];
  const telemetry = createTelemetry(createLogger("debug", (l) => lines.push(l)));
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
  /** A request as a browser at ORIGIN sends it (Host header), from `address`. */
  const req = (path: string, init: RequestInit = {}, address = "10.0.0.1") =>
    app.request(path.startsWith("https:") ? path : `${ORIGIN}${path}`, init, { remoteAddress: address });
  return {
    req,
    lines,
    close() {
      outbox.close();
      removeDir(dir);
    },
  };
}

const form = (fields: Record<string, string>, headers: Record<string, string> = {}) => ({
  method: "POST",
  body: new URLSearchParams(fields).toString(),
  headers: { "content-type": "application/x-www-form-urlencoded", host: "gw.local:8080", ...headers },
});

async function signIn(t: ReturnType<typeof setup>): Promise<string> {
  const res = await t.req("/ui/login", form({ token: TOKEN, next: "/ui/devices" }, { origin: ORIGIN }));
  assert.equal(res.status, 303);
  assert.equal(res.headers.get("location"), "/ui/devices");
  const cookie = res.headers.get("set-cookie")!;
  return `outpost_session=${sessionFromCookie(cookie.split(";")[0])}`;
}

Deno.test("sign-in sets an HttpOnly, SameSite=Strict session cookie that holds no token", async () => {
  const t = setup();
  try {
    const res = await t.req("/ui/login", form({ token: TOKEN }, { origin: ORIGIN }));
    assert.equal(res.status, 303);
    const cookie = res.headers.get("set-cookie")!;
    assert.match(
      cookie,
      /^outpost_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=43200$/,
    );
    assert.doesNotMatch(cookie, /Secure/, "plain HTTP: no Secure flag");
    assert.ok(!cookie.includes(TOKEN));
    // Over TLS the cookie is Secure.
    const tls = await t.req("https://gw.local/ui/login", form({ token: TOKEN }), "10.0.0.2");
    assert.equal(tls.status, 303);
    assert.match(tls.headers.get("set-cookie")!, /; Secure$/);
  } finally {
    t.close();
  }
});

Deno.test("the cookie authenticates API reads; changes need the console's own Origin (else 403)", async () => {
  const t = setup();
  try {
    const cookie = await signIn(t);
    const get = await t.req("/api/v1/status", { headers: { cookie, host: "gw.local:8080" } });
    assert.equal(get.status, 200);
    const body = JSON.stringify({ id: "dev-1" });
    const cross = await t.req("/api/v1/devices", {
      method: "POST",
      body,
      headers: {
        cookie,
        host: "gw.local:8080",
        origin: "http://evil.example",
        "content-type": "application/json",
      },
    });
    assert.equal(cross.status, 403);
    const none = await t.req("/api/v1/devices", {
      method: "POST",
      body,
      headers: { cookie, host: "gw.local:8080", "content-type": "application/json" },
    });
    assert.equal(none.status, 403, "no Origin at all is refused too");
    const same = await t.req("/api/v1/devices", {
      method: "POST",
      body,
      headers: { cookie, host: "gw.local:8080", origin: ORIGIN, "content-type": "application/json" },
    });
    assert.equal(same.status, 201);
    // The bearer token keeps working without any Origin.
    const bearer = await t.req("/api/v1/devices", {
      method: "POST",
      body: JSON.stringify({ id: "dev-2" }),
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    });
    assert.equal(bearer.status, 201);
    // Logout from another origin is refused; from the console it ends the session.
    assert.equal(
      (await t.req("/ui/logout", { method: "POST", headers: { cookie, origin: "http://evil.example" } }))
        .status,
      403,
    );
    const out = await t.req("/ui/logout", {
      method: "POST",
      headers: { cookie, host: "gw.local:8080", origin: ORIGIN },
    });
    assert.equal(out.status, 303);
    assert.match(out.headers.get("set-cookie")!, /Max-Age=0/);
    assert.equal((await t.req("/api/v1/status", { headers: { cookie } })).status, 401);
  } finally {
    t.close();
  }
});

Deno.test("a wrong token is refused (401), and after 10 a minute the address gets 429", async () => {
  const t = setup();
  try {
    const first = await t.req("/ui/login", form({ token: "wrong" }, { origin: ORIGIN }));
    assert.equal(first.status, 401);
    assert.match(await first.text(), /Wrong token/);
    for (let i = 0; i < 9; i++) await (await t.req("/ui/login", form({ token: "wrong" }))).body?.cancel();
    const limited = await t.req("/ui/login", form({ token: TOKEN }));
    assert.equal(limited.status, 429, "even the right token, for the rest of the minute");
    assert.equal(
      (await t.req("/api/v1/status", { headers: { authorization: `Bearer ${TOKEN}` } })).status,
      429,
    );
    // Another address is not affected.
    assert.equal((await t.req("/ui/login", form({ token: TOKEN }), "10.9.9.9")).status, 303);
    assert.ok(!t.lines.some((l) => l.includes(TOKEN)), "no log line holds the token");
  } finally {
    t.close();
  }
});

Deno.test("a sign-in form posted from another site is refused", async () => {
  const t = setup();
  try {
    const res = await t.req("/ui/login", form({ token: TOKEN }, { origin: "http://evil.example" }));
    assert.equal(res.status, 403);
    assert.equal(res.headers.get("set-cookie"), null);
  } finally {
    t.close();
  }
});

Deno.test("every console answer carries the strict CSP; deep links load the shell once signed in", async () => {
  const t = setup();
  try {
    const root = await t.req("/");
    assert.equal(root.status, 302);
    assert.equal(root.headers.get("location"), "/ui/");
    assert.equal(root.headers.get("content-security-policy"), CSP);
    assert.match(CSP, /default-src 'self'/);
    assert.doesNotMatch(CSP, /unsafe-inline|unsafe-eval|\*/);
    const anonymous = await t.req("/ui/devices/pump-1");
    assert.equal(anonymous.status, 302);
    assert.equal(anonymous.headers.get("location"), "/ui/login?next=%2Fui%2Fdevices%2Fpump-1");
    const cookie = await signIn(t);
    for (
      const path of [
        "/ui/",
        "/ui/devices",
        "/ui/devices/pump-1",
        "/ui/live",
        "/ui/rules",
        "/ui/outbox",
        "/ui/commands",
        "/ui/update",
        "/ui/logs",
      ]
    ) {
      const res = await t.req(path, { headers: { cookie } });
      assert.equal(res.status, 200, path);
      assert.equal(res.headers.get("content-security-policy"), CSP, path);
      const html = await res.text();
      assert.match(html, /<script type="module" src="\/ui\/assets\/agent.js">/);
      assert.doesNotMatch(html, /<script>|\sstyle=|\son[a-z]+=/, "no inline script or style");
      assert.ok(!html.includes(TOKEN), `${path} holds no secret`);
    }
    for (const name of Object.keys(ASSETS)) {
      const res = await t.req(`/ui/assets/${name}`);
      assert.equal(res.status, 200, name);
      assert.equal(res.headers.get("content-security-policy"), CSP);
      assert.ok(!(await res.text()).includes(TOKEN));
    }
    assert.equal((await t.req("/ui/assets/nope.js")).status, 404);
    const login = await t.req("/ui/login");
    assert.equal(login.headers.get("content-security-policy"), CSP);
    // `next` never leads off the console.
    const evil = await t.req("/ui/login", form({ token: TOKEN, next: "//evil.example/ui/" }), "10.0.0.3");
    assert.equal(evil.headers.get("location"), "/ui/");
  } finally {
    t.close();
  }
});

Deno.test("sessions expire after 12 h, end on logout, and the table is bounded", () => {
  let t = 0;
  const s = new SessionTable({ now: () => t, max: 3 });
  const a = s.create();
  assert.equal(s.valid(a), true);
  assert.equal(s.valid("forged"), false);
  assert.equal(s.valid("x".repeat(10_000)), false);
  t = 12 * 3600_000 - 1;
  assert.equal(s.valid(a), true);
  t = 12 * 3600_000;
  assert.equal(s.valid(a), false);
  const b = s.create();
  s.end(b);
  assert.equal(s.valid(b), false);
  const ids = [s.create(), s.create(), s.create(), s.create()];
  assert.equal(s.size, 3);
  assert.equal(s.valid(ids[0]), false);
  assert.equal(s.valid(ids[3]), true);
  assert.equal(s.evicted, 1);
  assert.match(sessionCookie("abc", 43200, true), /; Secure$/);
  assert.equal(sessionFromCookie("a=1; outpost_session=xyz; b=2"), "xyz");
});

Deno.test("the hub's fleet console: sign-in with its token; read-only without one", async () => {
  const deps = {
    store: {
      edges: () => Promise.resolve([]),
      records: () => Promise.resolve([]),
      command: () => Promise.resolve(undefined),
      pushes: () => Promise.resolve([]),
    },
    link: {
      connectedEdges: () => Promise.resolve(new Set<string>()),
      runCommand: () => Promise.reject(new Error("no")),
      push: () => Promise.resolve("pending"),
    },
    edges: ["gw-01"],
  } as unknown as Parameters<typeof createHubApi>[0];
  const open = createHubApi(deps);
  const shell = await open.request("http://hub.local/ui/edges/gw-01");
  assert.equal(shell.status, 200);
  assert.match(await shell.text(), /data-read-only="true"/);
  assert.equal(shell.headers.get("content-security-policy"), CSP);
  const locked = createHubApi({ ...deps, token: "hub-token-123" });
  const env = { remoteAddress: "10.1.1.1" };
  assert.equal((await locked.request("http://hub.local/ui/", {}, env)).status, 302);
  const res = await locked.request(
    "http://hub.local/ui/login",
    form({ token: "hub-token-123" }, { host: "hub.local" }),
    env,
  );
  assert.equal(res.status, 303);
  const cookie = res.headers.get("set-cookie")!.split(";")[0];
  assert.equal(
    (await locked.request("http://hub.local/api/v1/edges", { headers: { cookie } }, env)).status,
    200,
  );
  const cross = await locked.request("http://hub.local/api/v1/edges/gw-01/rules", {
    method: "PUT",
    body: '{"version":1,"rules":[]}',
    headers: { cookie, origin: "http://evil.example", host: "hub.local" },
  }, env);
  assert.equal(cross.status, 403);
  const same = await locked.request("http://hub.local/api/v1/edges/gw-01/rules", {
    method: "PUT",
    body: '{"version":1,"rules":[]}',
    headers: { cookie, origin: "http://hub.local", host: "hub.local" },
  }, env);
  assert.equal(same.status, 202);
});

Deno.test("the console's assets are embedded, fetch nothing from outside, and stay under 200 KB gzipped", () => {
  let raw = 0;
  let gzipped = 0;
  for (const [name, asset] of Object.entries(ASSETS)) {
    raw += asset.body.length;
    gzipped += gzipSync(asset.body, { level: 9 }).length;
    const urls = asset.body.match(/https?:\/\/[^\s"'`)]+/g) ?? [];
    assert.deepEqual(
      urls.filter((u) => u !== "http://www.w3.org/2000/svg"),
      [],
      `${name} names no outside URL`,
    );
    assert.doesNotMatch(
      asset.body,
      /\beval\(|new Function\(|innerHTML/,
      `${name}: no eval, no HTML from data`,
    );
  }
  console.log(`console assets: ${raw} bytes, ${gzipped} bytes gzipped (${Object.keys(ASSETS).length} files)`);
  assert.ok(gzipped <= 200 * 1024, `${gzipped} bytes gzipped`);
});
