/**
 * Benchmarks, each as separate processes on loopback (hub, agent, load generators, peers), with
 * medians of several runs. Prints each figure as it is measured and, last, one JSON summary line,
 * also written to bench-results/latest.json. Method and latest figures: docs/performance.md.
 *
 *   npm run bench                      every scenario, 3 runs each
 *   npm run bench -- --quick           one short pass of each (about 5 minutes)
 *   npm run bench -- --only e2e-mqtt,peers --runs 5
 *   npm run bench -- --runner bun      run the agent and hub from source under Bun (or deno, or a PATH)
 *   npm run bench -- --load deno       run the load generators under Deno instead of Bun
 *   npm run bench -- --profile --only e2e-mqtt --quick
 *                                      run agent and hub from source under `bun --cpu-prof`; the
 *                                      profiles go to bench-results/profiles/ (summarise one with
 *                                      scripts/bench/profile_summary.ts FILE --owners)
 *
 * Scenarios: idle, e2e-mqtt, peers, e2e-http, e2e-coap, modbus-jitter, backlog, connections, gateway,
 * rules, hub-pg (the hub on its libSQL file against two replicas on PostgreSQL), runtimes (the Node
 * bundle against the binary), download (artifact_compressed_mb: the compressed release artifact's size).
 *
 * The default runner is the compiled x64 binary, dist/outpost-linux-x64, built first (`npm run
 * build -- --target linux-x64`) when it is missing or older than a file under src/.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ROOT, type Runner } from "../tests/helpers/procs.ts";
import { newestMtime } from "./bench/procs.ts";
import { backlog } from "./bench/backlog.ts";
import { connections } from "./bench/connections.ts";
import { download } from "./bench/download.ts";
import { e2eHttp } from "./bench/e2e_http.ts";
import { e2eCoap, modbusJitter } from "./bench/devices.ts";
import { e2eMqtt } from "./bench/e2e_mqtt.ts";
import { gateway } from "./bench/gateway.ts";
import type { BenchContext } from "./bench/harness.ts";
import { hubPg } from "./bench/hub_pg.ts";
import { idle } from "./bench/idle.ts";
import { runtimes } from "./bench/runtimes.ts";
import { peers } from "./bench/peers.ts";

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    runner: { type: "string" },
    runs: { type: "string" },
    only: { type: "string" },
    load: { type: "string", default: "bun" },
    profile: { type: "boolean", default: false },
  },
});

/** Peer figures from issue 8 that this machine's run does not measure (Node-RED). */
const NODE_RED_MSGS_PER_S = 12_000;

/** The compiled binary, built when missing or older than the source. */
function binaryRunner(): Runner {
  const binary = join(ROOT, "dist/outpost-linux-x64");
  const stale = !existsSync(binary) ||
    statSync(binary).mtimeMs <
      Math.max(newestMtime(join(ROOT, "src")), newestMtime(join(ROOT, "migrations")));
  if (stale) {
    console.log(`== building ${binary} (${existsSync(binary) ? "older than src/" : "missing"})`);
    const built = spawnSync("npm", ["run", "build", "--", "--target", "linux-x64"], {
      cwd: ROOT,
      stdio: "inherit",
    });
    if (built.status !== 0) throw new Error(`npm run build failed (exit ${built.status})`);
  }
  return binary;
}

/**
 * A runner that starts outpost from source under `bun --cpu-prof` (each process writes its
 * profile when it exits on SIGTERM): a small executable script, since a runner is a command.
 */
function profilingRunner(): Runner {
  const dir = join(ROOT, "bench-results/profiles", new Date().toISOString().replace(/[:.]/g, "-"));
  mkdirSync(dir, { recursive: true });
  const script = join(dir, "outpost-profiled.sh");
  writeFileSync(
    script,
    `#!/bin/sh\nexec ${join(ROOT, "node_modules/.bin/bun")} --cpu-prof --cpu-prof-dir=${dir} ${
      join(ROOT, "src/main.ts")
    } "$@"\n`,
  );
  chmodSync(script, 0o755);
  console.log(`== CPU profiles go to ${dir}`);
  return script;
}

const quick = values.quick!;
if (values.profile && values.runner) throw new Error("--profile runs from source under Bun: drop --runner");
const runner: Runner = values.profile ? profilingRunner() : values.runner ?? binaryRunner();
if (values.load !== "bun" && values.load !== "deno") {
  throw new Error(`--load must be bun or deno, not "${values.load}"`);
}
const ctx: BenchContext = {
  runner,
  quick,
  runs: Number(values.runs ?? (quick ? 1 : 3)),
  load: values.load,
  summary: {},
  log: (line) => console.log(line),
};
const only = values.only ? new Set(values.only.split(",")) : undefined;
const summary = ctx.summary;
Object.assign(summary, {
  runner: runner.replace(ROOT + "/", ""),
  runs: ctx.runs,
  quick,
  load: ctx.load,
  cpus: navigator.hardwareConcurrency,
  date: new Date().toISOString(),
});

