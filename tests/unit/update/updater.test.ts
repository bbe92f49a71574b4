/**
 * The update state machine and its routes, in process, with shell-script stand-ins for the
 * binaries (`--version` is all the updater runs): the order of the steps and the files each
 * leaves, the states `GET /api/v1/update` reports, 202/400/409 answers, commit and rollback of a
 * trial. The e2e tests do the same with real binaries and real restarts.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Hono } from "hono";
import {
  createUpdater,
  generateSigningKey,
  mountUpdateRoutes,
  readMarker,
  readResult,
  type TrialMarker,
  updatePaths,
  type UpdaterDeps,
  type UpdateStatus,
} from "../../../src/update/mod.ts";
import { createLogger } from "../../../src/telemetry/mod.ts";
import { removeDir, tempDir, waitFor } from "../../helpers/procs.ts";
import { fakeBinary, release, ReleaseServer } from "../../e2e/update_helpers.ts";

const OLD = new TextDecoder().decode(fakeBinary("0.0.1", "exit 0"));
const NEW = fakeBinary("0.0.2", "exit 0");

async function setup(overrides: Partial<UpdaterDeps> = {}, settings: Record<string, unknown> = {}) {
  const dir = tempDir("outpost-updater-");
  mkdirSync(join(dir, "bin"));
  mkdirSync(join(dir, "data"));
  const paths = updatePaths(join(dir, "bin/outpost"), join(dir, "data"));
  writeFileSync(paths.exe, OLD, { mode: 0o755 });
  const server = await new ReleaseServer().start();
  const rel = release(server, generateSigningKey());
  const manifestUrl = await rel.publish("0.0.2", NEW, { name: "r" });
  const events: string[] = [];
  const swapped = Promise.withResolvers<string>();
  const rolledBack = Promise.withResolvers<void>();
  const deps: UpdaterDeps = {
    paths,
    version: "0.0.1",
    target: "linux-x64",
    compiled: true,
    settings: { publicKey: rel.key.publicKey, manifestUrl, trialSeconds: 60, maxStarts: 3, ...settings },
    log: createLogger("debug", (line) => events.push(JSON.parse(line).event)),
    pid: 4242,
    by: "agent",
    onSwapped: (v) => swapped.resolve(v),
    onRolledBack: () => rolledBack.resolve(),
    ...overrides,
  };
  const updater = createUpdater(deps);
  const app = new Hono();
  mountUpdateRoutes(app, updater);
  const api = async (method: string, body?: unknown) => {
    const r = await app.request("/api/v1/update", {
      method,
      body: body === undefined ? undefined : JSON.stringify(body),
      headers: body === undefined ? {} : { "content-type": "application/json", "content-length": "1" },
    });
    return { status: r.status, body: await r.json() };
  };
  return {
    dir,
    paths,
    server,
    rel,
    manifestUrl,
    updater,
    api,
    events,
    swapped: swapped.promise,
    rolledBack: rolledBack.promise,
    async close() {
      updater.stop();
      await server.close();
      removeDir(dir);
    },
  };
}

Deno.test("POST /api/v1/update: 202, then checking → downloading → verifying → swapping → restarting", async () => {
  const t = await setup();
  try {
    const seen: string[] = [];
    t.updater.onChange((s: UpdateStatus) => seen.at(-1) !== s.state && seen.push(s.state));
    assert.equal((await t.api("GET")).body.state, "idle");
    const post = await t.api("POST", {});
    assert.equal(post.status, 202);
    assert.equal(post.body.state, "checking");
    assert.equal((await t.api("POST", {})).status, 409, "one update at a time");
    assert.equal(await t.swapped, "0.0.2");
    assert.deepEqual(seen, ["checking", "downloading", "verifying", "swapping", "restarting"]);
    const s = (await t.api("GET")).body;
    assert.equal(s.state, "restarting");
    assert.equal(s.version, "0.0.2");
    assert.equal(s.previous, "0.0.1");
    assert.equal(s.pid, 4242);

    // The files: new executable, .prev the old one, the marker names the trial; nothing left over.
    assert.equal(readFileSync(t.paths.exe, "utf8"), new TextDecoder().decode(NEW));
    assert.equal(readFileSync(t.paths.prev, "utf8"), OLD);
    const marker = readMarker(t.paths.marker) as TrialMarker;
    assert.deepEqual(
      [marker.version, marker.previous, marker.starts, marker.boots, marker.maxStarts, marker.exe],
      ["0.0.2", "0.0.1", 0, 0, 3, t.paths.exe],
    );
    assert.ok(Math.abs(marker.deadline - (Date.now() / 1000 + 60)) < 5);
    for (const f of [t.paths.part, t.paths.partState, t.paths.lock, t.paths.prevTmp]) {
      assert.ok(!existsSync(f), `${f} is gone`);
    }
    assert.ok(t.events.includes("update.swapped"));
  } finally {
    await t.close();
  }
});

Deno.test("POST /api/v1/update answers 400 for a bad body and 409 when it cannot update at all", async () => {
  const t = await setup();
  try {
    const bad = await t.api("POST", { manifestUrl: "nope", extra: 1 });
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.body.errors.map((e: { path: string }) => e.path).sort(), ["/extra", "/manifestUrl"]);
  } finally {
    await t.close();
  }
  const src = await setup({ compiled: false });
  try {
    const r = await src.api("POST", {});
    assert.equal(r.status, 409);
    assert.match(r.body.error, /Self-update needs the compiled binary/);
  } finally {
    await src.close();
  }
  const noKey = await setup({}, { publicKey: undefined });
  try {
    assert.equal((await noKey.api("POST", {})).status, 409);
  } finally {
    await noKey.close();
  }
  const noUrl = await setup({}, { manifestUrl: undefined });
  try {
    assert.equal((await noUrl.api("POST", {})).status, 400);
  } finally {
    await noUrl.close();
  }
});

Deno.test("a refusal ends in failed with the reason and leaves the executable alone", async () => {
  const t = await setup();
  try {
    const url = await t.rel.publish("0.0.2", NEW, { name: "bad", tamper: (m) => (m.version = "9.9.9") });
    assert.equal((await t.api("POST", { manifestUrl: url })).status, 202);
    const s = await waitFor(async () => {
      const b = (await t.api("GET")).body;
      return b.state === "failed" ? b : undefined;
    });
    assert.match(s.reason, /signature does not verify/);
    assert.equal(readFileSync(t.paths.exe, "utf8"), OLD);
    assert.ok(!existsSync(t.paths.prev) && !existsSync(t.paths.marker));
  } finally {
    await t.close();
  }
});

/** After the swap: the same paths seen by the new version, on trial. */
async function onTrial(trialSeconds: number) {
  const t = await setup({}, { trialSeconds });
  await t.api("POST", {});
  await t.swapped;
  const next = createUpdater({
    paths: t.paths,
    version: "0.0.2",
    target: "linux-x64",
    compiled: true,
    settings: { trialSeconds, maxStarts: 3 },
    log: createLogger("error", () => {}),
    pid: 4343,
    by: "agent",
    onRolledBack: () => rolled.resolve(),
  });
  const rolled = Promise.withResolvers<void>();
  return { ...t, next, rolled: rolled.promise };
}

