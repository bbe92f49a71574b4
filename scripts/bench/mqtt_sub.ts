/**
 * MQTT subscriber for the peer measurements (a separate process): one mqtt.js client subscribed
 * at QoS 1 (it PUBACKs every message), counting what arrives and, from each payload's `t`, the
 * latency publish → here.
 *
 *   deno run -A scripts/bench/mqtt_sub.ts '{"url":"mqtt://127.0.0.1:1883","topic":"devices/+/telemetry","expect":100000}'
 *
 * Output, JSON lines: `{"event":"subscribed"}`, then `{"event":"done", received, firstAt, lastAt,
 * p50Ms, p99Ms}` once `expect` messages arrived or nothing arrived for `idleMs` (default 5000).
 */
import mqtt from "mqtt";
import process from "node:process";

interface SubOptions {
  url: string;
  topic: string;
  expect: number;
  idleMs?: number;
  clientId?: string;
}

const o = JSON.parse(process.argv[process.argv.length - 1]) as SubOptions;
const idleMs = o.idleMs ?? 5000;
const out = (line: unknown) => process.stdout.write(JSON.stringify(line) + "\n");
const hist = new Uint32Array(600_000); // 0.1 ms buckets up to 60 s
let received = 0;
let firstAt = 0;
let lastAt = 0;

function percentile(p: number): number {
  const target = Math.ceil(received * p);
  let seen = 0;
  for (let i = 0; i < hist.length; i++) {
    seen += hist[i];
    if (seen >= target && seen > 0) return Number(((i + 1) * 0.1).toFixed(1));
  }
  return 0;
}

const T = /"t":(\d+)/;
const client = mqtt.connect(o.url, {
  clientId: o.clientId ?? `bench-sub-${process.pid}`,
  clean: true,
  reconnectPeriod: 0,
  keepalive: 60,
});
await new Promise<void>((resolve, reject) => {
  client.once("connect", () => resolve());
  client.once("error", reject);
});
await client.subscribeAsync(o.topic, { qos: 1 });
out({ event: "subscribed" });

let finish!: () => void;
const finished = new Promise<void>((r) => (finish = r));
client.on("message", (_topic, payload) => {
  const now = Date.now();
  if (received === 0) firstAt = now;
  lastAt = now;
  received++;
  const m = T.exec(payload.toString("latin1", 0, 40));
  if (m) hist[Math.min(hist.length - 1, Math.max(0, Math.floor((now - Number(m[1])) / 0.1)))]++;
  if (received >= o.expect) finish();
});
const startedAt = Date.now();
const idle = setInterval(() => {
  if (Date.now() - Math.max(lastAt, startedAt) > idleMs) finish();
}, 250);
await finished;
clearInterval(idle);
out({ event: "done", received, firstAt, lastAt, p50Ms: percentile(0.5), p99Ms: percentile(0.99) });
await client.endAsync().catch(() => {});
process.exit(0);
