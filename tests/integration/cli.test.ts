import assert from "node:assert/strict";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { removeDir, ROOT, runOutpost, startProcess, tempDir, waitFor } from "../helpers/procs.ts";

Deno.test("init writes a valid config, mode 0600, with a fresh token; never overwrites without --force", async () => {
  const dir = tempDir();
  try {
    const path = join(dir, "etc", "outpost.json");
    let r = await runOutpost([
      "init",
      "--config",
      path,
      "--hub",
      "grpc://127.0.0.1:7443",
      "--routing-key",
      "rk",
      "--secret",
      "s",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const first = JSON.parse(readFileSync(path, "utf8"));
    assert.ok(first.api.token.length >= 32);
    assert.deepEqual(first.hub, { url: "grpc://127.0.0.1:7443", routingKey: "rk", secret: "s" });
    r = await runOutpost(["init", "--config", path]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /already exists/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
    r = await runOutpost(["init", "--config", path, "--force"]);
    assert.equal(r.code, 0);
    assert.notEqual(JSON.parse(readFileSync(path, "utf8")).api.token, first.api.token);
    r = await runOutpost(["init", "--config", join(dir, "x.json"), "--hub", "grpc://h:1"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /go together/);
  } finally {
    removeDir(dir);
  }
});

Deno.test("a config with an unknown key or a wrong type: exit 2 with the key's path, no stack trace", async () => {
  const dir = tempDir();
  try {
    const path = join(dir, "c.json");
    writeFileSync(path, JSON.stringify({ api: { listen: "127.0.0.1:0", tokn: "x" } }));
    let r = await runOutpost(["run", "--config", path]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^\/api\/tokn: unknown key$/m);
    writeFileSync(path, JSON.stringify({ outbox: { maxBytes: "lots" } }));
    r = await runOutpost(["run", "--config", path]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^\/outbox\/maxBytes: expected number, received "lots"$/m);
    r = await runOutpost(["status"], { env: { OUTPOST_CONFIG: path } });
    assert.equal(r.code, 2, "the env lookup finds the same bad file");
    assert.doesNotMatch(r.stderr + r.stdout, /\n\s+at /);
    r = await runOutpost(["run", "--bogus"]);
    assert.equal(r.code, 2);
    r = await runOutpost(["frobnicate"]);
    assert.equal(r.code, 2);
  } finally {
    removeDir(dir);
  }
});

Deno.test("version prints `outpost <semver>` then runtime and target; config schema is JSON Schema", async () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
  for (const args of [["--version"], ["version"]]) {
    const r = await runOutpost(args);
    assert.equal(r.code, 0);
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines[0], `outpost ${pkg.version}`);
    assert.match(lines[1], /^deno \S+ linux-(x64|arm64)$/);
  }
  const r = await runOutpost(["config", "schema"]);
  const schema = JSON.parse(r.stdout);
  assert.equal(schema.type, "object");
  assert.equal(schema.additionalProperties, false);
  assert.ok(schema.properties.hub && schema.properties.outbox);
});

Deno.test({
  name: "with no config file at all the agent starts on built-in defaults, answers /healthz and status",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir();
    // Built-in defaults listen on 127.0.0.1:8080 and :1883; the test runs in a fresh folder so
    // ./outpost.json is absent, and points only the ports elsewhere through a config-less run.
    const proc = startProcess([
      join(ROOT, "node_modules/.bin/deno"),
      "run",
      "-A",
      join(ROOT, "src/main.ts"),
      "run",
    ], {
      cwd: dir,
    });
    try {
      const started = await proc.waitForEvent("agent.started");
      assert.equal(started.config, "built-in defaults");
      assert.equal(started.api, "127.0.0.1:8080");
      await waitFor(async () => (await fetch("http://127.0.0.1:8080/healthz")).ok, 10_000, "healthz");
      const token = readFileSync(join(dir, ".outpost", "api-token"), "utf8").trim();
      assert.equal(statSync(join(dir, ".outpost", "api-token")).mode & 0o777, 0o600);
      const r = await runOutpost(["status", "--json"], { cwd: dir });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).hub.configured, false);
      const human = await runOutpost(["status"], { cwd: dir });
      assert.match(human.stdout, /hub:\s+not configured/);
      assert.ok(!human.stdout.includes(token));
      const code = await proc.kill("SIGTERM");
      assert.equal(code, 0, `SIGTERM drains and exits 0; got ${code}: ${proc.lines.slice(-5).join("\n")}`);
    } finally {
      await proc.kill("SIGKILL");
      removeDir(dir);
    }
  },
});