Deno.test("the trial commits once healthy: marker gone, .prev kept, committed recorded", async () => {
  const t = await onTrial(60);
  try {
    assert.equal(t.next.status().state, "trial");
    let checks = 0;
    t.next.startTrial(() => Promise.resolve(++checks < 3 ? "the hub is not connected" : undefined));
    await waitFor(() => t.next.status().state === "committed");
    assert.equal(checks, 3);
    assert.ok(!existsSync(t.paths.marker) && existsSync(t.paths.prev));
    assert.equal(readResult(t.paths.result)!.status, "committed");
  } finally {
    t.next.stop();
    await t.close();
  }
});

Deno.test("a trial that is not healthy by its deadline restores .prev and asks for a restart", async () => {
  const t = await onTrial(1);
  try {
    t.next.startTrial(() => Promise.resolve("the hub is not connected"));
    await t.rolled;
    const s = t.next.status();
    assert.equal(s.state, "rolled-back");
    assert.match(s.reason!, /Not healthy within the 1 s trial: the hub is not connected/);
    assert.equal(readFileSync(t.paths.exe, "utf8"), OLD);
    assert.ok(!existsSync(t.paths.marker) && !existsSync(t.paths.prev));
  } finally {
    t.next.stop();
    await t.close();
  }
});

Deno.test("failTrial (the agent could not start) rolls back at once", async () => {
  const t = await onTrial(60);
  try {
    assert.equal(t.next.failTrial("The agent did not start: port in use"), true);
    assert.equal(readFileSync(t.paths.exe, "utf8"), OLD);
    assert.match(readResult(t.paths.result)!.reason!, /port in use/);
    assert.equal(t.next.failTrial("again"), false, "nothing on trial any more");
  } finally {
    t.next.stop();
    await t.close();
  }
});

Deno.test("an older version is refused unless allowDowngrade, then installed like any other", async () => {
  const t = await setup({ version: "0.0.3" });
  try {
    assert.equal((await t.api("POST", {})).status, 202);
    const refused = await waitFor(async () => {
      const b = (await t.api("GET")).body;
      return b.state === "failed" ? b : undefined;
    });
    assert.match(refused.reason, /offers 0\.0\.2, which is not newer than the running 0\.0\.3/);
    assert.equal((await t.api("POST", { allowDowngrade: true })).status, 202);
    assert.equal(await t.swapped, "0.0.2");
    const marker = readMarker(t.paths.marker) as TrialMarker;
    assert.deepEqual([marker.version, marker.previous], ["0.0.2", "0.0.3"]);
  } finally {
    await t.close();
  }
});
