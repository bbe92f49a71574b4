/**
 * Hostile input against a real agent process (SPEC §14): deep payloads and batches larger than
 * the outbox over MQTT (Debian's mosquitto_pub), 10,000+ invented device ids over HTTP (RSS and
 * refusals), failed-authentication limits, and file modes under `umask 000`.
 */
import assert from "node:assert/strict";
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { rssMb } from "../../scripts/bench/procs.ts";
import {
  type AgentHandle,
  freePort,
  isConnectivityEvent,
  outpostCommand,
  removeDir,
  startAgent,
  startProcess,
  tempDir,
  TEST_TOKEN,
  waitFor,
  writeAgentConfig,
} from "../helpers/procs.ts";
import { requireTools } from "./mqtt_helpers.ts";

function metric(text: string, name: string, labels = ""): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(" ").pop()) : 0;
}

async function brokerPort(agent: AgentHandle): Promise<number> {
  const started = await agent.proc.waitForEvent("mqtt.broker.started");
  return Number(String(started.listen).split(":").pop());
}

/** `mosquitto_pub -q 1 -f file`, ended after 20 s (an unacknowledged publish waits forever). */
async function pubFile(port: number, topic: string, file: string): Promise<number> {
  const out = await new Deno.Command("timeout", {
    args: [
      "20",
      "mosquitto_pub",
      "-h",
      "127.0.0.1",
      "-p",
      String(port),
      "-q",
      "1",
      "-i",
      "sensor-9",
      "-t",
      topic,
      "-f",
      file,
    ],
    stdout: "null",
    stderr: "null",
  }).output();
  return out.code;
}

Deno.test({
  name: "MQTT: a payload nested 60,000 deep and a batch larger than the outbox are dead-lettered and " +
    "acknowledged; the next message from the same device is stored",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    requireTools();
    const dir = tempDir("outpost-input-mqtt-");
    let agent: AgentHandle | undefined;
    try {
      const configPath = writeAgentConfig(join(dir, "agent"), {
        edgeId: "gw-input",
        dataDir: "data",
        api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
        mqtt: { broker: { listen: "127.0.0.1:0" } },
        outbox: { maxBytes: 65536, onFull: "drop-oldest" },
      });
      agent = await startAgent(configPath);
      const port = await brokerPort(agent);
      const deep = join(dir, "deep.json");
      writeFileSync(deep, "[".repeat(60_000) + "]".repeat(60_000));
      const batch = join(dir, "batch.json");
      writeFileSync(batch, "[" + Array.from({ length: 10_000 }, () => "{}").join(",") + "]");
      const good = join(dir, "good.json");
      writeFileSync(good, '{"door":"open"}');
      const topic = "devices/sensor-9/telemetry";
      assert.equal(await pubFile(port, topic, deep), 0, "the deep payload is acknowledged");
      assert.equal(await pubFile(port, topic, batch), 0, "the oversized batch is acknowledged");
      assert.equal(await pubFile(port, topic, good), 0, "the next message is acknowledged");
      const letters = (await (await agent.api("/api/v1/deadletters")).json()).deadletters;
      assert.deepEqual(letters.map((l: { reason: string }) => l.reason), ["too-deep", "batch-too-large"]);
      assert.equal(letters[0].device, "sensor-9");
      assert.match(letters[0].message, /nested deeper than 64 levels/);
      assert.ok(letters[0].head.length <= 256);
      const outbox = (await (await agent.api("/api/v1/outbox")).json()).records;
      assert.deepEqual(
        outbox.filter((r: { kind: string }) => !isConnectivityEvent(r)).map((r: { payload: unknown }) =>
          r.payload
        ),
        [{ door: "open" }],
      );
      const status = await (await agent.api("/api/v1/status")).json();
      assert.equal(status.ingest.rejected, 2);
      assert.equal(status.outbox.dropped, 0);
      const metrics = await (await agent.api("/metrics")).text();
      assert.equal(metric(metrics, "outpost_ingest_rejected_total", '{reason="too-deep"}'), 1);
      assert.equal(metric(metrics, "outpost_ingest_rejected_total", '{reason="batch-too-large"}'), 1);
    } finally {
      await agent?.stop();
      removeDir(dir);
    }
  },
});

