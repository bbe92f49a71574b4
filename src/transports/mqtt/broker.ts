/**
 * The embedded MQTT broker (aedes, MQTT 3.1.1; clean and persistent sessions, QoS 0/1/2,
 * retained messages and last will as aedes implements them) on `mqtt.broker.listen`.
 *
 * Device publishes (`devices/{device}/telemetry|attributes|events`, ThingsBoard's
 * `v1/devices/me/telemetry|attributes`) are stored before they are acknowledged: aedes sends
 * the PUBACK (PUBREC for QoS 2) only when `authorizePublish` calls back, and it calls back only
 * after the intake has committed the batch. aedes reads a connection's next chunk only once
 * every publish of the previous one has called back, so a waiting batch also stops the reading
 * (backpressure) and one session's publishes are stored in order.
 *
 * Relaying to local subscribers: a device publish that was stored is relayed as published
 * (after the commit); one that was refused as bad input, or recognised as a resend, is not.
 * ThingsBoard `v1/devices/me/…` topics are never relayed (`me` differs per connection). Every
 * other topic is a plain local bus.
 *
 * Session state (subscriptions, queued QoS 1/2 messages for offline persistent sessions,
 * retained messages) lives in memory: it survives a client reconnecting, not an agent restart.
 * Device data does not depend on it: it is in the outbox before the device hears back.
 */
import { AUTH_MAX_FAILURES, AuthLimiter } from "../../core/auth_limiter.ts";
import { RefusalLog } from "../../core/refusal_log.ts";
import { type BrokerLimits, brokerLimits, createBrokerBounds } from "./limits.ts";
import { Aedes } from "aedes";
import type { AedesPublishPacket, Client, PublishPacket, Subscription } from "aedes";
import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import type { Telemetry } from "../../telemetry/mod.ts";
import {
  authenticate,
  type Credentials,
  type Identity,
  mayPublish,
  maySubscribe,
  thingsBoardDevice,
} from "./auth.ts";
import {
  type CommandHooks,
  commandPayload,
  commandTopic,
  filterDevice,
  listensForCommand,
  listensForRpc,
  type OutgoingCommand,
  parseResponseTopic,
  parseRpcResponseTopic,
  RPC_REQUEST_PREFIX,
  rpcRequestPayload,
} from "./commands.ts";
import { payloadDigest, type PublishKey } from "./dedupe.ts";
import type { InboundPublish, Intake } from "./intake.ts";
import { routeDeviceTopic, THINGSBOARD_PREFIX, thingsBoardKind } from "./topics.ts";
import { errorMessage } from "../../core/errors.ts";

export interface BrokerOptions {
  /** `host:port`; port 0 picks a free one. */
  listen: string;
  auth: "none" | "token";
  /** The bounds of `mqtt.broker.limits` (limits.ts); default: the config's defaults. */
  limits?: BrokerLimits;
  /** Failed-authentication limit per remote address (default: 10 a minute). */
  authLimiter?: AuthLimiter;
}

export interface BrokerDeps {
  intake: Intake;
  telemetry: Telemetry;
  credentials: Credentials;
  /** Commands from the hub: device answers go here, and news of devices that now listen. */
  commands?: CommandHooks;
}

export interface BrokerStatus {
  listen: string | null;
  auth: "none" | "token";
  clients: number;
}

export interface EmbeddedBroker {
  /** Listens; resolves with the bound address. */
  start(): Promise<{ host: string; port: number }>;
  /** Publishes as outpost itself (not subject to device rules), e.g. routed messages. */
  publish(
    topic: string,
    payload: string | Uint8Array,
    options?: { qos?: 0 | 1; retain?: boolean },
  ): Promise<void>;
  /**
   * Publishes a command (QoS 1) to a device that listens for it now: on
   * `devices/{device}/commands/{id}`, and on `v1/devices/me/rpc/request/{id}` to its
   * ThingsBoard-style connections. Says where it went, or undefined when nothing listens.
   */
  deliverCommand(command: OutgoingCommand): string | undefined;
  status(): BrokerStatus;
  /** Stops accepting, lets batches in flight finish (bounded), closes every client. Idempotent. */
  stop(): Promise<void>;
}

