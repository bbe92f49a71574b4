/**
 * MQTT device-fleet load generator (a separate process from what it measures): `devices` mqtt.js
 * clients, each publishing ~150-byte JSON telemetry on `devices/{id}/telemetry` at QoS 1 with at
 * most `window` publishes unacknowledged (or at `rate` messages per second per device), until
 * each has had `perDevice` PUBACKs or `seconds` have passed.
 *
 *   deno run -A scripts/bench/mqtt_load.ts '{"url":"mqtt://127.0.0.1:1883","devices":50,"perDevice":2000}'
 *
 * Every payload carries `n` (per device) and `t`, its publish time (ms since the epoch), so that
 * a receiver can compute latency. Output, JSON lines on stdout: `{"event":"connected"}` once every
 * client is connected, then `{"event":"done", acked, errors, firstPublishAt, lastAckAt,
 * pubackP50Ms, pubackP99Ms}`. With `waitForGo`, publishing starts only on SIGUSR1 (so that
 * several publisher processes start together).
 */
import mqtt from "mqtt";
import type { MqttClient } from "mqtt";
import process from "node:process";

export interface LoadOptions {
  url: string;
  devices: number;
  /** Device ids are `${prefix}${first + i}`. */
  prefix?: string;
  first?: number;
  /** Messages per device (default: unlimited, bounded by `seconds`). */
  perDevice?: number;
  seconds?: number;
  /** Unacknowledged publishes per device (default 10). */
  window?: number;
  /** Messages per second per device (default: as fast as acknowledged). */
  rate?: number;
  qos?: 0 | 1;
  /** Connections opened at once while connecting (default 100). */
  connectConcurrency?: number;
  waitForGo?: boolean;
  username?: string;
  password?: string;
}

const o = JSON.parse(process.argv[process.argv.length - 1]) as LoadOptions;
const prefix = o.prefix ?? "dev-";
const first = o.first ?? 0;
const window = o.window ?? 10;
const qos = o.qos ?? 1;
const perDevice = o.perDevice ?? Number.POSITIVE_INFINITY;
const out = (line: unknown) => process.stdout.write(JSON.stringify(line) + "\n");

// Latencies publish → PUBACK in ms, as a histogram of 0.1 ms buckets up to 60 s.
const BUCKET = 0.1;
const hist = new Uint32Array(600_000);
let acked = 0;
let errors = 0;
let firstError: string | undefined;
let firstPublishAt = 0;
let lastAckAt = 0;
let stopAt = Number.POSITIVE_INFINITY;

function percentile(p: number): number {
  const target = Math.ceil(acked * p);
  let seen = 0;
  for (let i = 0; i < hist.length; i++) {
    seen += hist[i];
    if (seen >= target && seen > 0) return Number(((i + 1) * BUCKET).toFixed(1));
  }
  return 0;
}

interface Device {
  id: string;
  topic: string;
  client: MqttClient;
  next: number;
  inflight: number;
  done: boolean;
  startedAt: number;
}

/** ~150 bytes, as a sensor gateway sends it; values move every message (deadband never drops). */
function payload(n: number, dev: number): string {
  return `{"n":${n},"t":${Date.now()},"temperature":${20 + (n % 100) / 10},"humidity":${
    40 + (n % 50) / 10
  },"pressure":${1013 + (n % 20)},"battery":3.71,"rssi":-67,"status":"ok","fw":"1.4.2","dev":${dev}}`;
}

const devices: Device[] = [];
let finished = 0;
let resolveAll!: () => void;
const allDone = new Promise<void>((r) => (resolveAll = r));

function finish(d: Device): void {
  if (d.done) return;
  d.done = true;
  if (++finished === devices.length) resolveAll();
}

function pump(d: Device, index: number): void {
  if (d.done) return;
  const now = Date.now();
  if (now >= stopAt && d.inflight === 0) return finish(d);
  while (d.inflight < window && d.next < perDevice && now < stopAt) {
    if (o.rate !== undefined && d.next >= ((now - d.startedAt) / 1000) * o.rate) break;
    const n = d.next++;
    d.inflight++;
    const sentAt = performance.now();
    d.client.publish(d.topic, payload(n, index), { qos }, (error) => {
      d.inflight--;
      if (error) {
        errors++;
        firstError ??= error.message;
      } else {
        acked++;
        const ms = performance.now() - sentAt;
        hist[Math.min(hist.length - 1, Math.floor(ms / BUCKET))]++;
        lastAckAt = Date.now();
      }
      if (d.next >= perDevice && d.inflight === 0) finish(d);
      else pump(d, index);
    });
  }
  if (d.next >= perDevice && d.inflight === 0) finish(d);
}

function connect(index: number): Promise<Device> {
  const id = `${prefix}${first + index}`;
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(o.url, {
      clientId: `load-${id}`,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 30_000,
      keepalive: 60,
      username: o.username,
      password: o.password,
    });
    client.once(
      "connect",
      () =>
        resolve({
          id,
          topic: `devices/${id}/telemetry`,
          client,
          next: 0,
          inflight: 0,
          done: false,
          startedAt: 0,
        }),
    );
    client.once("error", reject);
    client.on("close", () => {
      const d = devices[index];
      if (d && !d.done) {
        errors++;
        firstError ??= "connection closed";
        finish(d);
      }
    });
  });
}

// Listening before "connected" is printed: the go signal may follow at once.
const go = o.waitForGo ? new Promise<void>((resolve) => process.once("SIGUSR1", () => resolve())) : undefined;
const concurrency = o.connectConcurrency ?? 100;
for (let i = 0; i < o.devices; i += concurrency) {
  const batch = await Promise.all(
    Array.from({ length: Math.min(concurrency, o.devices - i) }, (_, k) => connect(i + k)),
  );
  devices.push(...batch);
}
out({ event: "connected", devices: devices.length });

await go;

firstPublishAt = Date.now();
if (o.seconds !== undefined) stopAt = firstPublishAt + o.seconds * 1000;
let pacer: ReturnType<typeof setInterval> | undefined;
// Devices start spread over the first second when paced, as a fleet would.
devices.forEach((d, i) => {
  d.startedAt = firstPublishAt + (o.rate !== undefined ? (i / devices.length) * 1000 : 0);
});
if (o.rate !== undefined || o.seconds !== undefined) {
  pacer = setInterval(() => devices.forEach((d, i) => pump(d, i)), o.rate !== undefined ? 20 : 100);
}
devices.forEach((d, i) => pump(d, i));
await allDone;
if (pacer) clearInterval(pacer);
const report = {
  event: "done",
  devices: devices.length,
  acked,
  errors,
  firstError,
  firstPublishAt,
  lastAckAt,
  seconds: (lastAckAt - firstPublishAt) / 1000,
  pubackP50Ms: percentile(0.5),
  pubackP99Ms: percentile(0.99),
};
await Promise.all(devices.map((d) => d.client.endAsync().catch(() => {})));
out(report);
process.exit(0);
