/**
 * What the benchmark scenarios share: the runner and options, an edge (outpost agent + `outpost
 * hub`, each its own process on loopback), the load generators (mqtt_load.ts, mqtt_sub.ts,
 * http_load.ts, each its own process), mosquitto for the peers, and reading the hub's records
 * back from its database after a run (publish time from the payload, commit time from the row).
 */
import Database from "libsql";
import { chmodSync, copyFileSync, existsSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import {
  type AgentHandle,
  freePort,
  type HubHandle,
  type Proc,
  removeDir,
  ROOT,
  type Runner,
  startAgent,
  startHub,
  startProcess,
  tempDir,
  TEST_TOKEN,
  waitFor,
  writeAgentConfig,
} from "../../tests/helpers/procs.ts";
import { cpuSeconds, rssMb } from "./procs.ts";

export const DENO = join(ROOT, "node_modules/.bin/deno");
export const BUN = join(ROOT, "node_modules/.bin/bun");
export const MOSQUITTO = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].find((p) => existsSync(p)) ??
  "mosquitto";

export interface BenchContext {
  runner: Runner;
  quick: boolean;
  runs: number;
  /** The runtime of the load generators (`bun` or `deno`); the same for outpost and its peers. */
  load: "bun" | "deno";
  summary: Record<string, unknown>;
  log(line: string): void;
}

/**
 * The 5-rule document of the e2e scenarios: a filter, a unit conversion, a deadband, an alarm and
 * a route. With the load generators' payloads nothing is filtered or held back by the deadband
 * (every published message reaches the hub), and each device raises one alarm per 100 messages.
 */
export const BENCH_RULES = {
  version: 1,
  rules: [
    { id: "filter", if: { "==": [{ var: "status" }, "test"] }, then: [{ drop: true }], stop: true },
    {
      id: "fahrenheit",
      match: { kind: "telemetry" },
      then: [{ set: { temperature_f: { "+": [{ "*": [{ var: "temperature" }, 1.8] }, 32] } } }],
    },
    {
      id: "deadband",
      match: { kind: "telemetry" },
      then: [{ deadband: { field: "humidity", delta: 0.05 } }],
    },
    {
      id: "overheat",
      match: { kind: "telemetry" },
      if: { ">": [{ var: "temperature_f" }, 85] },
      then: [{
        alarm: { type: "overheat", severity: "major", clear: { "<": [{ var: "temperature_f" }, 80] } },
      }],
    },
    { id: "route", match: { topic: "devices/+/telemetry" }, then: [{ route: ["hub"] }] },
  ],
};

export const EDGE = { id: "bench", routingKey: "rk-bench", secret: "secret-bench-123" };

export interface Edge {
  dir: string;
  hub?: HubHandle;
  agent: AgentHandle;
  mqttPort: number;
  apiPort: number;
  /** Agent RSS and CPU now. */
  rss(): { rss: number; peak: number };
  cpu(): number;
  /** The agent's outbox depth (GET /api/v1/status). */
  depth(): Promise<number>;
  /** Starts the hub again after `stopHub` (same ports and data). */
  startHub(): Promise<HubHandle>;
  /** Stops the hub: SIGTERM, or SIGKILL when the agent runs under Deno (see `hubSignal`). */
  stopHub(): Promise<void>;
  stop(): Promise<void>;
}

export interface EdgeOptions {
  runner: Runner;
  mqtt?: boolean;
  hub?: boolean;
  rules?: Record<string, unknown>;
}

/**
 * What the hub runs from: for a compiled binary, a copy of it. Deployed, the hub runs on another
 * machine; two processes started from one file here would share the runtime's code pages, and
 * the kernel keeps shared file pages resident for both (the agent's RSS would count pages it has
 * handed back, see docs/memory.md). The same goes for libSQL's addon, which each binary extracts
 * to a file named by its content in BUN_TMPDIR: the hub gets a folder of its own (hubEnv).
 */
function hubRunner(runner: Runner): Runner {
  if (runner === "deno" || runner === "bun" || !existsSync(runner)) return runner;
  const st = statSync(runner);
  if (!st.isFile() || !/outpost-linux-/.test(runner)) return runner; // a wrapper script
  const copy = join(ROOT, "bench-results", "outpost-hub-copy");
  const cst = existsSync(copy) ? statSync(copy) : undefined;
  if (!cst || cst.size !== st.size || cst.mtimeMs < st.mtimeMs) {
    mkdirSync(join(ROOT, "bench-results"), { recursive: true });
    copyFileSync(runner, copy);
    chmodSync(copy, 0o755);
  }
  return copy;
}

