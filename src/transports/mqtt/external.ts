/**
 * A client of an existing MQTT broker (one per `mqtt.external` entry, thin-edge.io style): a
 * fixed client id with a persistent session (`clean: false`), QoS 1 subscriptions to the
 * configured filters, topics mapped to devices by `devicePattern`. A broker that is down at start,
 * or goes away, is retried for ever; the broker keeps what arrives meanwhile in the session.
 *
 * Each message is acknowledged (PUBACK) only after its outbox commit. mqtt.js sends the PUBACK
 * when its `handleMessage` hook calls back (for MQTT 3.1.1 and 5; its `customHandleAcks`
 * option only applies to MQTT 5) and reads the next packet only after that. Taken literally,
 * that is one commit per message. So the PUBACK itself is deferred instead: `handleMessage`
 * calls back at once, and the PUBACK mqtt.js then sends is held until the message's batch has
 * committed (in arrival order), while the following messages are already read and join the
 * next group commit. The broker's in-flight window (mosquitto: `max_inflight_messages`) bounds
 * how many wait. This relies on mqtt.js's `_sendPacket`; without it, the client falls back to
 * acknowledging one message at a time, which is slower but just as safe.
 */
import { RefusalLog } from "../../core/refusal_log.ts";
import { redactUrl } from "../../core/redact.ts";
import mqtt from "mqtt";
import type { IPublishPacket, MqttClient } from "mqtt";
import { randomBytes } from "node:crypto";
import type { IngestKind } from "../../core/message.ts";
import type { Telemetry } from "../../telemetry/mod.ts";
import { payloadDigest, type PublishKey, type Redelivery } from "./dedupe.ts";
import type { InboundPublish, Intake } from "./intake.ts";
import { compileDevicePattern, DEFAULT_DEVICE_PATTERN } from "./topics.ts";
import { errorMessage } from "../../core/errors.ts";

export interface ExternalOptions {
  url: string;
  topics: string[];
  devicePattern?: string;
  /** The kind of every message when the pattern has no `{kind}` level. */
  kind?: IngestKind;
  clientId: string;
  username?: string;
  password?: string;
  /** Reconnect delay (ms). */
  reconnectMs?: number;
  /**
   * Takes a message before it is read as device data (command answers): true when it was taken
   * (and stored: it is acknowledged at once); throws when it could not be stored.
   */
  intercept?: (topic: string, payload: Uint8Array) => boolean;
}

export interface ExternalStatus {
  url: string;
  clientId: string;
  connected: boolean;
  lastError: string | null;
}

export interface ExternalClient {
  start(): void;
  /** Publishes on this broker (for rules routing to `mqtt:<topic>` when there is no embedded broker). */
  publish(topic: string, payload: string, qos: 0 | 1): void;
  status(): ExternalStatus;
  /** Disconnects; messages not yet acknowledged stay in the broker's session. Idempotent. */
  stop(): Promise<void>;
}

export interface ExternalDeps {
  intake: Intake;
  telemetry: Telemetry;
  /** Where the filters the session is subscribed to are noted (to resubscribe only on change). */
  sessions?: Redelivery;
}

/** The URL without credentials, for logs and status. */
/** QoS 0 messages from one external broker that may wait for the store at once. */
export const MAX_QOS0_WAITING = 10_000;

interface Waiting {
  publish: InboundPublish;
  resolve: (ok: boolean) => void;
}

