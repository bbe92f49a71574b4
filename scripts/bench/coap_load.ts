/**
 * CoAP load generator (a separate process from the agent): each device is its own UDP socket and
 * keeps `window` confirmable requests in flight, `POST /api/v1/{token}/telemetry` with one sample
 * each, and retransmits unanswered ones (RFC 7252 timing, shortened). Prints one JSON line:
 * `{"event":"load.done", answered, failed, seconds, msgsPerSecond, p50Ms, p99Ms}` (request → 2.01).
 * Each sample carries `t`, its send time (ms since the epoch).
 *
 *   bun scripts/bench/coap_load.ts --port 5683 --tokens a,b,c --messages 100000 --window 8
 */
import { parseArgs } from "node:util";
import { createCoapClient } from "../../tests/helpers/coap.ts";

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    tokens: { type: "string" },
    messages: { type: "string", default: "100000" },
    window: { type: "string", default: "8" },
  },
});

const port = Number(values.port);
const tokens = String(values.tokens).split(",");
const total = Number(values.messages);
const window = Number(values.window);

let next = 0;
let answered = 0;
let failed = 0;
const latencies: number[] = [];
const clients = await Promise.all(
  tokens.map(() => createCoapClient(port, { ackTimeoutMs: 1000, maxRetransmit: 4 })),
);
const t0 = performance.now();
const worker = async (device: number) => {
  const client = clients[device];
  for (;;) {
    const n = next++;
    if (n >= total) return;
    const sent = performance.now();
    const payload = JSON.stringify({
      n,
      t: Date.now(),
      temperature: 20 + (n % 100) / 10,
      humidity: 40 + (n % 50) / 10,
      pressure: 1013 + (n % 20),
      battery: 3.7,
      status: "ok",
      fw: "1.4.2",
      dev: device,
    });
    const a = await client.request({ path: `/api/v1/${tokens[device]}/telemetry`, payload });
    if (a?.code === "2.01") {
      answered++;
      latencies.push(performance.now() - sent);
    } else failed++;
  }
};
await Promise.all(tokens.flatMap((_, d) => Array.from({ length: window }, () => worker(d))));
const seconds = (performance.now() - t0) / 1000;
for (const c of clients) c.close();
latencies.sort((a, b) => a - b);
const pct = (p: number) =>
  latencies.length ? latencies[Math.min(latencies.length - 1, Math.ceil(latencies.length * p) - 1)] : 0;
console.log(JSON.stringify({
  event: "load.done",
  answered,
  failed,
  seconds,
  msgsPerSecond: Math.round(answered / seconds),
  p50Ms: Number(pct(0.5).toFixed(1)),
  p99Ms: Number(pct(0.99).toFixed(1)),
}));
