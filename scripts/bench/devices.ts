/**
 * The device transports of SPEC §10, each against an agent and `outpost hub` on loopback:
 *
 * - `e2e-coap`: 8 CoAP devices (each its own UDP socket, in a separate load process) keep 8
 *   confirmable requests in flight each, one sample per request, no rules; every request is
 *   answered 2.01 only after its commit. Figures: requests (= messages) per second answered
 *   2.01, request → 2.01 latency p50/p99, and messages per second at the hub.
 * - `modbus-jitter`: 10 Modbus devices polled every second from a real pymodbus server
 *   (tests/integration/modbus_server.py), first with the agent otherwise idle, then while the
 *   CoAP load runs. Jitter of a poll: how far its time (the message's `ts`) is from its device's
 *   1 s grid (the grid placed at the median offset of that device's polls); missed ticks counted.
 */
import Database from "libsql";
import { join } from "node:path";
import {
  freePort,
  type HubHandle,
  removeDir,
  ROOT,
  startAgent,
  startHub,
  tempDir,
  TEST_TOKEN,
  waitFor,
  writeAgentConfig,
} from "../../tests/helpers/procs.ts";
import { type BenchContext, EDGE, startTool } from "./harness.ts";
import { median } from "./procs.ts";

interface DeviceEdge {
  dir: string;
  hub: HubHandle;
  agent: Awaited<ReturnType<typeof startAgent>>;
  coapPort: number;
  tokens: string[];
  stop(): Promise<void>;
}

async function startDeviceEdge(
  ctx: BenchContext,
  o: { coapDevices: number; modbus?: Record<string, unknown>[] },
): Promise<DeviceEdge> {
  const dir = tempDir("outpost-bench-devices-");
  const hub = await startHub({ dir: join(dir, "hub"), edges: [EDGE], runner: ctx.runner });
  const coapPort = await freePort();
  const config = writeAgentConfig(join(dir, "agent"), {
    edgeId: EDGE.id,
    dataDir: "data",
    api: { listen: `127.0.0.1:${await freePort()}`, token: TEST_TOKEN },
    mqtt: { broker: false },
    coap: { listen: `127.0.0.1:${coapPort}` },
    hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: EDGE.routingKey, secret: EDGE.secret },
    ...(o.modbus ? { modbus: o.modbus } : {}),
  });
  const agent = await startAgent(config, { runner: ctx.runner });
  const tokens: string[] = [];
  for (let i = 0; i < o.coapDevices; i++) {
    const res = await agent.api("/api/v1/devices", {
      method: "POST",
      body: JSON.stringify({ id: `coap-${i}` }),
    });
    tokens.push((await res.json()).token);
  }
  return {
    dir,
    hub,
    agent,
    coapPort,
    tokens,
    async stop() {
      await agent.stop("SIGTERM");
      await hub.proc.kill("SIGTERM");
      removeDir(dir);
    },
  };
}

async function depth(edge: DeviceEdge): Promise<number> {
  return (await (await edge.agent.api("/api/v1/status")).json()).outbox.depth;
}

function runCoapLoad(ctx: BenchContext, edge: DeviceEdge, messages: number) {
  return startTool(ctx, "coap_load.ts", [
    `--port=${edge.coapPort}`,
    `--tokens=${edge.tokens.join(",")}`,
    `--messages=${messages}`,
    "--window=8",
  ]);
}

