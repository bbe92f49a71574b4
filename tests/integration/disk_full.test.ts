/**
 * A really full disk (SPEC §14): the agent's data folder on a small tmpfs mounted by the test (as
 * root; skipped with the reason otherwise). HTTP answers 507 "storage full: …", MQTT withholds the
 * PUBACK without dropping the connection, and the agent keeps running; with `outbox.minFreeBytes` under `drop-oldest` the oldest records make room and
 * ingest continues, every 202 either in the outbox or counted as dropped; SIGTERM exits cleanly.
 */
import assert from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type AgentHandle,
  connectivityEvents,
  freePort,
  isConnectivityEvent,
  removeDir,
  startAgent,
  tempDir,
  TEST_TOKEN,
  writeAgentConfig,
} from "../helpers/procs.ts";

const MOUNT_MB = 32;

async function run(cmd: string, args: string[]): Promise<{ code: number; err: string }> {
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  return { code: out.code, err: new TextDecoder().decode(out.stderr).trim() };
}

/** Mounts a tmpfs of `mb` MiB on `dir`, or says why it cannot. */
async function mountTmpfs(dir: string, mb: number): Promise<string | undefined> {
  if (Deno.uid() !== 0) return "needs root to mount a tmpfs";
  mkdirSync(dir, { recursive: true });
  const r = await run("mount", ["-t", "tmpfs", "-o", `size=${mb}m,mode=0700`, "tmpfs", dir]);
  return r.code === 0 ? undefined : `mount -t tmpfs failed: ${r.err}`;
}

const cannotMount = await (async () => {
  const probe = tempDir("outpost-mount-probe-");
  try {
    const why = await mountTmpfs(join(probe, "m"), 1);
    if (why === undefined) await run("umount", [join(probe, "m")]);
    return why;
  } finally {
    removeDir(probe);
  }
})();

function metric(text: string, name: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(" ").pop()) : 0;
}

async function post(agent: AgentHandle, i: number, size: number): Promise<Response> {
  return await agent.api("/api/v1/devices/filler/telemetry", {
    method: "POST",
    body: JSON.stringify({ i, pad: "p".repeat(size) }),
  });
}

