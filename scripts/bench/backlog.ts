/**
 * `backlog`: the hub is down while devices send 1,000,000 messages (quick: 200,000; HTTP ingest,
 * 100-message arrays, through the 5-rule document); then the hub starts while a fleet of MQTT
 * devices keeps sending (100 devices × 10 msg/s). Figures: how long from the hub's start until the
 * outbox is empty again (at most what the ongoing traffic keeps in flight), reconnect included,
 * and the messages per second the hub committed meanwhile, with the agent's RSS before, during and
 * after and the CPU both spent per 100,000 records.
 *
 * Then the reconnect alone: an edge connected to its hub sees the hub stopped for a few seconds
 * (quick: 2, 5, 10 s; else 2, 5, 10, 20, 40 s) and started again on the same port, and the
 * figure is the time from the hub's `hub.started` line to the agent's `hub.connected` line (both
 * processes log with the same clock). The backlog runs give one such figure each too.
 */
import { cpuSeconds, median } from "./procs.ts";
import {
  BENCH_RULES,
  type BenchContext,
  EDGE,
  type Edge,
  type Proc,
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
  /** From starting the hub process to the outbox back at its live level (reconnect included). */
  drainSeconds: number;
  drainMsgsPerS: number;
  reconnect: Reconnect;
  /** CPU seconds per 100,000 records drained: the agent's and the hub's (its start-up included). */
  agentCpuPer100k: number;
  hubCpuPer100k: number;
  /** The hub's CPU seconds per 100,000 records stored, from its readiness to the end of the drain. */
  hubDrainCpuPer100k: number;
  rssStartMb: number;
  rssFullMb: number;
  rssEndMb: number;
  peakMb: number;
}

async function hubCount(edge: Edge): Promise<number> {
  const body = await (await edge.hub!.api("/api/v1/edges")).json();
  return body.edges.find((e: { id: string }) => e.id === EDGE.id)?.records ?? 0;
}

/** The `ts` of the first `event` line of `proc` at or after line `from`, waiting for it. */
async function eventAt(proc: Proc, event: string, from: number, timeoutMs: number): Promise<number> {
  let seen = from;
  const found = await waitFor(
    () => {
      const lines = proc.lines;
      for (; seen < lines.length; seen++) {
        const line = lines[seen];
        if (line.startsWith("{") && line.includes(`"event":"${event}"`)) {
          return Date.parse(JSON.parse(line).ts);
        }
      }
      return 0;
    },
    timeoutMs,
    `"${event}" from pid ${proc.pid}`,
  );
  return found;
}

interface Reconnect {
  /** The hub's `hub.started` → the agent's `hub.connected` (the hub's headers arrived), ms. */
  ms: number;
  /** The hub's `hub.started` → its `edge.connected` (the edge's call arrived), ms: the dial. */
  dialMs: number;
}

/** Starts the edge's hub again; the time from its readiness to the agent connected again. */
async function restartHub(edge: Edge, timeoutMs = 60_000): Promise<Reconnect> {
  const from = edge.agent.proc.lines.length;
  const hub = await edge.startHub();
  const ready = await eventAt(hub.proc, "hub.started", 0, 1_000);
  const connected = await eventAt(edge.agent.proc, "hub.connected", from, timeoutMs);
  const arrived = await eventAt(hub.proc, "edge.connected", 0, 1_000);
  return { ms: connected - ready, dialMs: arrived - ready };
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
    const reconnect = await restartHub(edge);
    const hub = edge.hub!;
    const hubCpu0 = cpuSeconds(hub.proc.pid);
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
      reconnect,
      agentCpuPer100k: agentCpu / delivered * 100_000,
      hubCpuPer100k: hubCpu / delivered * 100_000,
      hubDrainCpuPer100k: (hubCpu - hubCpu0) / delivered * 100_000,
      rssStartMb: rssStart,
      rssFullMb: rssFull,
      rssEndMb: rss,
      peakMb: peak,
    };
  } finally {
    await edge.stop();
  }
}

/** Hub outages of `downMs` each against one connected edge: hub ready → edge connected (ms). */
async function reconnects(ctx: BenchContext, downMs: readonly number[]): Promise<Reconnect[]> {
  const edge = await startEdge({ runner: ctx.runner, mqtt: false });
  try {
    await eventAt(edge.agent.proc, "hub.connected", 0, 30_000);
    const out: Reconnect[] = [];
    for (const down of downMs) {
      await edge.stopHub();
      await new Promise((r) => setTimeout(r, down));
      const r = await restartHub(edge);
      ctx.log(
        `reconnect after a ${down / 1000} s outage: hub.started → hub.connected ${r.ms} ms ` +
          `(the edge's call at the hub after ${r.dialMs} ms)`,
      );
      out.push(r);
      // The link stays up 11 s: one lost sooner continues the outage it ended (STABLE_MS in
      // src/uplink/mod.ts), and each outage here is to be measured as a new one.
      await new Promise((r) => setTimeout(r, 11_000));
    }
    return out;
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
        `hub start → drained in ${r.drainSeconds.toFixed(2)} s (reconnected ${r.reconnect.ms} ms after ` +
        `hub.started, its call at the hub after ${r.reconnect.dialMs} ms) with ${LIVE.devices * LIVE.rate} ` +
        `msg/s arriving = ` +
        `${Math.round(r.drainMsgsPerS)} msg/s at the hub (CPU s per 100k: agent ${
          r.agentCpuPer100k.toFixed(2)
        }, ` +
        `hub ${r.hubCpuPer100k.toFixed(2)}, ${
          r.hubDrainCpuPer100k.toFixed(2)
        } without its start-up); agent RSS ${r.rssStartMb.toFixed(0)} → ` +
        `${r.rssFullMb.toFixed(0)} (full) → ${r.rssEndMb.toFixed(0)} MB (drained), peak ${
          r.peakMb.toFixed(0)
        } MB`,
    );
  }
  const outages = await reconnects(
    ctx,
    ctx.quick ? [2_000, 5_000, 10_000] : [2_000, 5_000, 10_000, 20_000, 40_000],
  );
  const all = [...results.map((r) => r.reconnect), ...outages];
  const reconnectMs = all.map((r) => r.ms);
  const s = ctx.summary;
  s.backlog_messages = results[0].backlog;
  s.backlog_total_s = Number(median(results.map((r) => r.drainSeconds)).toFixed(2));
  s.reconnect_ms = Math.round(median(reconnectMs));
  s.reconnect_max_ms = Math.max(...reconnectMs);
  s.reconnect_dial_ms = Math.round(median(all.map((r) => r.dialMs)));
  s.hub_cpu_s_per_100k = Number(median(results.map((r) => r.hubDrainCpuPer100k)).toFixed(2));
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
    `backlog: median ${s.backlog_drain_msgs_per_s} msg/s drained (hub start → live level ${s.backlog_total_s} s), ` +
      `reconnect median ${s.reconnect_ms} ms (max ${s.reconnect_max_ms} ms of ${reconnectMs.length}), ` +
      `hub CPU ${s.hub_cpu_s_per_100k} s per 100k stored, peak RSS ${s.backlog_peak_rss_mb} MB`,
  );
}
