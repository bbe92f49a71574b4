/**
 * `e2e-http`: HTTP ingest (100-message JSON arrays, 8 requests in flight, a separate process) →
 * the 5-rule document → outbox (committed before each 202) → gRPC → `outpost hub`. Figures:
 * messages per second committed at the hub (first request → last hub commit), the ingest rate
 * (202s), latency send → hub commit, the agent's peak RSS and CPU seconds per 100,000 messages.
 */
import { median } from "./procs.ts";
import {
  BENCH_RULES,
  type BenchContext,
  hubFigures,
  startEdge,
  startTool,
  TEST_TOKEN,
  waitEmpty,
} from "./harness.ts";

interface HttpRun {
  msgsPerS: number;
  ingestMsgsPerS: number;
  p99Ms: number;
  rssStartMb: number;
  rssEndMb: number;
  peakRssMb: number;
  cpuPer100k: number;
}

async function once(ctx: BenchContext, messages: number): Promise<HttpRun> {
  const edge = await startEdge({ runner: ctx.runner, mqtt: false, rules: BENCH_RULES });
  try {
    const rssStart = edge.rss().rss;
    const cpu0 = edge.cpu();
    const started = Date.now();
    const load = startTool(ctx, "http_load.ts", [
      `--url=http://127.0.0.1:${edge.apiPort}`,
      `--token=${TEST_TOKEN}`,
      `--messages=${messages}`,
      "--batch=100",
      "--devices=8",
      "--concurrency=8",
    ]);
    const done = await load.waitForEvent("load.done", 600_000);
    if (Number(done.failed) > 0) throw new Error(`${done.failed} messages were refused`);
    await waitEmpty(edge, 600_000);
    const cpu = edge.cpu() - cpu0;
    const { rss, peak } = edge.rss();
    const hub = hubFigures(edge.hub!);
    if (hub.count !== messages) throw new Error(`the hub holds ${hub.count} of ${messages} messages`);
    return {
      msgsPerS: hub.count / ((hub.lastAt - started) / 1000),
      ingestMsgsPerS: Number(done.msgsPerSecond),
      p99Ms: hub.p99Ms,
      rssStartMb: rssStart,
      rssEndMb: rss,
      peakRssMb: peak,
      cpuPer100k: cpu / messages * 100_000,
    };
  } finally {
    await edge.stop();
  }
}

export async function e2eHttp(ctx: BenchContext): Promise<void> {
  const messages = ctx.quick ? 50_000 : 300_000;
  const results: HttpRun[] = [];
  for (let run = 1; run <= ctx.runs; run++) {
    const r = await once(ctx, messages);
    results.push(r);
    ctx.log(
      `e2e-http run ${run}: ${messages} msgs, ${Math.round(r.msgsPerS)} msg/s at the hub ` +
        `(ingest ${Math.round(r.ingestMsgsPerS)} msg/s), send→hub p99 ${r.p99Ms} ms, agent RSS ` +
        `${r.rssStartMb.toFixed(0)} → ${r.rssEndMb.toFixed(0)} MB (peak ${r.peakRssMb.toFixed(0)}), ` +
        `${r.cpuPer100k.toFixed(2)} CPU s per 100k`,
    );
  }
  const m = (f: (r: HttpRun) => number) => median(results.map(f));
  const s = ctx.summary;
  s.e2e_http_msgs_per_s = Math.round(m((r) => r.msgsPerS));
  s.e2e_http_ingest_msgs_per_s = Math.round(m((r) => r.ingestMsgsPerS));
  s.e2e_http_p99_ms = m((r) => r.p99Ms);
  s.e2e_http_peak_rss_mb = Math.round(Math.max(...results.map((r) => r.peakRssMb)));
  s.e2e_http_rss_start_mb = Math.round(m((r) => r.rssStartMb));
  s.e2e_http_rss_end_mb = Math.round(m((r) => r.rssEndMb));
  s.e2e_http_cpu_s_per_100k = Number(m((r) => r.cpuPer100k).toFixed(2));
  s.peak_rss_mb = Math.max(Number(s.peak_rss_mb ?? 0), s.e2e_http_peak_rss_mb as number);
  ctx.log(
    `e2e-http: median ${s.e2e_http_msgs_per_s} msg/s at the hub, peak RSS ${s.e2e_http_peak_rss_mb} MB`,
  );
}