export async function e2eCoap(ctx: BenchContext): Promise<void> {
  const messages = ctx.quick ? 30_000 : 100_000;
  const runs: { rps: number; hubRate: number; p50: number; p99: number }[] = [];
  for (let run = 1; run <= ctx.runs; run++) {
    const edge = await startDeviceEdge(ctx, { coapDevices: 8 });
    try {
      const started = Date.now();
      const load = runCoapLoad(ctx, edge, messages);
      const done = await load.waitForEvent("load.done", 600_000);
      if (Number(done.failed) > 0) throw new Error(`${done.failed} CoAP requests were not answered 2.01`);
      await waitFor(async () => (await depth(edge)) === 0, 600_000, "the outbox to empty");
      const db = new Database(join(edge.hub.dataDir, "hub.db"), { readonly: true });
      // The devices' data (each device's connectivity event at the hub is not one of the messages).
      const row = db.prepare(
        "SELECT COUNT(*) AS n, MAX(received_at) AS last FROM records " +
          "WHERE NOT (kind = 'event' AND json_extract(payload, '$.type') = 'connectivity')",
      ).get() as {
        n: number;
        last: number;
      };
      db.close();
      if (row.n !== messages) throw new Error(`the hub holds ${row.n} of ${messages} messages`);
      const r = {
        rps: Number(done.msgsPerSecond),
        hubRate: row.n / ((row.last - started) / 1000),
        p50: Number(done.p50Ms),
        p99: Number(done.p99Ms),
      };
      runs.push(r);
      ctx.log(
        `e2e-coap run ${run}: ${messages} confirmable requests, ${r.rps} req/s answered 2.01 ` +
          `(request → 2.01 p50 ${r.p50} ms, p99 ${r.p99} ms), ${Math.round(r.hubRate)} msg/s at the hub`,
      );
    } finally {
      await edge.stop();
    }
  }
  const m = (f: (r: (typeof runs)[number]) => number) => median(runs.map(f));
  Object.assign(ctx.summary, {
    e2e_coap_req_per_s: Math.round(m((r) => r.rps)),
    e2e_coap_hub_msgs_per_s: Math.round(m((r) => r.hubRate)),
    e2e_coap_p50_ms: m((r) => r.p50),
    e2e_coap_p99_ms: m((r) => r.p99),
  });
}

/** Jitter figures of the polls whose `ts` falls in [from, to). */
function jitter(rows: { device: string; ts: number }[], from: number, to: number, intervalMs: number) {
  const byDevice = new Map<string, number[]>();
  for (const r of rows) {
    if (r.ts < from || r.ts >= to) continue;
    let list = byDevice.get(r.device);
    if (!list) byDevice.set(r.device, list = []);
    list.push(r.ts);
  }
  const deviations: number[] = [];
  let missed = 0;
  let polls = 0;
  /** Seconds into the phase of each poll followed by a missed tick. */
  const missedAt: number[] = [];
  for (const ts of byDevice.values()) {
    ts.sort((a, b) => a - b);
    polls += ts.length;
    const offsets = ts.map((t) => ((t - ts[0]) % intervalMs + intervalMs) % intervalMs);
    // Offsets near the interval's end are early polls: fold them to negative.
    const folded = offsets.map((o) => (o > intervalMs / 2 ? o - intervalMs : o));
    const center = median(folded);
    for (const o of folded) deviations.push(Math.abs(o - center));
    for (let i = 1; i < ts.length; i++) {
      const skipped = Math.max(0, Math.round((ts[i] - ts[i - 1]) / intervalMs) - 1);
      missed += skipped;
      if (skipped > 0) missedAt.push(Math.round((ts[i - 1] - from) / 100) / 10);
    }
  }
  deviations.sort((a, b) => a - b);
  const pct = (p: number) =>
    deviations.length ? deviations[Math.min(deviations.length - 1, Math.ceil(deviations.length * p) - 1)] : 0;
  missedAt.sort((a, b) => a - b);
  return { polls, p50: pct(0.5), p99: pct(0.99), max: deviations.at(-1) ?? 0, missed, missedAt };
}

