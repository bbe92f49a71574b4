/**
 * The compiled binary's memory behaviour (docs/memory.md), run as users run it: `outpost run`
 * starts itself again with its GC options (same process id), hands its start-up pages back to the
 * kernel a second after start-up, and answers /healthz and takes a message at once afterwards.
 * `OUTPOST_GC_TUNING=0` and `OUTPOST_RELEASE_STARTUP_PAGES=0` turn each off.
 *
 * The x64 binary is built once for this file into a temporary folder (OUTPOST_TEST_REUSE_DIST=1
 * uses dist/ instead).
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gcEnvironment } from "../../src/runtime/gc.ts";
import { freePort, removeDir, runOutpost, startProcess, tempDir } from "../helpers/procs.ts";
import { buildDist, reuseDist } from "./build_dist.ts";

const work = tempDir("outpost-memory-test-");
let binaryPromise: Promise<string> | undefined;

function binary(): Promise<string> {
  binaryPromise ??= (async () => {
    const reused = reuseDist();
    if (reused) return reused.binaries["linux-x64"];
    const built = await buildDist({ outdir: join(work, "dist"), targets: "linux-x64" });
    return built.binaries["linux-x64"];
  })();
  return binaryPromise;
}

const opts = { sanitizeResources: false, sanitizeOps: false };

function statusKb(pid: number, key: string): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? NaN);
}

function environ(pid: number): string[] {
  return readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
}

/** `init` and `run` in a fresh folder; returns the process and an API helper. */
async function startAgent(exe: string, env: Record<string, string>) {
  const dir = tempDir("outpost-memory-");
  const configPath = join(dir, "outpost.json");
  const init = await runOutpost(["init", "--config", configPath, "--data-dir", join(dir, "data")], {
    runner: exe,
    cwd: dir,
  });
  assert.equal(init.code, 0, init.stdout + init.stderr);
  const config = JSON.parse(readFileSync(configPath, "utf8"));
  const apiPort = await freePort();
  config.api.listen = `127.0.0.1:${apiPort}`;
  config.mqtt.broker.listen = `127.0.0.1:${await freePort()}`;
  writeFileSync(configPath, JSON.stringify(config, null, 2));
  const proc = startProcess([exe, "run", "--config", configPath], {
    cwd: dir,
    env: { BUN_TMPDIR: dir, ...env },
  });
  const base = `http://127.0.0.1:${apiPort}`;
  const headers = { authorization: `Bearer ${config.api.token}`, "content-type": "application/json" };
  return {
    proc,
    /** Milliseconds a request takes, and its status. */
    async timed(path: string, init?: RequestInit): Promise<{ ms: number; status: number }> {
      const t0 = performance.now();
      const res = await fetch(`${base}${path}`, { ...init, headers });
      await res.body?.cancel();
      return { ms: performance.now() - t0, status: res.status };
    },
    async stop() {
      const code = await proc.kill("SIGTERM");
      removeDir(dir);
      return code;
    },
  };
}

Deno.test({
  ...opts,
  name:
    "outpost run (compiled) runs with its GC options and gives its start-up pages back, then answers at once",
  fn: async () => {
    const agent = await startAgent(await binary(), {});
    try {
      await agent.proc.waitForEvent("agent.started", 60_000);
      const given = await agent.proc.waitForEvent("memory.gc_options", 5_000);
      assert.deepEqual((given.options as string[]).sort(), Object.keys(gcEnvironment()).sort());
      // Started again in place: the process that was spawned has the options in its environment.
      for (const [k, v] of Object.entries(gcEnvironment())) {
        assert.ok(environ(agent.proc.pid).includes(`${k}=${v}`));
      }
      const fileBefore = statusKb(agent.proc.pid, "RssFile");
      const released = await agent.proc.waitForEvent("memory.startup_pages_released", 10_000);
      assert.ok((released.advisedMb as number) > 50, `advised ${released.advisedMb} MB`);
      if (released.refused === 0) {
        const fileAfter = statusKb(agent.proc.pid, "RssFile");
        assert.ok(
          fileAfter < fileBefore / 2,
          `mapped-file RSS ${fileBefore} kB before, ${fileAfter} kB after releasing the start-up pages`,
        );
      }
      const health = await agent.timed("/healthz");
      assert.equal(health.status, 200);
      assert.ok(health.ms < 1_000, `/healthz took ${health.ms.toFixed(0)} ms`);
      const ingest = await agent.timed("/api/v1/devices/boiler-1/telemetry", {
        method: "POST",
        body: JSON.stringify({ temperature: 71.5 }),
      });
      assert.equal(ingest.status, 202);
      assert.ok(ingest.ms < 1_000, `the first ingest took ${ingest.ms.toFixed(0)} ms`);
    } finally {
      assert.equal(await agent.stop(), 0, "SIGTERM drains and exits 0");
    }
  },
});

Deno.test({
  ...opts,
  name: "OUTPOST_GC_TUNING=0 and OUTPOST_RELEASE_STARTUP_PAGES=0 keep the runtime's defaults",
  fn: async () => {
    const agent = await startAgent(await binary(), {
      OUTPOST_GC_TUNING: "0",
      OUTPOST_RELEASE_STARTUP_PAGES: "0",
    });
    try {
      await agent.proc.waitForEvent("agent.started", 60_000);
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      const events = agent.proc.lines.filter((l) => l.includes('"event":"memory.'));
      assert.deepEqual(events, []);
      assert.ok(!environ(agent.proc.pid).some((e) => e.startsWith("BUN_JSC_")));
      assert.equal((await agent.timed("/healthz")).status, 200);
    } finally {
      assert.equal(await agent.stop(), 0, "SIGTERM drains and exits 0");
    }
  },
});

globalThis.addEventListener("unload", () => removeDir(work));
