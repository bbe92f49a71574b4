/**
 * A stand-alone MQTT device fleet for the MQTT tests and for measuring ingest, run as its own
 * process (`deno run -A tests/integration/mqtt_publisher.ts '<json options>'`), so that the agent
 * can be killed under it. Each device is one mqtt.js client publishing `{"n": 0…perDevice-1,
 * "device": id}` at QoS 1 with at most `window` unacknowledged, recording which numbers were
 * PUBACKed. Two kinds of device:
 * - `resend: true` (default): a fixed client id and a persistent session; after a reconnect
 *   mqtt.js resends every publish not yet acknowledged (what MQTT devices do);
 * - `resend: false`: a publish whose connection dropped before its PUBACK is given up (reported
 *   as `unanswered`, its fate unknown to the device) and the device goes on with a fresh
 *   clean-session client, like a client that posts each message once.
 *
 * Output (stdout, JSON lines): `{"event":"connected"}` once every device is connected,
 * `{"event":"progress","acked":N}` every `progressEvery` acknowledgements, and at the end
 * `{"event":"done","acked":{device:[n…]},"unanswered":{device:[n…]},"errors":k,"elapsedMs":t}`.
 */
import mqtt from "mqtt";
import type { MqttClient } from "mqtt";
import process from "node:process";

interface Options {
  url: string;
  devices: string[];
  perDevice: number;
  /** Topic with `{device}`; default `devices/{device}/telemetry`. */
  topic?: string;
  window?: number;
  progressEvery?: number;
  /** Per device: username and password (e.g. device id and token). */
  credentials?: Record<string, { username: string; password?: string }>;
  clientPrefix?: string;
  /** At most this many messages per second per device (default: as fast as acknowledged). */
  ratePerDevice?: number;
  resend?: boolean;
  /**
   * Publish as a ThingsBoard gateway: `topic` is then fixed (e.g. `v1/gateway/telemetry`) and the
   * payload is `{"<device>": [{"n", "device"}]}`, the device being a child of the gateway.
   */
  gateway?: boolean;
}

const o = JSON.parse(Deno.args[0]) as Options;
const window = o.window ?? 50;
const every = o.progressEvery ?? 500;
const resend = o.resend ?? true;
const acked: Record<string, number[]> = {};
const unanswered: Record<string, number[]> = {};
let total = 0;
let errors = 0;
let firstError: string | undefined;
let connectedDevices = 0;
const started = Date.now();
const out = (line: unknown) => process.stdout.write(JSON.stringify(line) + "\n");

function runDevice(device: string): Promise<void> {
  return new Promise((resolve) => {
    const creds = o.credentials?.[device];
    const topic = (o.topic ?? "devices/{device}/telemetry").replace("{device}", device);
    acked[device] = [];
    unanswered[device] = [];
    let next = 0;
    let counted = false;
    let startedAt = 0;
    let pacer: ReturnType<typeof setInterval> | undefined;
    let finished = false;
    /** Numbers sent on the current client and not yet answered. */
    const inflight = new Set<number>();
    /** Numbers to send again before new ones. */
    const retry: number[] = [];
    const allowed = () =>
      o.ratePerDevice === undefined
        ? o.perDevice
        : Math.floor(((Date.now() - startedAt) / 1000) * o.ratePerDevice);

    const finish = (client: MqttClient) => {
      if (finished || next < o.perDevice || inflight.size > 0 || retry.length > 0) return;
      finished = true;
      if (pacer) clearInterval(pacer);
      client.end(false, {}, () => resolve());
    };

    const connect = (): MqttClient => {
      const client = mqtt.connect(o.url, {
        clientId: `${o.clientPrefix ?? "pub"}-${device}`,
        clean: !resend,
        reconnectPeriod: 200,
        connectTimeout: 5_000,
        keepalive: 10,
        username: creds?.username,
        password: creds?.password,
      });
      let current = true;
      const pump = () => {
        if (!current || !client.connected) return;
        while (inflight.size < window && (retry.length > 0 || (next < o.perDevice && next < allowed()))) {
          const n = retry.length > 0 ? retry.shift()! : next++;
          inflight.add(n);
          const body = o.gateway ? { [device]: [{ n, device }] } : { n, device };
          client.publish(topic, JSON.stringify(body), { qos: 1 }, (error) => {
            if (!current) return; // given up already
            inflight.delete(n);
            if (error && !resend) unanswered[device].push(n); // the connection died: fate unknown
            else if (error && error.message === "Connection closed") {
              // Queued behind mqtt.js's resends and dropped unsent by a second disconnect: send again.
              retry.push(n);
              retry.sort((x, y) => x - y);
            } else if (error) {
              errors++;
              firstError ??= error.message;
            } else {
              acked[device].push(n);
              total++;
              if (total % every === 0) out({ event: "progress", acked: total });
            }
            finish(client);
            pump();
          });
        }
      };
      client.on("connect", () => {
        if (!counted) {
          counted = true;
          if (++connectedDevices === o.devices.length) out({ event: "connected" });
          startedAt = Date.now();
        }
        if (o.ratePerDevice !== undefined && !pacer) pacer = setInterval(() => active.pump(), 10);
        pump();
      });
      client.on("close", () => {
        if (resend || !current || finished) return; // with resend, mqtt.js reconnects and resends
        // Give up what was in flight on this connection and carry on with a fresh client.
        current = false;
        for (const n of inflight) unanswered[device].push(n);
        inflight.clear();
        client.removeAllListeners();
        client.on("error", () => {});
        client.end(true);
        if (next >= o.perDevice) {
          finished = true;
          if (pacer) clearInterval(pacer);
          resolve();
          return;
        }
        setTimeout(connect, 200);
      });
      client.on("error", () => {}); // reconnects on its own
      active = { client, pump };
      return client;
    };
    let active: { client: MqttClient; pump: () => void } = {
      client: undefined as unknown as MqttClient,
      pump: () => {},
    };
    connect();
  });
}

await Promise.all(o.devices.map(runDevice));

out({ event: "done", acked, unanswered, errors, firstError, elapsedMs: Date.now() - started });
process.exit(0);
