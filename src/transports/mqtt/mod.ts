/**
 * MQTT transports (SPEC §3, §4): the embedded broker on `mqtt.broker.listen` and one client per
 * `mqtt.external` broker. Both hand device publishes to `ingest.accept()` and acknowledge them
 * only after commit (see intake.ts); both recognise resends of committed publishes (dedupe.ts).
 *
 * Lifecycle: `start()` after everything it feeds (store, uplink, rules); `stop()` first, letting
 * batches in flight finish. `publishLocal()` is what rules routing to `mqtt:<topic>` call.
 */
import { redactUrl } from "../../core/redact.ts";
import { type BrokerLimits, brokerLimits } from "./limits.ts";
import type { RoutedMessage } from "../../core/message.ts";
import { secretEquals } from "../../core/secret.ts";
import type { LocalDatabase } from "../../db/mod.ts";
import type { DeviceRegistry } from "../../devices/mod.ts";
import type { DeadLetters, Ingest } from "../../ingest/mod.ts";
import type { Telemetry } from "../../telemetry/mod.ts";
import type { Credentials } from "./auth.ts";
import { type BrokerStatus, createEmbeddedBroker, type EmbeddedBroker } from "./broker.ts";
import {
  COMMAND_RESPONSE_FILTER,
  type CommandHooks,
  commandPayload,
  commandTopic,
  type OutgoingCommand,
  parseResponseTopic,
} from "./commands.ts";
import { createRedelivery, type Redelivery } from "./dedupe.ts";
import type { ExternalClient, ExternalStatus } from "./external.ts";
import { createIntake, type Intake } from "./intake.ts";
import { errorMessage } from "../../core/errors.ts";

export { authenticate, mayPublish, maySubscribe } from "./auth.ts";
export type { Credentials, Identity } from "./auth.ts";
export type { CommandHooks, OutgoingCommand } from "./commands.ts";
export { checkDevicePattern, compileDevicePattern, DEFAULT_DEVICE_PATTERN } from "./topics.ts";

export interface ExternalBrokerConfig {
  url: string;
  topics: string[];
  devicePattern?: string;
  kind?: "telemetry" | "attributes" | "events";
  clientId?: string;
  username?: string;
  password?: string;
}

export interface MqttConfig {
  edgeId: string;
  dataDir: string;
  broker: false | {
    listen: string;
    auth: "none" | "token";
    limits?: Partial<BrokerLimits>;
  };
  external: ExternalBrokerConfig[];
  maxPayloadBytes: number;
}

export interface MqttDeps {
  ingest: Ingest;
  devices: DeviceRegistry;
  deadLetters: DeadLetters;
  telemetry: Telemetry;
  /** The control API token: with `auth: "token"`, local-bus clients use it as their password. */
  apiToken: string;
  /** The outbox's database: what the transports remember commits in the outbox's transactions. */
  db: LocalDatabase;
  /** Commands from the hub (src/device_commands): device answers, and devices that now listen. */
  commands?: CommandHooks;
}

export interface MqttStatus {
  broker: BrokerStatus | null;
  external: ExternalStatus[];
}

export interface MqttTransports {
  start(): Promise<void>;
  /** Stops the broker and the clients; idempotent. */
  stop(): Promise<void>;
  /**
   * Publishes a message routed to `mqtt:<topic>` (best effort, QoS 1): on the embedded broker,
   * else on the first external broker. The payload is `{device, kind, ts, payload, topic?}`.
   */
  publishLocal(topic: string, message: RoutedMessage): void;
  /**
   * Hands a command to its device if it can be reached now: a connection on the embedded broker
   * listening for it (see commands.ts), else the external broker the device was last seen on
   * (published there at QoS 1 on `devices/{device}/commands/{id}`). Says where, or undefined.
   */
  deliverCommand(command: OutgoingCommand): string | undefined;
  status(): MqttStatus;
}

/** How long outpost remembers a committed publish's packet id for recognising resends. */
const REDELIVERY_MAX_AGE_MS = 7 * 24 * 3600 * 1000;
/** Devices remembered as seen on an external broker (where their commands go first). */
const MAX_EXTERNAL_DEVICES = 10_000;

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return redactUrl(url);
  }
}

/** The default client id of the n-th external broker entry. */
export function externalClientId(edgeId: string, index: number): string {
  return `outpost-${edgeId}-${index}`;
}

