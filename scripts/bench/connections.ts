/**
 * `connections`: 1,000 devices connected to the embedded broker (two publisher processes), each
 * sending one message per second (QoS 1, ~150 bytes) through the 5-rule document to the hub, for
 * 30 s (quick: 15 s). Figures: the agent's RSS before the devices connect, once they are
 * connected, at the end (the summary's `connections_rss_mb`) and its peak; whether the hub got
 * every acknowledged message, and the p99 latency publish → hub commit.
 */
import { median } from "./procs.ts";
import { BENCH_RULES, type BenchContext, hubFigures, startEdge, startFleet, waitEmpty } from "./harness.ts";

const DEVICES = 1000;

interface ConnectionsRun {
  rssStartMb: number;
  rssConnectedMb: number;
  rssEndMb: number;
  peakMb: number;
  acked: number;
  p99Ms: number;
  cpuPercent: number;
}

async function once(ctx: BenchContext, seconds: number): Promise<ConnectionsRun> {
  const edge = await startEdge({ runner: ctx.runner, rules: BENCH_RULES });
  try {
    const rssStart = edge.rss().rss;
    const fleet = await startFleet(ctx, {
      url: `mqtt://127.0.0.1:${edge.mqttPort}`,
      devices: DEVICES,
      processes: 2,
      rate: 1,
      seconds,
    });
    const rssConnected = edge.rss().rss;
    const cpu0 = edge.cpu();
    const t0 = performance.now();
    const pub = await fleet.done(seconds * 1000 + 120_000);
    const cpu = edge.cpu() - cpu0;
    const wall = (performance.now() - t0) / 1000;
    const { rss: rssEnd } = edge.rss();
    if (pub.errors > 0) throw new Error(`${pub.errors} publishes failed: ${pub.firstError}`);
    await waitEmpty(edge, 60_000);
    const hub = hubFigures(edge.hub!);
    if (hub.count !== pub.acked) {
      throw new Error(`the hub holds ${hub.count} telemetry records, ${pub.acked} were acknowledged`);
    }
    return {
      rssStartMb: rssStart,
      rssConnectedMb: rssConnected,
      rssEndMb: rssEnd,
      peakMb: edge.rss().peak,
      acked: pub.acked,
      p99Ms: hub.p99Ms,
      cpuPercent: cpu / wall * 100,
    };
  } finally {
    await edge.stop();
  }
}

export async function connections(ctx: BenchContext): Promise<void> {
  const seconds = ctx.quick ? 15 : 30;
  const results: ConnectionsRun[] = [];
  for (let run = 1; run <= ctx.runs; run++) {
    const r = await once(ctx, seconds);
    results.push(r);
    ctx.log(
      `connections run ${run}: ${DEVICES} devices × 1 msg/s for ${seconds} s, ${r.acked} msgs all at the hub ` +
        `(p99 ${r.p99Ms} ms), agent CPU ${r.cpuPercent.toFixed(0)}%, RSS ${r.rssStartMb.toFixed(0)} → ` +
        `${r.rssConnectedMb.toFixed(0)} (connected) → ${r.rssEndMb.toFixed(0)} MB (end), peak ${
          r.peakMb.toFixed(0)
        } MB`,
    );
  }
  const s = ctx.summary;
  s.connections_rss_mb = Number(median(results.map((r) => r.rssEndMb)).toFixed(1));
  s.connections_peak_rss_mb = Math.round(Math.max(...results.map((r) => r.peakMb)));
  s.connections_rss_start_mb = Math.round(median(results.map((r) => r.rssStartMb)));
  s.connections_p99_ms = median(results.map((r) => r.p99Ms));
  s.connections_cpu_percent = Math.round(median(results.map((r) => r.cpuPercent)));
  s.peak_rss_mb = Math.max(Number(s.peak_rss_mb ?? 0), s.connections_peak_rss_mb as number);
  ctx.log(
    `connections: RSS ${s.connections_rss_mb} MB with ${DEVICES} devices connected, p99 ${s.connections_p99_ms} ms`,
  );
}