/** The hub's environment: its own BUN_TMPDIR (see hubRunner). */
function hubEnv(dir: string): Record<string, string> {
  const tmp = join(dir, "hub", "tmp");
  mkdirSync(tmp, { recursive: true });
  return { BUN_TMPDIR: tmp };
}

/** Starts `outpost hub` (unless `hub: false`, which still reserves its ports) and an agent. */
export async function startEdge(o: EdgeOptions): Promise<Edge> {
  const dir = tempDir("outpost-bench-");
  const grpcPort = await freePort();
  const hubApiPort = await freePort();
  let hub = o.hub === false ? undefined : await startHub({
    dir: join(dir, "hub"),
    edges: [EDGE],
    runner: hubRunner(o.runner),
    grpcPort,
    apiPort: hubApiPort,
    env: hubEnv(dir),
  });
  const apiPort = await freePort();
  const mqttPort = await freePort();
  const config = writeAgentConfig(join(dir, "agent"), {
    edgeId: EDGE.id,
    dataDir: "data",
    api: { listen: `127.0.0.1:${apiPort}`, token: TEST_TOKEN },
    mqtt: o.mqtt === false
      ? { broker: false }
      : { broker: { listen: `127.0.0.1:${mqttPort}`, auth: "none" } },
    hub: { url: `grpc://127.0.0.1:${grpcPort}`, routingKey: EDGE.routingKey, secret: EDGE.secret },
    ...(o.rules ? { rules: o.rules } : {}),
  });
  let agent: AgentHandle;
  try {
    agent = await startAgent(config, { runner: o.runner });
  } catch (error) {
    await hub?.proc.kill("SIGKILL");
    removeDir(dir);
    throw error;
  }
  const edge: Edge = {
    dir,
    hub,
    agent,
    mqttPort,
    apiPort,
    rss: () => rssMb(agent.proc.pid),
    cpu: () => cpuSeconds(agent.proc.pid),
    async depth() {
      const res = await agent.api("/api/v1/status");
      return (await res.json()).outbox.depth;
    },
    async startHub() {
      hub = await startHub({
        dir: join(dir, "hub"),
        edges: [EDGE],
        runner: hubRunner(o.runner),
        grpcPort,
        apiPort: hubApiPort,
        env: hubEnv(dir),
      });
      edge.hub = hub;
      return hub;
    },
    async stopHub() {
      await hub?.proc.kill("SIGTERM");
      hub = undefined;
      edge.hub = undefined;
    },
    async stop() {
      await agent.stop("SIGTERM");
      await hub?.proc.kill("SIGTERM");
      removeDir(dir);
    },
  };
  return edge;
}

/** Waits until the agent's outbox is empty (everything acknowledged by the hub). */
export async function waitEmpty(edge: Edge, timeoutMs: number): Promise<void> {
  await waitFor(async () => (await edge.depth()) === 0, timeoutMs, "the outbox to empty");
}

/**
 * Starts a load generator script (scripts/bench/<name>.ts) in its own process; `options` is
 * passed as one JSON argument, or as the arguments themselves when it is a list.
 */
export function startTool(ctx: BenchContext, script: string, options: unknown): Proc {
  const path = join(ROOT, "scripts/bench", script);
  const cmd = ctx.load === "bun" ? [BUN, path] : [DENO, "run", "-A", path];
  return startProcess([...cmd, ...(Array.isArray(options) ? options : [JSON.stringify(options)])]);
}

export interface PublisherReport {
  acked: number;
  errors: number;
  firstError?: string;
  firstPublishAt: number;
  lastAckAt: number;
  pubackP50Ms: number;
  pubackP99Ms: number;
}

/**
 * A device fleet split over `processes` publisher processes: connects them all, then starts them
 * together. `done()` merges their reports.
 */