interface Waiting {
  publish: InboundPublish;
  packet: PublishPacket;
  done: (error?: Error | null) => void;
}

interface SessionQueue {
  items: Waiting[];
  scheduled: boolean;
  tail: Promise<void>;
}

/** A client's current subscriptions (filter → options), as aedes keeps them. */
function clientSubscriptions(client: Client): Record<string, unknown> {
  return (client as unknown as { subscriptions?: Record<string, unknown> }).subscriptions ?? {};
}

function splitListen(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(":");
  return { host: listen.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(listen.slice(i + 1)) };
}

export function createEmbeddedBroker(options: BrokerOptions, deps: BrokerDeps): EmbeddedBroker {
  const { telemetry, intake, credentials } = deps;
  const log = telemetry.log;
  const identities = new WeakMap<Client, Identity>();
  const connections = new WeakMap<Client, string>();
  const queues = new WeakMap<Client, SessionQueue>();
  /** Payloads acknowledged but not to be relayed (bad input, resends, command answers). */
  const unrelayed = new WeakSet<object>();
  /** ThingsBoard RPC requests (by payload), forwarded only to their device's connections. */
  const rpcFor = new WeakMap<object, string>();
  const boot = randomBytes(4).toString("hex");
  let connCounter = 0;
  let aedes: Aedes | undefined;
  let server: Server | undefined;
  let address: { host: string; port: number } | undefined;
  const sockets = new Set<Socket>();
  let stopping: Promise<void> | undefined;
  // Without options (tests, tools): the defaults for the default payload limit (256 KiB); the agent
  // always passes the configured ones.
  const limits = options.limits ?? brokerLimits({}, 256 * 1024);
  const bounds = createBrokerBounds(limits, telemetry);
  let expiryTimer: ReturnType<typeof setInterval> | undefined;
  const authLimiter = options.authLimiter ?? new AuthLimiter();
  const authLimited = new RefusalLog();

  const clientsGauge = telemetry.metrics.family("outpost_mqtt_clients");
  telemetry.metrics.collectors.push(() => clientsGauge.set(aedes?.connectedClients ?? 0));

  function describe(client: Client | null, identity?: Identity): Record<string, unknown> {
    return {
      transport: "mqtt",
      clientId: client?.id,
      device: identity?.type === "device" ? identity.device : undefined,
    };
  }

  function enqueue(client: Client, item: Waiting): void {
    let q = queues.get(client);
    if (!q) {
      q = { items: [], scheduled: false, tail: Promise.resolve() };
      queues.set(client, q);
    }
    q.items.push(item);
    if (q.scheduled) return;
    q.scheduled = true;
    const queue = q;
    // Every publish of the chunk aedes is parsing now joins this batch.
    setImmediate(() => {
      queue.scheduled = false;
      const items = queue.items;
      queue.items = [];
      queue.tail = queue.tail.then(() => settle(client, items));
    });
  }

  async function settle(client: Client, items: Waiting[]): Promise<void> {
    const result = await intake.submit(items.map((i) => i.publish), "mqtt", () => !client.closed);
    if (!result.ok) {
      // Not stored: no acknowledgement. A store failure drops the connection so that the client
      // resends; when stopping or gone, the client resends after reconnecting anyway.
      if (result.why === "error") items[0].done(new Error("outpost could not store the message"));
      return;
    }
    const acked: PublishKey[] = [];
    for (let i = 0; i < items.length; i++) {
      const { packet, done, publish } = items[i];
      if (result.outcomes[i] !== "accepted") {
        unrelayed.add(packet.payload as object);
        packet.retain = false;
      } else if (publish.key !== undefined) acked.push(publish.key);
      done(null);
    }
    // aedes writes each PUBACK in done() while the connection is open.
    if (!client.closed) intake.acked(acked);
  }

  function authorizePublish(
    client: Client | null,
    packet: PublishPacket,
    done: (error?: Error | null) => void,
  ): void {
    const identity: Identity = client ? identities.get(client) ?? { type: "service" } : { type: "service" };
    const topic = packet.topic;
    const decision = mayPublish(identity, topic);
    if (!decision.ok) {
      telemetry.authRefused(decision.reason, {
        ...describe(client, identity),
        topic: topic.slice(0, 256),
        action: "publish",
      });
      done(new Error(`Publish to "${topic}" refused: ${decision.reason}`));
      return;
    }
    const payload = packet.payload as Uint8Array;
    // An empty retained publish clears a retained message: plain MQTT, not device data.
    if (packet.retain && payload.byteLength === 0) return done(null);
    let target: InboundPublish["target"];
    const tbKind = thingsBoardKind(topic);
    if (tbKind !== undefined) {
      const device = thingsBoardDevice(identity);
      target = device === undefined
        ? {
          type: "invalid",
          reason: "no-device-identity",
          message: "A ThingsBoard-style publish needs a device token as the MQTT username",
        }
        : { type: "device", device, kind: tbKind };
    } else if (topic.startsWith(THINGSBOARD_PREFIX)) {
      // RPC answers go to the commands; other ThingsBoard API topics are not served.
      const id = deps.commands && parseRpcResponseTopic(topic);
      const device = id ? thingsBoardDevice(identity) : undefined;
      if (id && device) return answer(device, id, payload, "thingsboard", packet, done);
      return done(null);
    } else {
      const route = routeDeviceTopic(topic);
      if (route.type === "bus") {
        const response = deps.commands && parseResponseTopic(topic);
        if (response) return answer(response.device, response.id, payload, "mqtt", packet, done);
        return done(null);
      }
      target = route;
    }
    if (!client) {
      // A stale last will with no connection behind it: store it, nothing to acknowledge.
      void intake.submit([{ topic, payload, target }], "mqtt", () => true).then(() => done(null));
      return;
    }
    const publish: InboundPublish = { topic, payload, target };
    if (packet.qos > 0 && packet.messageId !== undefined) {
      publish.key = {
        session: `broker:${client.id}`,
        packetId: packet.messageId,
        digest: payloadDigest(topic, payload),
        conn: connections.get(client) ?? "",
        dup: packet.dup === true,
        persistent: client.clean === false,
      };
    }
    enqueue(client, { publish, packet, done });
  }

  /** A device's answer to a command: stored before the PUBACK, consumed (not relayed). */
  function answer(
    device: string,
    id: string,
    payload: Uint8Array,
    via: string,
    packet: PublishPacket,
    done: (error?: Error | null) => void,
  ): void {
    try {
      deps.commands!.answer(device, id, payload, via);
    } catch (error) {
      log.error("mqtt.command_answer_failed", { device, id, error: errorMessage(error) });
      return done(new Error("outpost could not store the answer"));
    }
    unrelayed.add(packet.payload as object);
    packet.retain = false;
    done(null);
  }

  /** Tells the commands which devices a client's new filters make listen (waiting ones go out). */
  function listenersChanged(client: Client, filters: readonly string[]): void {
    if (!deps.commands) return;
    for (const filter of filters) {
      const device = filterDevice(filter);
      if (device !== undefined) deps.commands.listening(device);
      else if (listensForRpc(filter)) {
        const identity = identities.get(client);
        const own = identity ? thingsBoardDevice(identity) : undefined;
        if (own !== undefined) deps.commands.listening(own);
      }
    }
  }

  function authorizeSubscribe(
    client: Client,
    subscription: Subscription,
    done: (error: Error | null, subscription?: Subscription | null) => void,
  ): void {
    const identity = identities.get(client) ?? { type: "service" };
    const decision = maySubscribe(identity, subscription.topic);
    if (!decision.ok) {
      telemetry.authRefused(decision.reason, {
        ...describe(client, identity),
        topic: subscription.topic.slice(0, 256),
        action: "subscribe",
      });
      return done(null, null); // SUBACK 0x80 (failure) for this filter; the connection stays
    }
    done(null, subscription);
  }

  function authorizeForward(_client: Client, packet: AedesPublishPacket): AedesPublishPacket | null {
    if (unrelayed.has(packet.payload as object)) return null;
    if (packet.topic.startsWith(THINGSBOARD_PREFIX)) {
      const device = rpcFor.get(packet.payload as object);
      const identity = identities.get(_client);
      return device !== undefined && identity !== undefined && thingsBoardDevice(identity) === device
        ? packet
        : null;
    }
    return packet;
  }

  return {
    async start() {
      const { host, port } = splitListen(options.listen);
      const broker = new Aedes({
        authenticate(client, username, password, done) {
          const remote = (client.conn as { remoteAddress?: string } | undefined)?.remoteAddress ?? "unknown";
          if (options.auth === "token" && authLimiter.blocked(remote)) {
            // Refused without checking, for the rest of the minute (SPEC §14).
            const n = authLimited.note();
            if (n !== undefined) {
              log.warn("auth.limited", {
                transport: "mqtt",
                address: remote,
                refused: n,
                rule: `${AUTH_MAX_FAILURES} failed authentications in a minute`,
              });
            }
            const error = new Error("too many failed authentications") as Error & { returnCode: number };
            error.returnCode = 5;
            return done(error as any, false);
          }
          const result = authenticate(options.auth, username, password?.toString("utf8"), credentials);
          if (!result.ok) {
            authLimiter.fail(remote);
            telemetry.authRefused(result.reason, {
              transport: "mqtt",
              clientId: client.id,
              // A username may be a ThingsBoard token: name it only when it is a known device id.
              username: username && credentials.isProvisioned(username) ? username : undefined,
            });
            const error = new Error(result.reason) as Error & { returnCode: number };
            error.returnCode = result.returnCode;
            return done(error as any, false);
          }
          identities.set(client, result.identity);
          connections.set(client, `${boot}-${++connCounter}`);
          done(null, true);
        },
        authorizePublish,
        authorizeSubscribe,
        authorizeForward,
      });
      await broker.listen(); // makes the persistence
      bounds.wrap((broker as unknown as { persistence: unknown }).persistence);
      broker.on("client", (client: Client) => {
        if (!client.clean) bounds.online(client.id);
      });
      broker.on("clientDisconnect", (client: Client) => {
        if (client.clean) bounds.cleaned(client.id);
        else bounds.offline(client.id);
      });
      expiryTimer = setInterval(
        () => void bounds.expire(),
        Math.max(1_000, Math.min(60_000, limits.sessionExpiry / 4)),
      );
      (expiryTimer as { unref?: () => void }).unref?.();
      broker.on("clientError", (client: Client, error: Error) => {
        log.debug("mqtt.client_error", { clientId: client?.id, error: error.message });
      });
      broker.on("connectionError", (client: Client, error: Error) => {
        log.debug("mqtt.connection_error", { clientId: client?.id, error: error.message });
      });
      if (deps.commands) {
        broker.on("subscribe", (subscriptions: Subscription[], client: Client) => {
          listenersChanged(
            client,
            subscriptions.filter((s) => (s.qos as number) !== 128).map((s) => s.topic),
          );
        });
        // A resumed session's subscriptions come back without a SUBSCRIBE.
        broker.on("clientReady", (client: Client) => {
          if (!client.clean) listenersChanged(client, Object.keys(clientSubscriptions(client)));
        });
      }
      const srv = createServer((socket) => {
        if (!bounds.admit(socket, sockets.size)) return;
        sockets.add(socket);
        socket.on("close", () => sockets.delete(socket));
        broker.handle(socket);
      });
      await new Promise<void>((resolve, reject) => {
        srv.once("error", reject);
        srv.listen(port, host, () => {
          srv.off("error", reject);
          resolve();
        });
      }).catch((error: NodeJS.ErrnoException) => {
        broker.close();
        const why = error.code === "EADDRINUSE" ? "the address is in use" : error.message;
        throw new Error(
          `MQTT broker cannot listen on ${options.listen}: ${why} (set mqtt.broker.listen, or mqtt.broker: false)`,
          { cause: error },
        );
      });
      srv.on("error", (error) => log.error("mqtt.broker.error", { error: error.message }));
      const bound = srv.address();
      address = { host, port: typeof bound === "object" && bound ? bound.port : port };
      aedes = broker;
      server = srv;
      const shown = host.includes(":") ? `[${host}]` : host;
      log.info("mqtt.broker.started", { listen: `${shown}:${address.port}`, auth: options.auth });
      if (options.auth === "none" && !isLoopback(host)) {
        log.warn("mqtt.broker.open", {
          listen: `${shown}:${address.port}`,
          note: 'auth "none" on a non-loopback address: anyone on the network can publish as any device; ' +
            'set mqtt.broker.auth to "token"',
        });
      }
      return address;
    },
    publish(topic, payload, publishOptions = {}) {
      const broker = aedes;
      if (!broker || broker.closed) return Promise.resolve();
      return new Promise((resolve) => {
        broker.publish({
          cmd: "publish",
          topic,
          payload: typeof payload === "string" ? Buffer.from(payload) : Buffer.from(payload),
          qos: publishOptions.qos ?? 0,
          retain: publishOptions.retain ?? false,
          dup: false,
        }, (error) => {
          if (error) log.warn("mqtt.publish_failed", { topic, error: error.message });
          resolve();
        });
      });
    },
    deliverCommand(command) {
      const broker = aedes;
      if (!broker || broker.closed) return undefined;
      const topic = commandTopic(command.device, command.id);
      let plain = false;
      let rpc = false;
      for (
        const client of Object.values((broker as unknown as { clients: Record<string, Client> }).clients)
      ) {
        if (!client.connected || client.closed) continue;
        const filters = Object.keys(clientSubscriptions(client));
        if (!plain && filters.some((f) => listensForCommand(f, command.device, command.id))) plain = true;
        if (!rpc && filters.some((f) => listensForRpc(f, command.id))) {
          const identity = identities.get(client);
          rpc = identity !== undefined && thingsBoardDevice(identity) === command.device;
        }
        if (plain && rpc) break;
      }
      const send = (to: string, payload: Buffer) =>
        broker.publish({ cmd: "publish", topic: to, payload, qos: 1, retain: false, dup: false }, (error) => {
          if (error) log.warn("mqtt.publish_failed", { topic: to, error: error.message });
        });
      if (plain) send(topic, Buffer.from(commandPayload(command)));
      if (rpc) {
        // aedes forwards this very Buffer, which is how authorizeForward knows whose it is.
        const payload = Buffer.from(rpcRequestPayload(command));
        rpcFor.set(payload, command.device);
        send(RPC_REQUEST_PREFIX + command.id, payload);
      }
      return plain ? "mqtt" : rpc ? "thingsboard" : undefined;
    },
    status() {
      const shown = address
        ? `${address.host.includes(":") ? `[${address.host}]` : address.host}:${address.port}`
        : null;
      return { listen: shown, auth: options.auth, clients: aedes?.connectedClients ?? 0 };
    },
    stop() {
      stopping ??= (async () => {
        if (expiryTimer) clearInterval(expiryTimer);
        const srv = server;
        const broker = aedes;
        if (!srv || !broker) return;
        const closed = new Promise<void>((resolve) => srv.close(() => resolve()));
        // Batches in flight finish and are acknowledged (bounded), then every client goes.
        await intake.drain(2_000);
        await new Promise<void>((resolve) => broker.close(() => resolve()));
        for (const socket of sockets) socket.destroy();
        await closed;
        log.info("mqtt.broker.stopped", {});
      })();
      return stopping;
    },
  };
}

/** Whether a listen host is reachable only from this machine. */
function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\./.test(host);
}