export function createExternalClient(options: ExternalOptions, deps: ExternalDeps): ExternalClient {
  const { telemetry, intake } = deps;
  const log = telemetry.log;
  const shownUrl = redactUrl(options.url);
  /** QoS 0 messages taken but not yet stored; bounded (MAX_QOS0_WAITING). */
  let qos0Waiting = 0;
  const qos0DropLog = new RefusalLog();
  const qos0Dropped = telemetry.metrics.family("outpost_mqtt_external_qos0_dropped_total");
  const mapTopic = compileDevicePattern(
    options.devicePattern ?? DEFAULT_DEVICE_PATTERN,
    options.kind ?? "telemetry",
  );
  let host = shownUrl;
  try {
    const u = new URL(options.url);
    host = u.host;
  } catch { /* validated by the config schema */ }
  const source = `mqtt:${host}`;
  const session = `external:${options.clientId}@${host}`;
  const boot = randomBytes(4).toString("hex");
  let connCounter = 0;
  let conn = "";
  let client: MqttClient | undefined;
  let stopped = false;
  let connected = false;
  let lastError: string | null = null;
  let everConnected = false;
  let errorLogged = false;
  /** PUBACKs mqtt.js will send next, held until the message's batch has committed. */
  const deferred = new Map<number, { stored: Promise<boolean>; key: PublishKey | undefined }>();
  let batch: Waiting[] = [];
  let scheduled = false;
  let tail: Promise<void> = Promise.resolve();

  function submit(publish: InboundPublish): Promise<boolean> {
    return new Promise((resolve) => {
      batch.push({ publish, resolve });
      if (scheduled) return;
      scheduled = true;
      const myConn = conn;
      setImmediate(() => {
        scheduled = false;
        const items = batch;
        batch = [];
        tail = tail.then(async () => {
          const alive = () => !stopped && client?.connected === true && conn === myConn;
          const result = await intake.submit(items.map((i) => i.publish), source, alive);
          if (!result.ok && result.why === "error") client?.stream?.destroy(); // the broker redelivers
          for (const i of items) i.resolve(result.ok);
        });
      });
    });
  }

  function inbound(packet: IPublishPacket): InboundPublish {
    const topic = packet.topic;
    const payload = typeof packet.payload === "string"
      ? new TextEncoder().encode(packet.payload)
      : packet.payload;
    const route = mapTopic(topic);
    const target: InboundPublish["target"] = route.type === "device"
      ? route
      : route.type === "invalid"
      ? route
      : { type: "invalid", reason: "unmapped-topic", message: "Topic is not device data" };
    const publish: InboundPublish = { topic, payload, target };
    if (packet.qos > 0 && packet.messageId !== undefined) {
      publish.key = {
        session,
        packetId: packet.messageId,
        digest: payloadDigest(topic, payload),
        conn,
        dup: packet.dup === true,
        persistent: true, // clean: false
      };
    }
    return publish;
  }

  return {
    start() {
      if (client) return;
      const c = mqtt.connect(options.url, {
        clientId: options.clientId,
        clean: false,
        protocolVersion: 4,
        username: options.username,
        password: options.password,
        reconnectPeriod: options.reconnectMs ?? 2_000,
        connectTimeout: 10_000,
        keepalive: 30,
        resubscribe: false,
        reconnectOnConnackError: true,
        manualConnect: true,
      });
      client = c;
      const internal = c as unknown as { _sendPacket?: (...args: unknown[]) => void };
      const send = internal._sendPacket;
      const pipelined = typeof send === "function";
      if (pipelined) {
        internal._sendPacket = function (this: unknown, ...args: unknown[]) {
          const packet = args[0] as { cmd: string; messageId?: number };
          const held = packet.cmd === "puback" && packet.messageId !== undefined
            ? deferred.get(packet.messageId)
            : undefined;
          if (held === undefined) return send.apply(c, args);
          deferred.delete(packet.messageId!);
          const stream = c.stream;
          (args[1] as (() => void) | undefined)?.(); // lets mqtt.js read the next packet now
          held.stored.then((ok) => {
            if (!ok || !c.connected || c.stream !== stream) return;
            send.call(c, packet);
            if (held.key !== undefined) intake.acked([held.key]);
          });
        };
      }
      c.handleMessage = (packet, callback) => {
        if (packet.cmd !== "publish") return callback();
        const p = packet as IPublishPacket;
        if (options.intercept) {
          const payload = typeof p.payload === "string" ? new TextEncoder().encode(p.payload) : p.payload;
          let taken: boolean;
          try {
            taken = options.intercept(p.topic, payload);
          } catch (error) {
            log.error("mqtt.external.store_failed", { url: shownUrl, error: errorMessage(error) });
            c.stream?.destroy(); // not acknowledged: the broker redelivers
            return;
          }
          if (taken) return callback();
        }
        if (p.qos === 0 && qos0Waiting >= MAX_QOS0_WAITING) {
          // QoS 0 has no acknowledgement to withhold: past the bound, while the store is behind
          // (a full outbox under "reject"), it is dropped and counted, as MQTT allows.
          qos0Dropped.add(1);
          const n = qos0DropLog.note();
          if (n !== undefined) {
            log.warn("mqtt.external.qos0_dropped", { url: shownUrl, dropped: n, waiting: qos0Waiting });
          }
          return callback();
        }
        const publish = inbound(p);
        const stored = submit(publish);
        if (p.qos === 0) {
          qos0Waiting++;
          stored.finally(() => qos0Waiting--);
          return callback(); // nothing to acknowledge
        }
        if (pipelined && p.messageId !== undefined) {
          deferred.set(p.messageId, { stored, key: publish.key });
          return callback();
        }
        stored.then((ok) => {
          if (!ok) return;
          callback();
          if (publish.key !== undefined) intake.acked([publish.key]);
        });
      };
      c.on("packetreceive", (packet) => {
        // A new connection starts with its CONNACK, before any message it carries is handled.
        if (packet.cmd === "connack") conn = `${boot}-${++connCounter}`;
      });
      c.on("connect", (connack) => {
        connected = true;
        everConnected = true;
        errorLogged = false;
        lastError = null;
        const want = [...new Set(options.topics)].sort().join("\n");
        const noteKey = `subscriptions:${session}`;
        const had = deps.sessions?.note(noteKey);
        log.info("mqtt.external.connected", {
          url: shownUrl,
          clientId: options.clientId,
          sessionPresent: connack.sessionPresent === true,
        });
        // A resumed session keeps its subscriptions; subscribing again would make the broker
        // resend its retained messages, so only a new session or changed filters subscribe.
        if (connack.sessionPresent && had === want) return;
        if (connack.sessionPresent && had) {
          const gone = had.split("\n").filter((t) => !options.topics.includes(t));
          if (gone.length > 0) c.unsubscribe(gone);
        }
        c.subscribe(options.topics, { qos: 1 }, (error, granted) => {
          if (error) {
            log.error("mqtt.external.subscribe_failed", { url: shownUrl, error: error.message });
            return;
          }
          const refused = (granted ?? []).filter((g) => g.qos === 128).map((g) => g.topic);
          if (refused.length > 0) {
            log.error("mqtt.external.subscribe_refused", { url: shownUrl, topics: refused });
            return;
          }
          deps.sessions?.setNote(noteKey, want);
          log.info("mqtt.external.subscribed", {
            url: shownUrl,
            clientId: options.clientId,
            topics: options.topics,
          });
        });
      });
      c.on("close", () => {
        if (connected) log.warn("mqtt.external.disconnected", { url: shownUrl, clientId: options.clientId });
        connected = false;
        deferred.clear();
      });
      c.on("error", (error) => {
        lastError = error.message;
        if (errorLogged) return;
        errorLogged = true;
        log.warn(everConnected ? "mqtt.external.error" : "mqtt.external.unreachable", {
          url: shownUrl,
          clientId: options.clientId,
          error: error.message,
          action: "retrying",
        });
      });
      c.on("offline", () => {
        if (!everConnected && !errorLogged) {
          errorLogged = true;
          log.warn("mqtt.external.unreachable", {
            url: shownUrl,
            clientId: options.clientId,
            action: "retrying",
          });
        }
      });
      c.connect();
    },
    publish(topic, payload, qos) {
      client?.publish(topic, payload, { qos });
    },
    status() {
      return { url: shownUrl, clientId: options.clientId, connected, lastError };
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      const c = client;
      if (!c) return;
      await tail.catch(() => {});
      await new Promise<void>((resolve) => c.end(false, {}, () => resolve()));
    },
  };
}
