/**
 * `peers`: what a user would otherwise run, measured with the same device fleet (mqtt_load.ts,
 * FLEET) on the same machine in the same run, so that outpost's figures can be printed as ratios:
 * - `raw`: publishers → mosquitto → one mqtt.js subscriber at QoS 1 (the transport ceiling: no
 *   rules, no disk, no second hop);
 * - `bridge`: publishers → edge mosquitto → bridge (QoS 1, C store-and-forward in memory, what
 *   thin-edge.io relies on) → cloud mosquitto → one mqtt.js subscriber at QoS 1.
 * Figures: messages per second received by the subscriber (first publish → last receipt) and the
 * p99 latency publish → subscriber.
 */
import mqtt from "mqtt";
import { join } from "node:path";
import { FLEET } from "./e2e_mqtt.ts";
import { median, rssMb } from "./procs.ts";
import { type BenchContext, removeDir, startFleet, startMosquitto, startTool, tempDir } from "./harness.ts";

interface PeerRun {
  msgsPerS: number;
  p99Ms: number;
  rssMb: number;
}

async function measure(
  ctx: BenchContext,
  publishTo: string,
  subscribeTo: string,
  messages: number,
  brokerPid: number,
): Promise<PeerRun> {
  const sub = startTool(ctx, "mqtt_sub.ts", {
    url: subscribeTo,
    topic: "devices/+/telemetry",
    expect: messages,
    idleMs: 10_000,
  });
  try {
    await sub.waitForEvent("subscribed", 30_000);
    const fleet = await startFleet(ctx, {
      url: publishTo,
      ...FLEET,
      perDevice: Math.ceil(messages / FLEET.devices),
    });
    const pub = await fleet.done(600_000);
    if (pub.errors > 0) throw new Error(`${pub.errors} publishes failed: ${pub.firstError}`);
    const got = await sub.waitForEvent("done", 600_000);
    const received = Number(got.received);
    if (received !== pub.acked) throw new Error(`the subscriber got ${received} of ${pub.acked} messages`);
    return {
      msgsPerS: received / ((Number(got.lastAt) - pub.firstPublishAt) / 1000),
      p99Ms: Number(got.p99Ms),
      rssMb: rssMb(brokerPid).peak,
    };
  } finally {
    await sub.kill("SIGKILL");
  }
}

async function raw(ctx: BenchContext, messages: number): Promise<PeerRun> {
  const dir = tempDir("outpost-bench-raw-");
  const broker = await startMosquitto(dir);
  try {
    return await measure(ctx, broker.url, broker.url, messages, broker.proc.pid);
  } finally {
    await broker.stop();
    removeDir(dir);
  }
}

async function bridge(ctx: BenchContext, messages: number): Promise<PeerRun> {
  const dir = tempDir("outpost-bench-bridge-");
  const cloud = await startMosquitto(join(dir, "cloud"));
  const edge = await startMosquitto(join(dir, "edge"), [
    "connection cloud",
    `address 127.0.0.1:${cloud.port}`,
    "topic devices/# out 1",
    "cleansession false",
    "clientid bench-edge-bridge",
    "notifications false",
    "try_private true",
  ]);
  try {
    await bridgeUp(edge.url, cloud.url);
    return await measure(ctx, edge.url, cloud.url, messages, edge.proc.pid);
  } finally {
    await edge.stop();
    await cloud.stop();
    removeDir(dir);
  }
}

/** The bridge connects on its own schedule: waits until a probe published on the edge reaches the cloud. */
async function bridgeUp(edgeUrl: string, cloudUrl: string): Promise<void> {
  const cloud = await mqtt.connectAsync(cloudUrl, { clientId: "bench-probe-sub" });
  const edge = await mqtt.connectAsync(edgeUrl, { clientId: "bench-probe-pub" });
  try {
    await cloud.subscribeAsync("devices/probe/ready", { qos: 1 });
    const arrived = new Promise<void>((resolve) => cloud.once("message", () => resolve()));
    const deadline = Date.now() + 30_000;
    let up = false;
    void arrived.then(() => (up = true));
    while (!up) {
      if (Date.now() > deadline) throw new Error("the mosquitto bridge did not connect within 30 s");
      await edge.publishAsync("devices/probe/ready", "probe", { qos: 1 });
      await Promise.race([arrived, new Promise((r) => setTimeout(r, 200))]);
    }
  } finally {
    await edge.endAsync();
    await cloud.endAsync();
  }
}

export async function peers(ctx: BenchContext): Promise<void> {
  const messages = ctx.quick ? 100_000 : 300_000;
  const raws: PeerRun[] = [];
  const bridges: PeerRun[] = [];
  for (let run = 1; run <= ctx.runs; run++) {
    const r = await raw(ctx, messages);
    raws.push(r);
    ctx.log(
      `peers run ${run}: raw mqtt.js → mosquitto → mqtt.js QoS 1: ${
        Math.round(r.msgsPerS)
      } msg/s, p99 ${r.p99Ms} ms`,
    );
    const b = await bridge(ctx, messages);
    bridges.push(b);
    ctx.log(
      `peers run ${run}: mosquitto bridge edge → cloud QoS 1: ${
        Math.round(b.msgsPerS)
      } msg/s, p99 ${b.p99Ms} ms, ` +
        `edge broker peak RSS ${b.rssMb.toFixed(0)} MB`,
    );
  }
  const s = ctx.summary;
  s.raw_mqtt_qos1_msgs_per_s = Math.round(median(raws.map((r) => r.msgsPerS)));
  s.raw_mqtt_qos1_p99_ms = median(raws.map((r) => r.p99Ms));
  s.bridge_msgs_per_s = Math.round(median(bridges.map((r) => r.msgsPerS)));
  s.bridge_p99_ms = median(bridges.map((r) => r.p99Ms));
  ctx.log(
    `peers: raw QoS 1 ${s.raw_mqtt_qos1_msgs_per_s} msg/s, mosquitto bridge ${s.bridge_msgs_per_s} msg/s`,
  );
}
