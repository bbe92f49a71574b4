/**
 * `backlog`: the hub is down while devices send 1,000,000 messages (quick: 200,000; HTTP ingest,
 * 100-message arrays, through the 5-rule document); then the hub starts while a fleet of MQTT
 * devices keeps sending (100 devices × 10 msg/s). Figures: how long until the outbox is empty
 * again (at most what the ongoing traffic keeps in flight) and the messages per second the hub
 * committed meanwhile, with the agent's RSS before, during and after.
 */
import { cpuSeconds, median } from "./procs.ts";
import {
  BENCH_RULES,
  type BenchContext,
  EDGE,
  type Edge,
  startEdge,
  startFleet,
  startTool,
  TEST_TOKEN,
  waitFor,
} from "./harness.ts";

/** New traffic while draining: 100 devices × 10 msg/s. */
const LIVE = { devices: 100, rate: 10 };
/** "Empty": no more than the live traffic keeps in flight (about half a second of it). */
const EMPTY_DEPTH = 500;

interface BacklogRun {
  backlog: number;
  fillMsgsPerS: number;
  drainSeconds: number;
  drainMsgsPerS: number;
  /** CPU seconds per 100,000 records drained: the agent's and the hub's. */
  agentCpuPer100k: number;
  hubCpuPer100k: number;
  rssStartMb: number;
  rssFullMb: number;
  rssEndMb: number;
  peakMb: number;
}

async function hubCount(edge: Edge): Promise<number> {
  const body = await (await edge.hub!.api("/api/v1/edges")).json();
  return body.edges.find((e: { id: string }) => e.id === EDGE.id)?.records ?? 0;
}

async function once(ctx: BenchContext, messages: number): Promise<BacklogRun> {
  const edge = await startEdge({ runner: ctx.runner, hub: false, rules: BENCH_RULES });
  try {
    const rssStart = edge.rss().rss;
    const fill = startTool(ctx, "http_load.ts", [
      `--url=http://127.0.0.1:${edge.apiPort}`,
      `--token=${TEST_TOKEN}`,
      `--messages=${messages}`,
      "--batch=100",
      "--devices=8",
      "--concurrency=8",
    ]);
    const filled = await fill.waitForEvent("load.done", 900_000);
    if (Number(filled.failed) > 0) throw new Error(`${filled.failed} messages were refused while filling`);
    const backlog = await edge.depth();
    const rssFull = edge.rss().rss;

    const live = await startFleet(ctx, {
      url: `mqtt://127.0.0.1:${edge.mqttPort}`,
      devices: LIVE.devices,
      processes: 1,
      rate: LIVE.rate,
      seconds: 3600,
      prefix: "live-",
    });
    await new Promise((r) => setTimeout(r, 1000)); // the live traffic is flowing
    const t0 = performance.now();
    const agentCpu0 = edge.cpu();
    const hub = await edge.startHub();
    await waitFor(async () => (await edge.depth()) <= EMPTY_DEPTH, 900_000, "the backlog to drain");
    const seconds = (performance.now() - t0) / 1000;
    const agentCpu = edge.cpu() - agentCpu0;
    const hubCpu = cpuSeconds(hub.proc.pid);
    const delivered = await hubCount(edge);
    const { rss, peak } = edge.rss();
    for (const p of live.procs) await p.kill("SIGKILL");
    return {
      backlog,
      fillMsgsPerS: Number(filled.msgsPerSecond),
      drainSeconds: seconds,
      drainMsgsPerS: delivered / seconds,
      agentCpuPer100k: agentCpu / delivered * 100_000,
      hubCpuPer100k: hubCpu / delivered * 100_000,
      rssStartMb: rssStart,
      rssFullMb: rssFull,
      rssEndMb: rss,
      peakMb: peak,
    };
  } finally {
    await edge.stop();
  }
}

export async function backlog(ctx: BenchContext): Promise<void> {
  const messages = ctx.quick ? 200_000 : 1_000_000;
  const results: BacklogRun[] = [];
  for (let run = 1; run <= ctx.runs; run++) {
    const r = await once(ctx, messages);
    results.push(r);
    ctx.log(
      `backlog run ${run}: ${r.backlog} records waiting (filled at ${Math.round(r.fillMsgsPerS)} msg/s), ` +
        `drained in ${r.drainSeconds.toFixed(2)} s with ${LIVE.devices * LIVE.rate} msg/s arriving = ` +
        `${Math.round(r.drainMsgsPerS)} msg/s at the hub (CPU s per 100k: agent ${
          r.agentCpuPer100k.toFixed(2)
        }, ` +
        `hub ${r.hubCpuPer100k.toFixed(2)}); agent RSS ${r.rssStartMb.toFixed(0)} → ` +
        `${r.rssFullMb.toFixed(0)} (full) → ${r.rssEndMb.toFixed(0)} MB (drained), peak ${
          r.peakMb.toFixed(0)
        } MB`,
    );
  }
  const s = ctx.summary;
  s.backlog_messages = results[0].backlog;
  s.backlog_drain_seconds = Number(median(results.map((r) => r.drainSeconds)).toFixed(2));
  s.backlog_drain_msgs_per_s = Math.round(median(results.map((r) => r.drainMsgsPerS)));
  s.backlog_agent_cpu_s_per_100k = Number(median(results.map((r) => r.agentCpuPer100k)).toFixed(2));
  s.backlog_hub_cpu_s_per_100k = Number(median(results.map((r) => r.hubCpuPer100k)).toFixed(2));
  s.backlog_fill_msgs_per_s = Math.round(median(results.map((r) => r.fillMsgsPerS)));
  s.backlog_peak_rss_mb = Math.round(Math.max(...results.map((r) => r.peakMb)));
  s.backlog_rss_start_mb = Math.round(median(results.map((r) => r.rssStartMb)));
  s.backlog_rss_full_mb = Math.round(median(results.map((r) => r.rssFullMb)));
  s.backlog_rss_end_mb = Math.round(median(results.map((r) => r.rssEndMb)));
  s.peak_rss_mb = Math.max(Number(s.peak_rss_mb ?? 0), s.backlog_peak_rss_mb as number);
  ctx.log(
    `backlog: median ${s.backlog_drain_msgs_per_s} msg/s drained (${s.backlog_drain_seconds} s), ` +
      `peak RSS ${s.backlog_peak_rss_mb} MB`,
  );
}
