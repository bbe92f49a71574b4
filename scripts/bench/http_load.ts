/**
 * HTTP load generator (a separate process from the agent): posts telemetry as JSON arrays to
 * `POST /api/v1/devices/{device}/telemetry` with a fixed number of requests in flight, and
 * prints one JSON line with what was accepted (`{"event":"load.done", accepted, failed, …}`).
 * Each sample carries `t`, its send time (ms since the epoch).
 *
 *   deno run -A scripts/bench/http_load.ts --url http://127.0.0.1:8080 --token T \
 *     --messages 100000 --batch 100 --devices 8 --concurrency 8 [--start 0]
 */
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    url: { type: "string" },
    token: { type: "string" },
    messages: { type: "string", default: "100000" },
    batch: { type: "string", default: "100" },
    devices: { type: "string", default: "8" },
    concurrency: { type: "string", default: "8" },
    start: { type: "string", default: "0" },
  },
});

const total = Number(values.messages);
const batch = Number(values.batch);
const devices = Number(values.devices);
const concurrency = Number(values.concurrency);
const start = Number(values.start);
const headers = { authorization: `Bearer ${values.token}`, "content-type": "application/json" };

// ~150-byte telemetry, as a sensor gateway sends it.
function sample(n: number, device: number): Record<string, unknown> {
  return {
    n,
    t: Date.now(),
    temperature: 20 + (n % 100) / 10,
    humidity: 40 + (n % 50) / 10,
    pressure: 1013 + (n % 20),
    battery: 3.7,
    status: "ok",
    fw: "1.4.2",
    dev: device,
  };
}

let next = 0;
let accepted = 0;
let failed = 0;
const t0 = performance.now();
const worker = async () => {
  for (;;) {
    const i = next;
    if (i >= total) return;
    next = Math.min(total, i + batch);
    const device = Math.floor(i / batch) % devices;
    const body = [];
    for (let n = i; n < next; n++) body.push(sample(start + n, device));
    const res = await fetch(`${values.url}/api/v1/devices/dev-${device}/telemetry`, {
      method: "POST",
      headers,
      body: JSON.stringify(body),
    });
    await res.arrayBuffer();
    if (res.status === 202) accepted += body.length;
    else failed += body.length;
  }
};
await Promise.all(Array.from({ length: concurrency }, worker));
const seconds = (performance.now() - t0) / 1000;
console.log(
  JSON.stringify({
    event: "load.done",
    accepted,
    failed,
    seconds,
    msgsPerSecond: Math.round(accepted / seconds),
  }),
);
