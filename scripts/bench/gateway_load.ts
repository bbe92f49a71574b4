/**
 * ThingsBoard gateway load generator (a separate process from what it measures): one mqtt.js
 * connection signed in as a gateway (`username`), publishing on `v1/gateway/telemetry` at QoS 1
 * for `children` child devices in turn, one sample per publish
 * (`{"child-7": [{"n": 41, "t": <publish time>}]}`), with at most `window` publishes
 * unacknowledged, until `messages` PUBACKs.
 *
 *   bun scripts/bench/gateway_load.ts '{"url":"mqtt://127.0.0.1:1883","username":"gw","children":100,"messages":100000}'
 *
 * Output, JSON lines on stdout: `{"event":"connected"}`, then `{"event":"done", acked, errors,
 * firstPublishAt, lastAckAt}`.
 */
import mqtt from "mqtt";
import process from "node:process";

interface Options {
  url: string;
  username: string;
  password?: string;
  children: number;
  messages: number;
  window?: number;
}

const o = JSON.parse(process.argv[process.argv.length - 1]) as Options;
const window = o.window ?? 100;
const out = (line: unknown) => process.stdout.write(JSON.stringify(line) + "\n");
const children = Array.from({ length: o.children }, (_, i) => `child-${i}`);
const counters = new Array<number>(o.children).fill(0);

const client = mqtt.connect(o.url, {
  clientId: `gateway-load-${process.pid}`,
  username: o.username,
  password: o.password,
  clean: true,
  reconnectPeriod: 0,
});
let sent = 0;
let acked = 0;
let errors = 0;
let firstError: string | undefined;
let firstPublishAt = 0;
let lastAckAt = 0;

function pump(): void {
  while (sent - acked - errors < window && sent < o.messages) {
    const i = sent % o.children;
    const n = counters[i]++;
    sent++;
    const body = JSON.stringify({ [children[i]]: [{ n, t: Date.now() }] });
    client.publish("v1/gateway/telemetry", body, { qos: 1 }, (error) => {
      if (error) {
        errors++;
        firstError ??= error.message;
      } else {
        acked++;
        lastAckAt = Date.now();
      }
      if (acked + errors >= o.messages) finish();
      else pump();
    });
  }
}

function finish(): void {
  out({ event: "done", acked, errors, firstError, firstPublishAt, lastAckAt });
  client.end(false, {}, () => process.exit(0));
}

client.on("connect", () => {
  out({ event: "connected" });
  // The children connect first, as a ThingsBoard gateway announces them.
  for (const d of children) client.publish("v1/gateway/connect", JSON.stringify({ device: d }), { qos: 1 });
  firstPublishAt = Date.now();
  pump();
});
client.on("error", (error) => {
  out({ event: "done", acked, errors: errors + 1, firstError: error.message, firstPublishAt, lastAckAt });
  process.exit(1);
});