Deno.test({
  name: "12,000 invented device ids over HTTP: 10,000 tracked, 2,000 refused with 429 and counted; " +
    "RSS grows less than 32 MB over the same load from known ids; GET /api/v1/devices stays small",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-input-ids-");
    let agent: AgentHandle | undefined;
    try {
      const configPath = writeAgentConfig(join(dir, "agent"), {
        edgeId: "gw-ids",
        dataDir: "data",
        api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
        mqtt: { broker: false },
      });
      agent = await startAgent(configPath);
      const a = agent;
      // Warm up (first requests compile code paths), then measure.
      for (let i = 0; i < 50; i++) {
        await (await a.api(`/api/v1/devices/warm-${i}/telemetry`, { method: "POST", body: '{"v":1}' }))
          .text();
      }
      const payload = JSON.stringify({ blob: "x".repeat(2000), v: 1 });
      const TOTAL = 12_000;
      const send = async (device: (i: number) => string) => {
        const statuses: Record<number, number> = {};
        let next = 0;
        await Promise.all(Array.from({ length: 16 }, async () => {
          while (next < TOTAL) {
            const i = next++;
            const res = await a.api(`/api/v1/devices/${device(i)}/telemetry`, {
              method: "POST",
              body: payload,
            });
            await res.body?.cancel();
            statuses[res.status] = (statuses[res.status] ?? 0) + 1;
          }
        }));
        return statuses;
      };
      // The same load from devices already known: what the runtime itself costs.
      const start = rssMb(a.proc.pid).rss;
      assert.deepEqual(await send((i) => `warm-${i % 50}`), { 202: TOTAL });
      const before = rssMb(a.proc.pid).rss;
      const statuses = await send((i) => `invented-${i}`);
      const after = rssMb(a.proc.pid);
      const accepted = 10_000 - 50;
      assert.deepEqual(statuses, { 202: accepted, 429: TOTAL - accepted });
      const metrics = await (await a.api("/metrics")).text();
      assert.equal(metric(metrics, "outpost_devices_refused_total"), TOTAL - accepted);
      const listed = await (await a.api("/api/v1/devices")).text();
      const list = JSON.parse(listed);
      assert.equal(list.total, 10_000);
      assert.equal(list.devices.length, 1000);
      assert.ok(listed.length < 300_000, `GET /api/v1/devices is ${listed.length} bytes`);
      assert.equal(a.proc.lines.filter((l) => l.includes('"event":"devices.limit"')).length, 1);
      assert.equal(
        a.proc.lines.filter((l) => l.includes('"event":"ingest.rejected"')).length,
        1,
        "refusals are logged once a minute, not per message",
      );
      console.log(
        `invented ids: RSS ${start.toFixed(1)} MB at start, ${
          before.toFixed(1)
        } MB after ${TOTAL} from known ids, ${after.rss.toFixed(1)} MB after ` +
          `(peak ${after.peak.toFixed(1)} MB), GET /api/v1/devices ${listed.length} bytes`,
      );
      assert.ok(after.rss - before < 32, `RSS grew ${(after.rss - before).toFixed(1)} MB`);
    } finally {
      await agent?.stop();
      removeDir(dir);
    }
  },
});

Deno.test({
  name:
    "failed authentication: after 10 failures in a minute an address gets 429 even with the right token, " +
    "counted and logged once; files are 0600 and folders 0700 under umask 000",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-input-auth-");
    let agent: AgentHandle | undefined;
    try {
      const apiPort = await freePort();
      const configPath = writeAgentConfig(join(dir, "agent"), {
        edgeId: "gw-auth",
        dataDir: "data",
        api: { listen: `127.0.0.1:${apiPort}`, token: TEST_TOKEN },
        mqtt: { broker: false },
      });
      const cmd = outpostCommand();
      const proc = startProcess([
        "sh",
        "-c",
        'umask 000 && exec "$0" "$@"',
        ...cmd,
        "run",
        "--config",
        configPath,
      ]);
      await proc.waitForEvent("agent.started");
      agent = {
        proc,
        apiPort,
        token: TEST_TOKEN,
        configPath,
        api: (path, init) =>
          fetch(`http://127.0.0.1:${apiPort}${path}`, {
            ...init,
            headers: { authorization: `Bearer ${TEST_TOKEN}`, ...init?.headers },
          }),
        stop: (signal: Deno.Signal = "SIGTERM") => proc.kill(signal),
      };
      const a = agent;
      const url = (p: string) => `http://127.0.0.1:${apiPort}${p}`;
      // A device's wrong token on ingest and a wrong API token both count.
      for (let i = 0; i < 10; i++) {
        const res = await fetch(url(i % 2 ? "/api/v1/status" : "/api/v1/devices/d1/telemetry"), {
          method: i % 2 ? "GET" : "POST",
          body: i % 2 ? undefined : '{"v":1}',
          headers: { authorization: "Bearer wrong-token" },
        });
        await res.body?.cancel();
        assert.equal(res.status, 401);
      }
      for (let i = 0; i < 5; i++) {
        const res = await a.api("/api/v1/status");
        await res.body?.cancel();
        assert.equal(res.status, 429, "refused even with the right token");
      }
      assert.equal((await fetch(url("/healthz"))).status, 200);
      await waitFor(
        () => a.proc.lines.some((l) => l.includes('"event":"auth.limited"')),
        5000,
        "auth.limited",
      );
      assert.equal(a.proc.lines.filter((l) => l.includes('"event":"auth.limited"')).length, 1);

      // Files, whatever the umask.
      const data = join(dir, "agent", "data");
      const mode = (p: string) => (statSync(p).mode & 0o777).toString(8);
      assert.equal(mode(data), "700");
      for (const f of ["outbox.db", "outbox.db-wal", "outbox.db-shm"]) {
        assert.equal(mode(join(data, f)), "600", f);
      }
      await a.stop();
      agent = undefined;
      for (const f of ["outbox.db"]) assert.equal(mode(join(data, f)), "600", f);
    } finally {
      await agent?.stop();
      removeDir(dir);
    }
  },
});
