/** runHub as the CLI uses it: a real process that logs its ports, serves, and stops on SIGTERM. */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const fixture = fileURLToPath(new URL("./_run_hub.ts", import.meta.url));

Deno.test("runHub logs hub.started with both ports, serves, and exits 0 on SIGTERM", async () => {
  const dir = mkdtempSync(join(tmpdir(), "outpost-hubrun-"));
  const secret = "never-log-this-secret";
  writeFileSync(
    join(dir, "hub.json"),
    JSON.stringify({
      listen: "127.0.0.1:0",
      api: { listen: "127.0.0.1:0" },
      dataDir: "data",
      edges: [{ id: "gw-01", routingKey: "rk", secret }],
    }),
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", fixture, join(dir, "hub.json")],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    while (!out.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
    }
    const started = JSON.parse(out.split("\n")[0]);
    assert.equal(started.level, "info");
    assert.equal(started.event, "hub.started");
    assert.match(started.grpc, /^127\.0\.0\.1:\d+$/);
    const health = await fetch(`http://${started.api}/healthz`);
    assert.deepEqual(await health.json(), { status: "ok" });

    child.kill("SIGTERM");
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
    }
    const status = await child.status;
    assert.equal(status.code, 0);
    const events = out.trim().split("\n").map((line) => JSON.parse(line).event);
    // The config has no api.token: the hub says so once, at start (SPEC §14).
    assert.deepEqual(events, ["hub.started", "hub.api_without_token", "hub.stopping", "hub.stopped"]);
    assert.ok(!out.includes(secret));
    await child.stderr.cancel();
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    rmSync(dir, { recursive: true, force: true });
  }
});
