/**
 * `gateway`: one ThingsBoard gateway connection carrying 100 child devices (scripts/bench/
 * gateway_load.ts, QoS 1, one sample per publish on `v1/gateway/telemetry`) → outpost's embedded
 * broker → the 5-rule document → outbox (committed before each PUBACK) → gRPC → `outpost hub`.
 * Figures: messages per second PUBACKed to the gateway, and committed at the hub (first publish →
 * last hub commit), publish → hub p99.
 */
import { median } from "./procs.ts";
import { BENCH_RULES, type BenchContext, hubFigures, startEdge, startTool, waitEmpty } from "./harness.ts";

export const GATEWAY_CHILDREN = 100;

interface GatewayRun {
  ackedMsgsPerS: number;
  hubMsgsPerS: number;
  p99Ms: number;
}

async function gatewayOnce(ctx: BenchContext, messages: number): Promise<GatewayRun> {
  const edge = await startEdge({ runner: ctx.runner, rules: BENCH_RULES });
  try {
    // The broker runs with auth "none": the username names the gateway device.
    const load = startTool(ctx, "gateway_load.ts", {
      url: `mqtt://127.0.0.1:${edge.mqttPort}`,
      username: "gw-bench",
      children: GATEWAY_CHILDREN,
      messages,
      window: 100,
    });
    const report = await load.waitForEvent("done", 600_000) as unknown as {
      acked: number;
      errors: number;
      firstError?: string;
      firstPublishAt: number;
      lastAckAt: number;
    };
    if (report.errors > 0) throw new Error(`${report.errors} publishes failed: ${report.firstError}`);
    await waitEmpty(edge, 600_000);
    const hub = hubFigures(edge.hub!);
    if (hub.count !== report.acked) {
      throw new Error(`the hub holds ${hub.count} telemetry records, ${report.acked} were acknowledged`);
    }
    return {
      ackedMsgsPerS: report.acked / ((report.lastAckAt - report.firstPublishAt) / 1000),
      hubMsgsPerS: hub.count / ((hub.lastAt - report.firstPublishAt) / 1000),
      p99Ms: hub.p99Ms,
    };
  } finally {
    await edge.stop();
  }
}

export async function gateway(ctx: BenchContext): Promise<void> {
  const messages = ctx.quick ? 50_000 : 200_000;
  const runs: GatewayRun[] = [];
  for (let run = 1; run <= ctx.runs; run++) {
    const r = await gatewayOnce(ctx, messages);
    runs.push(r);
    ctx.log(
      `gateway run ${run}: ${messages} msgs for ${GATEWAY_CHILDREN} children on one connection, ` +
        `${Math.round(r.ackedMsgsPerS)} msg/s PUBACKed, ${Math.round(r.hubMsgsPerS)} msg/s at the hub, ` +
        `publish→hub p99 ${r.p99Ms} ms`,
    );
  }
  const s = ctx.summary;
  s.gateway_msgs_per_s = Math.round(median(runs.map((r) => r.ackedMsgsPerS)));
  s.gateway_hub_msgs_per_s = Math.round(median(runs.map((r) => r.hubMsgsPerS)));
  s.gateway_p99_ms = median(runs.map((r) => r.p99Ms));
  ctx.log(
    `gateway: median ${s.gateway_msgs_per_s} msg/s PUBACKed, ${s.gateway_hub_msgs_per_s} msg/s at the hub ` +
      `(${GATEWAY_CHILDREN} children, one connection)`,
  );
}