Deno.test({
  name: "disk full on a tmpfs: 507 'storage full: …', agent keeps running; then drop-oldest via " +
    "outbox.minFreeBytes lets ingest continue, every 202 stored or counted as dropped; SIGTERM exits 0",
  ignore: cannotMount !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-diskfull-");
    const mnt = join(dir, "mnt");
    let agent: AgentHandle | undefined;
    const why = await mountTmpfs(mnt, MOUNT_MB);
    assert.equal(why, undefined);
    try {
      const apiPort = await freePort();
      const config = (minFreeBytes: number) => ({
        edgeId: "gw-full",
        dataDir: join(mnt, "data"),
        api: { listen: `127.0.0.1:${apiPort}`, token: TEST_TOKEN },
        mqtt: { broker: { listen: "127.0.0.1:0" } },
        outbox: { maxBytes: 1 << 30, onFull: "drop-oldest", minFreeBytes },
      });
      // Something else on the same file system, which the operator deletes later.
      const other = join(mnt, "other.bin");
      writeFileSync(other, new Uint8Array(12 * 1024 * 1024).fill(1));
      // 1. No free-space margin: the disk fills up and the answer is 507 with the reason.
      let configPath = writeAgentConfig(join(dir, "agent"), config(0));
      agent = await startAgent(configPath);
      let accepted = 0;
      let full: Response | undefined;
      for (let i = 0; i < 2000 && !full; i++) {
        const res = await post(agent, i, 60_000);
        if (res.status === 202) {
          accepted++;
          await res.body?.cancel();
        } else full = res;
      }
      assert.ok(full, "the disk filled up");
      assert.equal(full.status, 507);
      const body = await full.json();
      assert.match(body.error, /^storage full: database or disk is full/);
      assert.ok(accepted > 100, `${accepted} accepted before the disk was full`);
      assert.equal((await fetch(`http://127.0.0.1:${apiPort}/healthz`)).status, 200, "still running");
      // MQTT: the PUBACK is withheld (backpressure) and the connection stays up: mosquitto_pub
      // is still waiting when `timeout` ends it (exit 124), rather than failing on a disconnect.
      const bigPayload = join(dir, "big.json");
      writeFileSync(bigPayload, JSON.stringify({ i: -1, pad: "p".repeat(200_000) }));
      const brokerPort = Number(
        String((await agent.proc.waitForEvent("mqtt.broker.started")).listen).split(":").pop(),
      );
      const mqtt = await new Deno.Command("timeout", {
        args: [
          "3",
          "mosquitto_pub",
          "-h",
          "127.0.0.1",
          "-p",
          String(brokerPort),
          "-q",
          "1",
          "-t",
          "devices/m1/telemetry",
          "-f",
          bigPayload,
        ],
        stdout: "null",
        stderr: "piped",
      }).output();
      assert.equal(
        mqtt.code,
        124,
        `mosquitto_pub exit ${mqtt.code}: ${new TextDecoder().decode(mqtt.stderr)}`,
      );
      assert.ok(
        !agent.proc.lines.some((l) => l.includes("mqtt.store_failed")),
        "not taken for a store failure",
      );
      let status = await (await agent.api("/api/v1/status")).json();
      const events1 = await connectivityEvents(agent);
      assert.equal(
        status.outbox.depth,
        accepted + events1,
        "every 202 (and the device's connectivity) is in the outbox",
      );
      assert.equal(await agent.stop("SIGTERM"), 0, "SIGTERM on a full disk exits cleanly");
      agent = undefined;

      // 2. 12 MiB freed, and a margin of 8 MiB (room for SQLite's write-ahead log): the outbox
      // grows by the rest, then drop-oldest makes room and ingest goes on, far past the disk's size.
      rmSync(other);
      configPath = writeAgentConfig(join(dir, "agent"), config(8 * 1024 * 1024));
      agent = await startAgent(configPath);
      let later = 0;
      const statuses: Record<number, number> = {};
      for (let i = 0; i < 600; i++) {
        const res = await post(agent, 100_000 + i, 60_000);
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        if (res.status === 202) later++;
        else console.log(res.status, await res.text());
        await res.body?.cancel().catch(() => {});
      }
      assert.deepEqual(statuses, { 202: 600 }, "ingest continues on the full disk");
      status = await (await agent.api("/api/v1/status")).json();
      const metrics = await (await agent.api("/metrics")).text();
      assert.ok(status.outbox.dropped > 300, `drop-oldest engaged (${status.outbox.dropped} dropped)`);
      assert.equal(
        status.outbox.depth + status.outbox.dropped,
        accepted + later + events1 + await connectivityEvents(agent),
        "every 202 (and the device's connectivity) is in the outbox or counted as dropped",
      );
      assert.equal(metric(metrics, "outpost_outbox_dropped_total"), status.outbox.dropped);
      assert.equal(
        agent.proc.lines.filter((l) => l.includes('"event":"outbox.dropped"')).length,
        1,
        "drops are logged once a minute, not per commit",
      );
      // The newest are the ones kept.
      const newest = (await (await agent.api("/api/v1/outbox?limit=1000")).json()).records
        .filter((r: any) => !isConnectivityEvent(r));
      assert.equal(newest.at(-1).payload.i, 100_000 + 599);
      assert.equal(await agent.stop("SIGTERM"), 0);
      agent = undefined;
    } finally {
      await agent?.stop("SIGKILL");
      await run("umount", ["-l", mnt]);
      removeDir(dir);
    }
  },
});

if (cannotMount !== undefined) console.log(`disk_full.test.ts skipped: ${cannotMount}`);
