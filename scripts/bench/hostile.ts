/**
 * `deno run -A scripts/bench/hostile.ts [--runner bun|deno]`: the agent's resident memory under
 * hostile clients (SPEC §14), each against a fresh agent run from source (Bun by default, as the
 * binary runs), no hub, default limits:
 * - `lurker`: a persistent (clean: false) client subscribes to `#` and leaves; 50 MB of QoS 1
 *   device data is then published (its offline queue is bounded by `maxOfflineQueue`);
 * - `connect200mb`: a CONNECT declaring 200 MB streamed at the broker (cut off at its header);
 * - `retained5000`: 5,000 distinct retained topics (kept up to `maxRetained`, 10,000);
 * - `devices10000`: 12,000 invented device ids over HTTP (10,000 tracked, the rest refused).
 * Prints RSS before and after each (MB) and the growth, one line each, then one JSON line.
 */
import { createConnection } from "node:net";
import { join } from "node:path";
import process from "node:process";
import mqtt from "mqtt";
import { rssMb } from "./procs.ts";
import {
  type AgentHandle,
  freePort,
  removeDir,
  type Runner,
  startAgent,
  tempDir,
  TEST_TOKEN,
  writeAgentConfig,
} from "../../tests/helpers/procs.ts";

const runner =
  (process.argv.includes("--runner") ? process.argv[process.argv.indexOf("--runner") + 1] : "bun") as Runner;

async function agent(dir: string): Promise<{ agent: AgentHandle; port: number }> {
  const configPath = writeAgentConfig(join(dir, "agent"), {
    edgeId: "bench-hostile",
    dataDir: "data",
    api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
    mqtt: { broker: { listen: "127.0.0.1:0", auth: "none" } },
  });
  const a = await startAgent(configPath, { runner });
  const started = await a.proc.waitForEvent("mqtt.broker.started");
  return { agent: a, port: Number(String(started.listen).split(":").pop()) };
}

const settle = () => new Promise((r) => setTimeout(r, 1_000));

async function lurker(port: number): Promise<void> {
  const l = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: "lurker", clean: false });
  await l.subscribeAsync("#", { qos: 1 });
  await l.endAsync();
  const p = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: "pub" });
  const payload = JSON.stringify({ blob: "x".repeat(10_000) });
  for (let sent = 0; sent < 50 * 1024 * 1024; sent += payload.length) {
    await p.publishAsync("devices/d1/telemetry", payload, { qos: 1 });
  }
  await p.endAsync();
}

async function connect200mb(port: number): Promise<void> {
  await new Promise<void>((resolve) => {
    const s = createConnection({ port, host: "127.0.0.1" });
    s.on("error", () => {});
    s.on("close", () => resolve());
    s.on("connect", () => {
      s.write(new Uint8Array([0x10, 0x80, 0x80, 0x80, 0x64])); // CONNECT, 200 MiB
      const chunk = new Uint8Array(64 * 1024);
      let sent = 0;
      const pump = () => {
        while (sent < 200 * 1024 * 1024 && !s.destroyed) {
          sent += chunk.length;
          if (!s.write(chunk)) return void s.once("drain", pump);
        }
        s.end();
      };
      pump();
    });
  });
}

async function retained(port: number): Promise<void> {
  const p = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: "retainer" });
  for (let i = 0; i < 5_000; i++) await p.publishAsync(`bus/r/${i}`, `value-${i}`, { qos: 1, retain: true });
  await p.endAsync();
}

async function devices(a: AgentHandle): Promise<void> {
  const blob = "y".repeat(2_000);
  for (let i = 0; i < 12_000; i++) {
    const res = await a.api(`/api/v1/devices/invented-${i}/telemetry`, {
      method: "POST",
      body: JSON.stringify({ blob }),
    });
    await res.body?.cancel();
  }
}

const cases: [string, (port: number, a: AgentHandle) => Promise<void>][] = [
  ["lurker", (port) => lurker(port)],
  ["connect200mb", (port) => connect200mb(port)],
  ["retained5000", (port) => retained(port)],
  ["devices10000", (_port, a) => devices(a)],
];

const out: Record<string, { before: number; after: number; growth: number }> = {};
for (const [name, run] of cases) {
  const dir = tempDir("outpost-bench-hostile-");
  const { agent: a, port } = await agent(dir);
  try {
    await settle();
    const before = rssMb(a.proc.pid).rss;
    await run(port, a);
    await settle();
    const after = rssMb(a.proc.pid).rss;
    out[name] = { before: round(before), after: round(after), growth: round(after - before) };
    console.log(
      `${name.padEnd(14)} RSS ${before.toFixed(1)} → ${after.toFixed(1)} MB (+${
        (after - before).toFixed(1)
      })`,
    );
  } finally {
    await a.stop();
    removeDir(dir);
  }
}
console.log(JSON.stringify({ runner, hostile: out }));

function round(x: number): number {
  return Math.round(x * 10) / 10;
}