export async function modbusJitter(ctx: BenchContext): Promise<void> {
  const seconds = ctx.quick ? 20 : 60;
  const modbusPort = await freePort();
  const server = new Deno.Command("/usr/bin/python3", {
    args: [join(ROOT, "tests/integration/modbus_server.py"), String(modbusPort)],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const registers = [
    { name: "power", table: "holding", address: 0, scale: 0.1 },
    { name: "serial", table: "holding", address: 2, type: "uint32" },
    { name: "temp", table: "holding", address: 6, type: "float32" },
    { name: "energy", table: "input", address: 1, type: "uint32", wordOrder: "little" },
    { name: "pressure", table: "input", address: 5, type: "float32", wordOrder: "little" },
    { name: "pump", table: "coil", address: 0 },
    { name: "alarm", table: "discrete", address: 1 },
  ];
  const modbus = Array.from({ length: 10 }, (_, i) => ({
    device: `plc-${i}`,
    host: "127.0.0.1",
    port: modbusPort,
    interval: "1s",
    registers,
  }));
  try {
    const edge = await startDeviceEdge(ctx, { coapDevices: 8, modbus });
    try {
      await edge.agent.proc.waitForEvent("modbus.online", 20_000);
      await new Promise((r) => setTimeout(r, 2_000)); // every device online and on its grid
      const idleFrom = Date.now();
      await new Promise((r) => setTimeout(r, seconds * 1000));
      const loadFrom = Date.now();
      const load = runCoapLoad(ctx, edge, 1_000_000);
      await new Promise((r) => setTimeout(r, seconds * 1000));
      const loadTo = Date.now();
      await load.kill("SIGTERM");
      const metrics = await (await edge.agent.api("/metrics")).text();
      const failedPolls = Number(
        /^outpost_modbus_polls_total\{result="failed"\} (\d+)/m.exec(metrics)?.[1] ?? 0,
      );
      await waitFor(async () => (await depth(edge)) === 0, 600_000, "the outbox to empty");
      const db = new Database(join(edge.hub.dataDir, "hub.db"), { readonly: true });
      const rows = db.prepare("SELECT device, ts FROM records WHERE device LIKE 'plc-%'").all() as {
        device: string;
        ts: number;
      }[];
      const coapCount = (db.prepare(
        "SELECT COUNT(*) AS n FROM records WHERE device LIKE 'coap-%' AND ts >= ? AND ts < ? AND kind = 'telemetry'",
      ).get(loadFrom, loadTo) as { n: number }).n;
      db.close();
      const idle = jitter(rows, idleFrom, loadFrom, 1000);
      const busy = jitter(rows, loadFrom, loadTo, 1000);
      ctx.log(
        `modbus-jitter: 10 devices at 1 s, idle ${seconds} s: ${idle.polls} polls, jitter p50 ${idle.p50} ms, ` +
          `p99 ${idle.p99} ms, max ${idle.max} ms, ${idle.missed} missed ticks`,
      );
      ctx.log(
        `modbus-jitter: under CoAP load (${
          Math.round(coapCount / seconds)
        } msg/s) ${seconds} s: ${busy.polls} polls, ` +
          `jitter p50 ${busy.p50} ms, p99 ${busy.p99} ms, max ${busy.max} ms, ${busy.missed} missed ticks` +
          (busy.missed > 0
            ? ` (after polls at ${busy.missedAt.slice(0, 10).join(", ")} s into the phase)`
            : ""),
      );
      ctx.log(
        `modbus-jitter: ${failedPolls} polls failed (no answer within the 1 s timeout) over both phases`,
      );
      Object.assign(ctx.summary, {
        modbus_jitter_idle_p50_ms: idle.p50,
        modbus_jitter_idle_p99_ms: idle.p99,
        modbus_jitter_idle_max_ms: idle.max,
        modbus_missed_idle: idle.missed,
        modbus_jitter_load_p50_ms: busy.p50,
        modbus_jitter_load_p99_ms: busy.p99,
        modbus_jitter_load_max_ms: busy.max,
        modbus_missed_load: busy.missed,
        modbus_jitter_load_coap_msgs_per_s: Math.round(coapCount / seconds),
        modbus_failed_polls: failedPolls,
      });
    } finally {
      await edge.stop();
    }
  } finally {
    try {
      server.kill("SIGTERM");
    } catch { /* ended */ }
    await server.status;
  }
}