export async function startFleet(
  ctx: BenchContext,
  o: {
    url: string;
    devices: number;
    processes: number;
    perDevice?: number;
    seconds?: number;
    window?: number;
    rate?: number;
    prefix?: string;
  },
): Promise<{ procs: Proc[]; done(timeoutMs: number): Promise<PublisherReport> }> {
  const procs: Proc[] = [];
  const per = Math.ceil(o.devices / o.processes);
  for (let p = 0; p < o.processes; p++) {
    const devices = Math.min(per, o.devices - p * per);
    if (devices <= 0) break;
    procs.push(startTool(ctx, "mqtt_load.ts", {
      url: o.url,
      devices,
      first: p * per,
      prefix: o.prefix ?? "dev-",
      perDevice: o.perDevice,
      seconds: o.seconds,
      window: o.window,
      rate: o.rate,
      waitForGo: true,
    }));
  }
  await Promise.all(procs.map((p) => p.waitForEvent("connected", 120_000)));
  for (const p of procs) p.child.kill("SIGUSR1");
  return {
    procs,
    async done(timeoutMs) {
      const reports = await Promise.all(
        procs.map((p) => p.waitForEvent("done", timeoutMs) as unknown as Promise<PublisherReport>),
      );
      const errors = reports.reduce((a, r) => a + r.errors, 0);
      return {
        acked: reports.reduce((a, r) => a + r.acked, 0),
        errors,
        firstError: reports.find((r) => r.firstError)?.firstError,
        firstPublishAt: Math.min(...reports.map((r) => r.firstPublishAt)),
        lastAckAt: Math.max(...reports.map((r) => r.lastAckAt)),
        pubackP50Ms: Math.max(...reports.map((r) => r.pubackP50Ms)),
        pubackP99Ms: Math.max(...reports.map((r) => r.pubackP99Ms)),
      };
    },
  };
}

export interface HubFigures {
  /** Telemetry records at the hub. */
  count: number;
  alarms: number;
  /** Commit time of the last telemetry record (ms since the epoch). */
  lastAt: number;
  firstAt: number;
  /** Publish (from the payload's `t`) → hub commit, ms. */
  p50Ms: number;
  p99Ms: number;
}

/** Reads every record the hub stored (from its database file) into latency figures. */
export function hubFigures(hub: { dataDir: string }): HubFigures {
  const db = new Database(join(hub.dataDir, "hub.db"), { readonly: true });
  try {
    const rows = db.prepare("SELECT kind, payload, received_at FROM records").raw(true).all() as [
      string,
      string,
      number,
    ][];
    const lat: number[] = [];
    let alarms = 0;
    let firstAt = Infinity;
    let lastAt = 0;
    const T = /"t":(\d+)/;
    for (const [kind, payload, at] of rows) {
      if (kind !== "telemetry") {
        alarms++;
        continue;
      }
      const m = T.exec(payload);
      if (!m) continue;
      lat.push(at - Number(m[1]));
      if (at > lastAt) lastAt = at;
      if (at < firstAt) firstAt = at;
    }
    lat.sort((a, b) => a - b);
    const pct = (p: number) => lat.length ? lat[Math.min(lat.length - 1, Math.ceil(lat.length * p) - 1)] : 0;
    return { count: lat.length, alarms, firstAt, lastAt, p50Ms: pct(0.5), p99Ms: pct(0.99) };
  } finally {
    db.close();
  }
}

/** A mosquitto for the peer measurements (in-memory, unlimited queues, as many brokers run). */
export async function startMosquitto(
  dir: string,
  extra: string[] = [],
): Promise<{ port: number; url: string; proc: Proc; stop(): Promise<void> }> {
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const conf = join(dir, "mosquitto.conf");
  const lines = [
    `listener ${port} 127.0.0.1`,
    "allow_anonymous true",
    // The default (1,000 queued per client) drops QoS 1 messages under load: a bridge that loses
    // data is not the thing to compare with.
    "max_queued_messages 0",
    "log_dest stdout",
    "log_type error",
    "log_type warning",
    ...extra,
  ];
  if (process.getuid?.() === 0) lines.push("user root");
  writeFileSync(conf, lines.join("\n") + "\n");
  const proc = startProcess([MOSQUITTO, "-c", conf]);
  await waitFor(() => portOpen(port), 10_000, `mosquitto on port ${port}`);
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    proc,
    async stop() {
      await proc.kill("SIGKILL");
    },
  };
}

async function portOpen(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

export { freePort, removeDir, rssMb, startAgent, tempDir, TEST_TOKEN, waitFor, writeAgentConfig };
export type { AgentHandle, HubHandle, Proc, Runner };

/** Counters of the agent's /metrics (summed over labels), e.g. records per outbox commit. */
export async function agentCounters(edge: Edge, names: readonly string[]): Promise<Record<string, number>> {
  const text = await (await edge.agent.api("/metrics")).text();
  const out: Record<string, number> = {};
  for (const name of names) out[name] = 0;
  for (const line of text.split("\n")) {
    const m = /^([a-z_]+)(?:\{[^}]*\})? ([0-9.e+]+)$/.exec(line);
    if (m && m[1] in out) out[m[1]] += Number(m[2]);
  }
  return out;
}