/** The rules engine alone: compiled closures against json-logic-js as a baseline interpreter. */
async function rules(): Promise<void> {
  const mod = await import("./bench-rules.ts");
  const r = await mod.benchRules({ messages: quick ? 200_000 : 1_000_000, runs: ctx.runs });
  Object.assign(summary, {
    rules_compiled_msgs_per_s: r.compiled_msgs_per_s,
    rules_baseline_msgs_per_s: r.baseline_msgs_per_s,
    rules_ratio: r.ratio,
    rules_filter5_msgs_per_s: r.filter5_msgs_per_s,
  });
}

const scenarios: [string, () => Promise<void>][] = [
  ["idle", () => idle(ctx)],
  ["e2e-mqtt", () => e2eMqtt(ctx)],
  ["peers", () => peers(ctx)],
  ["e2e-http", () => e2eHttp(ctx)],
  ["e2e-coap", () => e2eCoap(ctx)],
  ["modbus-jitter", () => modbusJitter(ctx)],
  ["backlog", () => backlog(ctx)],
  ["connections", () => connections(ctx)],
  ["gateway", () => gateway(ctx)],
  ["rules", rules],
  ["hub-pg", () => hubPg(ctx)],
  ["runtimes", () => runtimes(ctx)],
  ["download", () => download(ctx)],
];
if (only) {
  const known = new Set(scenarios.map(([name]) => name));
  for (const name of only) if (!known.has(name)) throw new Error(`Unknown scenario "${name}"`);
}

const started = performance.now();
for (const [name, fn] of scenarios) {
  if (only && !only.has(name)) continue;
  console.log(`== ${name}`);
  const t0 = performance.now();
  await fn();
  console.log(`   (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
}
summary.bench_seconds = Math.round((performance.now() - started) / 1000);

/** Ratios to the peers, and the targets with whether this run met them. */
const n = (key: string) => typeof summary[key] === "number" ? summary[key] as number : undefined;
const ratio = (a?: number, b?: number) => a !== undefined && b ? Number((a / b).toFixed(2)) : undefined;
const e2e = n("e2e_mqtt_msgs_per_s");
summary.e2e_mqtt_vs_bridge = ratio(e2e, n("bridge_msgs_per_s"));
summary.e2e_mqtt_vs_raw_qos1 = ratio(e2e, n("raw_mqtt_qos1_msgs_per_s"));
summary.e2e_mqtt_vs_node_red = ratio(e2e, e2e === undefined ? undefined : NODE_RED_MSGS_PER_S);
const targets: Record<string, { value: number; target: string; met: boolean }> = {};
const target = (name: string, value: number | undefined, op: ">=" | "<=", limit: number) => {
  if (value === undefined) return;
  targets[name] = { value, target: `${op} ${limit}`, met: op === ">=" ? value >= limit : value <= limit };
};
// Issue 17's targets (half the CPU per message): CPU per message, against the peers, e2e-http.
target("e2e_mqtt_cpu_s_per_100k", n("e2e_mqtt_cpu_s_per_100k"), "<=", 4.5);
target("e2e_mqtt_vs_bridge", summary.e2e_mqtt_vs_bridge as number | undefined, ">=", 1.5);
target("e2e_mqtt_vs_raw_qos1", summary.e2e_mqtt_vs_raw_qos1 as number | undefined, ">=", 1.0);
target("e2e_mqtt_vs_node_red", summary.e2e_mqtt_vs_node_red as number | undefined, ">=", 2.5);
target("e2e_http_msgs_per_s", n("e2e_http_msgs_per_s"), ">=", 60_000);
target("backlog_drain_msgs_per_s", n("backlog_drain_msgs_per_s"), ">=", 100_000);
target("backlog_total_s", n("backlog_total_s"), "<=", 12);
target("reconnect_ms", n("reconnect_ms"), "<=", 1_000);
target("hub_cpu_s_per_100k", n("hub_cpu_s_per_100k"), "<=", 1.0);
target("e2e_mqtt_peak_rss_mb", n("e2e_mqtt_peak_rss_mb"), "<=", 120);
// Idle RSS: the larger of the 5 s median and where the last start settled after 60 s.
const idleRss = [n("idle_rss_5s_mb"), n("idle_rss_60s_mb")].filter((x) => x !== undefined) as number[];
target("idle_rss_mb", idleRss.length ? Math.max(...idleRss) : undefined, "<=", 40);
target("startup_ms", n("startup_ms"), "<=", 150);
// Two PostgreSQL replicas together store at least as many records per second as one libSQL hub.
const pgRatio = ratio(n("hub_pg_records_per_s"), n("hub_libsql_records_per_s"));
summary.hub_pg_vs_libsql = pgRatio;
target("hub_pg_vs_libsql", pgRatio, ">=", 1.0);
// The compressed release artifact (MB = 10^6 bytes): scripts/bench/download.ts.
target("artifact_compressed_mb", n("artifact_compressed_mb"), "<=", 40);
for (const key of Object.keys(summary)) if (summary[key] === undefined) delete summary[key];
summary.targets = targets;
for (const [name, t] of Object.entries(targets)) {
  console.log(`target ${name}: ${t.value} (${t.target}) ${t.met ? "met" : "MISSED"}`);
}

mkdirSync(join(ROOT, "bench-results"), { recursive: true });
writeFileSync(join(ROOT, "bench-results/latest.json"), JSON.stringify(summary, null, 2) + "\n");
console.log(JSON.stringify(summary));
