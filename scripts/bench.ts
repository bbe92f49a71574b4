/**
 * Benchmarks, run as separate processes on loopback (hub, agent, load generators), with medians
 * of several runs. Prints each figure as it is measured and, last, one JSON summary line, also
 * written to bench-results/latest.json.
 *
 *   npm run bench                      every scenario, 3 runs each
 *   npm run bench -- --quick           one short pass of each
 *   npm run bench -- --runner bun      run the agent and hub from source under Bun
 *   npm run bench -- --runner dist/outpost-linux-x64   … or from a compiled binary
 *   npm run bench -- --only e2e-http
 *
 * The default runner is the compiled x64 binary when dist/outpost-linux-x64 exists, else Deno.
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { cpuSeconds, median, rssMb } from "./bench/procs.ts";
import {
  freePort,
  removeDir,
  ROOT,
  type Runner,
  startAgent,
  startHub,
  tempDir,
  TEST_TOKEN,
  waitFor,
  writeAgentConfig,
} from "../tests/helpers/procs.ts";

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    runner: { type: "string" },
    runs: { type: "string" },
    only: { type: "string" },
  },
});

const quick = values.quick!;
const runs = Number(values.runs ?? (quick ? 1 : 3));
const binary = join(ROOT, "dist/outpost-linux-x64");
const runner: Runner = values.runner ?? (existsSync(binary) ? binary : "deno");
const only = values.only ? new Set(values.only.split(",")) : undefined;
const summary: Record<string, unknown> = { runner, runs, quick, date: new Date().toISOString() };

function log(line: string) {
  console.log(line);
}

const DENO = join(ROOT, "node_modules/.bin/deno");

async function runLoad(args: string[]): Promise<{ accepted: number; failed: number; seconds: number }> {
  const out = await new Deno.Command(DENO, {
    args: ["run", "-A", join(ROOT, "scripts/bench/http_load.ts"), ...args],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim().split("\n").pop()!;
  return JSON.parse(text);
}

/** HTTP ingest → outbox → gRPC → hub: messages/s acknowledged by the hub, and the agent's peak RSS. */
async function e2eHttp(): Promise<void> {
  const messages = quick ? 50_000 : 300_000;
  const rates: number[] = [];
  const ingestRates: number[] = [];
  const peaks: number[] = [];
  const cpuPer100k: number[] = [];
  for (let run = 1; run <= runs; run++) {
    const dir = tempDir("outpost-bench-");
    const edge = { id: "bench", routingKey: "rk-bench", secret: "secret-bench-123" };
    const hub = await startHub({ dir: join(dir, "hub"), edges: [edge], runner });
    const apiPort = await freePort();
    const config = writeAgentConfig(join(dir, "agent"), {
      edgeId: edge.id,
      dataDir: "data",
      api: { listen: `127.0.0.1:${apiPort}`, token: TEST_TOKEN },
      mqtt: { broker: false },
      hub: { url: `grpc://127.0.0.1:${hub.grpcPort}`, routingKey: edge.routingKey, secret: edge.secret },
    });
    const agent = await startAgent(config, { runner });
    try {
      const startRss = rssMb(agent.proc.pid).rss;
      const cpu0 = cpuSeconds(agent.proc.pid);
      const t0 = performance.now();
      const load = await runLoad([
        `--url=http://127.0.0.1:${apiPort}`,
        `--token=${TEST_TOKEN}`,
        `--messages=${messages}`,
        "--batch=100",
        "--devices=8",
        "--concurrency=8",
      ]);
      if (load.failed > 0) throw new Error(`${load.failed} messages were refused`);
      await waitFor(
        async () => {
          const body = await (await hub.api("/api/v1/edges")).json();
          return body.edges.find((e: { id: string }) => e.id === edge.id)?.records >= messages;
        },
        600_000,
        "the hub to hold every message",
      );
      const seconds = (performance.now() - t0) / 1000;
      const cpu = cpuSeconds(agent.proc.pid) - cpu0;
      const { rss, peak } = rssMb(agent.proc.pid);
      rates.push(messages / seconds);
      ingestRates.push(load.accepted / load.seconds);
      peaks.push(peak);
      cpuPer100k.push(cpu / messages * 100_000);
      log(
        `e2e-http run ${run}: ${messages} msgs in ${seconds.toFixed(2)} s = ${
          Math.round(messages / seconds)
        } msg/s at the hub ` +
          `(ingest ${Math.round(load.accepted / load.seconds)} msg/s), agent RSS ${startRss.toFixed(0)} → ${
            rss.toFixed(0)
          } MB, ` +
          `peak ${peak.toFixed(0)} MB, ${(cpu / messages * 100_000).toFixed(2)} CPU s per 100k`,
      );
    } finally {
      await agent.stop("SIGTERM");
      await hub.stop();
      removeDir(dir);
    }
  }
  summary.e2e_http_msgs_per_s = Math.round(median(rates));
  summary.e2e_http_ingest_msgs_per_s = Math.round(median(ingestRates));
  summary.e2e_http_peak_rss_mb = Math.round(median(peaks));
  summary.e2e_http_cpu_s_per_100k = Number(median(cpuPer100k).toFixed(2));
  summary.peak_rss_mb = Math.max(Number(summary.peak_rss_mb ?? 0), Math.round(Math.max(...peaks)));
  log(
    `e2e-http: median ${summary.e2e_http_msgs_per_s} msg/s at the hub, peak RSS ${summary.e2e_http_peak_rss_mb} MB`,
  );
}

/** The rules engine: compiled closures against json-logic-js as a baseline interpreter. */
async function rules(): Promise<void> {
  const path = join(ROOT, "scripts/bench-rules.ts");
  if (!existsSync(path)) return;
  const mod = await import("./bench-rules.ts");
  const r = await mod.benchRules({ messages: quick ? 200_000 : 1_000_000, runs });
  Object.assign(summary, {
    rules_compiled_msgs_per_s: r.compiled_msgs_per_s,
    rules_baseline_msgs_per_s: r.baseline_msgs_per_s,
    rules_ratio: r.ratio,
    rules_filter5_msgs_per_s: r.filter5_msgs_per_s,
  });
}

const scenarios: [string, () => Promise<void>][] = [
  ["e2e-http", e2eHttp],
  ["rules", rules],
];

for (const [name, fn] of scenarios) {
  if (only && !only.has(name)) continue;
  log(`== ${name}`);
  await fn();
}

mkdirSync(join(ROOT, "bench-results"), { recursive: true });
writeFileSync(join(ROOT, "bench-results/latest.json"), JSON.stringify(summary, null, 2) + "\n");
console.log(JSON.stringify(summary));
