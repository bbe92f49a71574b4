/**
 * `e2e-mqtt`: a device fleet (publisher processes, mqtt.js, QoS 1, ~150-byte JSON) → outpost's
 * embedded broker → the 5-rule document → outbox (committed before each PUBACK) → gRPC →
 * `outpost hub`. Figures: telemetry messages per second committed at the hub (first publish →
 * last hub commit), latency publish → hub commit (p50, p99, from the payload's `t` and the hub's
 * `received_at`), the agent's peak RSS and CPU seconds per 100,000 messages.
 */
import { cpuSeconds, median } from "./procs.ts";
import {
  agentCounters,
  BENCH_RULES,
  type BenchContext,
  hubFigures,
  startEdge,
  startFleet,
  waitEmpty,
} from "./harness.ts";

/** The fleet both outpost and its peers get: the same devices, processes and window. */
export const FLEET = { devices: 100, processes: 2, window: 10 };

export interface E2eMqttRun {
  msgsPerS: number;
  ingestMsgsPerS: number;
  p50Ms: number;
  p99Ms: number;
  pubackP99Ms: number;
  peakRssMb: number;
  rssStartMb: number;
  rssEndMb: number;
  cpuPer100k: number;
  hubCpuPer100k: number;
  /** Records per outbox commit (group commit at work). */
  recordsPerCommit: number;
}

export async function e2eMqttOnce(ctx: BenchContext, messages: number): Promise<E2eMqttRun> {
  const edge = await startEdge({ runner: ctx.runner, rules: BENCH_RULES });
  try {
    const rssStart = edge.rss().rss;
    const cpu0 = edge.cpu();
    const fleet = await startFleet(ctx, {
      url: `mqtt://127.0.0.1:${edge.mqttPort}`,
      ...FLEET,
      perDevice: Math.ceil(messages / FLEET.devices),
    });
    const pub = await fleet.done(600_000);
    if (pub.errors > 0) throw new Error(`${pub.errors} publishes failed: ${pub.firstError}`);
    await waitEmpty(edge, 600_000);
    const cpu = edge.cpu() - cpu0;
    const { rss, peak } = edge.rss();
    const hubCpu = cpuSeconds(edge.hub!.proc.pid);
    const counters = await agentCounters(edge, [
      "outpost_outbox_stored_total",
      "outpost_outbox_commits_total",
    ]);
    const hub = hubFigures(edge.hub!);
    if (hub.count !== pub.acked) {
      throw new Error(`the hub holds ${hub.count} telemetry records, ${pub.acked} were acknowledged`);
    }
    const seconds = (hub.lastAt - pub.firstPublishAt) / 1000;
    return {
      msgsPerS: hub.count / seconds,
      ingestMsgsPerS: pub.acked / ((pub.lastAckAt - pub.firstPublishAt) / 1000),
      p50Ms: hub.p50Ms,
      p99Ms: hub.p99Ms,
      pubackP99Ms: pub.pubackP99Ms,
      peakRssMb: peak,
      rssStartMb: rssStart,
      rssEndMb: rss,
      cpuPer100k: cpu / pub.acked * 100_000,
      hubCpuPer100k: hubCpu / pub.acked * 100_000,
      recordsPerCommit: counters.outpost_outbox_stored_total /
        Math.max(1, counters.outpost_outbox_commits_total),
    };
  } finally {
    await edge.stop();
  }
}

export async function e2eMqtt(ctx: BenchContext): Promise<void> {
  const messages = ctx.quick ? 100_000 : 300_000;
  const results: E2eMqttRun[] = [];
  for (let run = 1; run <= ctx.runs; run++) {
    const r = await e2eMqttOnce(ctx, messages);
    results.push(r);
    ctx.log(
      `e2e-mqtt run ${run}: ${messages} msgs from ${FLEET.devices} devices, ${
        Math.round(r.msgsPerS)
      } msg/s at the hub ` +
        `(PUBACKed ${
          Math.round(r.ingestMsgsPerS)
        } msg/s), publish→hub p50 ${r.p50Ms} ms p99 ${r.p99Ms} ms, ` +
        `agent RSS ${r.rssStartMb.toFixed(0)} → ${r.rssEndMb.toFixed(0)} MB (peak ${
          r.peakRssMb.toFixed(0)
        }), ` +
        `CPU s per 100k: agent ${r.cpuPer100k.toFixed(2)}, hub ${r.hubCpuPer100k.toFixed(2)}, ` +
        `${r.recordsPerCommit.toFixed(1)} records per outbox commit`,
    );
  }
  const m = (f: (r: E2eMqttRun) => number) => median(results.map(f));
  const s = ctx.summary;
  s.e2e_mqtt_msgs_per_s = Math.round(m((r) => r.msgsPerS));
  s.e2e_mqtt_ingest_msgs_per_s = Math.round(m((r) => r.ingestMsgsPerS));
  s.e2e_mqtt_p50_ms = m((r) => r.p50Ms);
  s.e2e_mqtt_p99_ms = m((r) => r.p99Ms);
  s.e2e_mqtt_puback_p99_ms = m((r) => r.pubackP99Ms);
  s.e2e_mqtt_peak_rss_mb = Math.round(Math.max(...results.map((r) => r.peakRssMb)));
  s.e2e_mqtt_rss_start_mb = Math.round(m((r) => r.rssStartMb));
  s.e2e_mqtt_rss_end_mb = Math.round(m((r) => r.rssEndMb));
  s.e2e_mqtt_cpu_s_per_100k = Number(m((r) => r.cpuPer100k).toFixed(2));
  s.e2e_mqtt_hub_cpu_s_per_100k = Number(m((r) => r.hubCpuPer100k).toFixed(2));
  s.e2e_mqtt_records_per_commit = Number(m((r) => r.recordsPerCommit).toFixed(1));
  s.peak_rss_mb = Math.max(Number(s.peak_rss_mb ?? 0), s.e2e_mqtt_peak_rss_mb as number);
  ctx.log(
    `e2e-mqtt: median ${s.e2e_mqtt_msgs_per_s} msg/s at the hub, p99 ${s.e2e_mqtt_p99_ms} ms, ` +
      `peak RSS ${s.e2e_mqtt_peak_rss_mb} MB, ${s.e2e_mqtt_cpu_s_per_100k} CPU s per 100k`,
  );
}