export function createMqttTransports(config: MqttConfig, deps: MqttDeps): MqttTransports {
  const { telemetry } = deps;
  const enabled = config.broker !== false || config.external.length > 0;
  let redelivery: Redelivery | undefined;
  let broker: EmbeddedBroker | undefined;
  let externals: ExternalClient[] = [];
  let pruneTimer: ReturnType<typeof setInterval> | undefined;
  /** Devices seen on an external broker (index into `externals`), where their commands go. */
  const externalDevices = new Map<string, number>();
  let stopping: Promise<void> | undefined;

  const credentials: Credentials = {
    isApiToken: (candidate) => secretEquals(candidate, deps.apiToken),
    verifyDevice: (id, token) => deps.devices.verify(id, token),
    deviceByToken: (token) => deps.devices.findByToken(token),
    isProvisioned: (id) => deps.devices.isProvisioned(id),
  };

  // The intake reads `redelivery` when it is called, after start() has opened it.
  const intake = createIntake({
    ingest: deps.ingest,
    telemetry,
    deadLetters: deps.deadLetters,
    get redelivery() {
      return redelivery;
    },
    maxPayloadBytes: config.maxPayloadBytes,
  });

  /** The intake of external broker `index`, noting which devices show up there. */
  function noteDevices(inner: Intake, index: number, commands: CommandHooks): Intake {
    return {
      submit(batch, source, alive) {
        for (const p of batch) {
          if (p.target.type !== "device") continue;
          const device = p.target.device;
          if (externalDevices.get(device) === index) continue;
          // Bounded: the oldest entry goes (it is only a hint of where to send commands first).
          if (externalDevices.size >= MAX_EXTERNAL_DEVICES) {
            externalDevices.delete(externalDevices.keys().next().value!);
          }
          externalDevices.set(device, index);
          commands.listening(device);
        }
        return inner.submit(batch, source, alive);
      },
      acked: (keys) => inner.acked(keys),
      get busy() {
        return inner.busy;
      },
      drain: (timeoutMs) => inner.drain(timeoutMs),
      stop: () => inner.stop(),
    };
  }

  return {
    async start() {
      if (!enabled) return;
      redelivery = createRedelivery(deps.db);
      redelivery.prune(REDELIVERY_MAX_AGE_MS);
      pruneTimer = setInterval(() => {
        try {
          redelivery?.prune(REDELIVERY_MAX_AGE_MS);
        } catch (error) {
          telemetry.log.error("mqtt.prune_failed", { error: errorMessage(error) });
        }
      }, 3600_000);
      (pruneTimer as { unref?: () => void }).unref?.();
      if (config.broker !== false) {
        broker = createEmbeddedBroker({
          listen: config.broker.listen,
          auth: config.broker.auth,
          limits: brokerLimits(config.broker.limits ?? {}, config.maxPayloadBytes),
        }, {
          intake,
          telemetry,
          credentials,
          commands: deps.commands,
          devices: deps.devices,
        });
        await broker.start();
      }
      const commands = deps.commands;
      // mqtt.js is loaded only when an external broker is configured.
      const { createExternalClient } = config.external.length > 0
        ? await import("./external.ts")
        : { createExternalClient: undefined! };
      externals = config.external.map((entry, index) =>
        createExternalClient({
          url: entry.url,
          topics: commands ? [...new Set([...entry.topics, COMMAND_RESPONSE_FILTER])] : entry.topics,
          intercept: commands && ((topic, payload) => {
            const response = parseResponseTopic(topic);
            if (!response) return false;
            commands.answer(response.device, response.id, payload, `mqtt:${hostOf(entry.url)}`);
            return true;
          }),
          devicePattern: entry.devicePattern,
          kind: entry.kind === "events" ? "event" : entry.kind,
          clientId: entry.clientId ?? externalClientId(config.edgeId, index),
          username: entry.username,
          password: entry.password,
        }, {
          intake: commands ? noteDevices(intake, index, commands) : intake,
          telemetry,
          sessions: redelivery,
        })
      );
      for (const client of externals) client.start();
    },
    stop() {
      stopping ??= (async () => {
        if (pruneTimer) clearInterval(pruneTimer);
        await Promise.all([broker?.stop(), ...externals.map((c) => c.stop())]);
        intake.stop();
        redelivery?.close();
      })();
      return stopping;
    },
    publishLocal(topic, message) {
      const body = JSON.stringify({
        device: message.device,
        kind: message.kind,
        ts: message.ts,
        payload: message.payload,
        topic: message.topic,
      });
      if (broker) void broker.publish(topic, body, { qos: 1 });
      else externals[0]?.publish(topic, body, 1);
    },
    deliverCommand(command) {
      const via = broker?.deliverCommand(command);
      if (via !== undefined) return via;
      const index = externalDevices.get(command.device);
      if (index === undefined || !externals[index]) return undefined;
      // mqtt.js keeps a QoS 1 publish made while disconnected and sends it after reconnecting.
      externals[index].publish(commandTopic(command.device, command.id), commandPayload(command), 1);
      return `mqtt:${hostOf(config.external[index].url)}`;
    },
    status() {
      return { broker: broker?.status() ?? null, external: externals.map((c) => c.status()) };
    },
  };
}
