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
import { AuthLimiter } from "../../core/auth_limiter.ts";
import { type BrokerLimits, brokerLimits, createBrokerBounds } from "./limits.ts";
import { Aedes } from "aedes";
import type { AedesPublishPacket, Client, PublishPacket, Subscription } from "aedes";
import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import type { Server, Socket } from "node:net";
import type { Telemetry } from "../../telemetry/mod.ts";
import { type Credentials, type Identity, mayPublish, maySubscribe, thingsBoardDevice } from "./auth.ts";
import { type CommandHooks, filterDevice, listensForRpc, type OutgoingCommand } from "./commands.ts";
import { payloadDigest } from "./dedupe.ts";
import type { InboundPublish, Intake } from "./intake.ts";
import { GATEWAY_PREFIX, THINGSBOARD_PREFIX } from "./topics.ts";
import { RefusalLog } from "../../core/refusal_log.ts";
import {
  deviceAttributeResponse,
  GATEWAY_ATTRIBUTES_RESPONSE_TOPIC,
  GATEWAY_RPC_TOPIC,
  gatewayAttributeResponse,
  type GatewayOp,
  parseChildRef,
  parseGatewayAttributeRequest,
  parseGatewayRpcAnswer,
  parseJsonObject,
} from "./gateway.ts";
import { topicMatches } from "./commands.ts";
import { errorMessage } from "../../core/errors.ts";
import { splitHostPort } from "../../core/hostport.ts";
import {
  authenticator,
  clientSubscriptions,
  deliverToDevices,
  listen,
  publishQueue,
  routePublish,
} from "./broker_parts.ts";

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
  /** Connectivity of devices and gateway children (the device registry). */
  devices?: DeviceSessions;
}

/** What the broker tells the device registry, and asks it (src/devices). */
export interface DeviceSessions {
  connected(id: string, transport: string): boolean;
  disconnected(id: string, transport: string): void;
  gatewayOf(id: string): string | undefined;
  childrenOf(gateway: string): string[];
  lastValues(id: string): Record<string, unknown>;
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

export function createEmbeddedBroker(options: BrokerOptions, deps: BrokerDeps): EmbeddedBroker {
  const { telemetry, intake, credentials } = deps;
  const log = telemetry.log;
  const identities = new WeakMap<Client, Identity>();
  const connections = new WeakMap<Client, string>();
  /** Payloads acknowledged but not to be relayed (bad input, resends, command answers). */
  const unrelayed = new WeakSet<object>();
  /** Payloads (ThingsBoard RPC requests, gateway commands, attribute answers) for some connections only. */
  const directed = new WeakMap<object, (client: Client) => boolean>();
  /** Open connections per device identity: the device's MQTT session spans them. */
  const sessions = new Map<string, number>();
  const sessionOf = new WeakMap<Client, string>();
  const gatewayRefused = telemetry.metrics.family("outpost_mqtt_gateway_refused_total");
  const gatewayRefusedLog = new RefusalLog();
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

  const enqueue = publishQueue(intake, unrelayed);
  const clientsGauge = telemetry.metrics.family("outpost_mqtt_clients");
  telemetry.metrics.collectors.push(() => clientsGauge.set(aedes?.connectedClients ?? 0));

  function describe(client: Client | null, identity?: Identity): Record<string, unknown> {
    return {
      transport: "mqtt",
      clientId: client?.id,
      device: identity?.type === "device" ? identity.device : undefined,
    };
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
    const route = routePublish(identity, topic, deps.commands !== undefined);
    if (route.type === "ignore") return done(null);
    if (route.type === "answer") return answer(route.device, route.id, payload, route.via, packet, done);
    if (route.type === "gateway") {
      unrelayed.add(packet.payload as object);
      packet.retain = false;
      gatewayOp(route.gateway, route.op, payload);
      return done(null);
    }
    if (route.type === "attributes-request") {
      unrelayed.add(packet.payload as object);
      packet.retain = false;
      attributesRequest(route.device, route.n, payload);
      return done(null);
    }
    const target = route.target;
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

  /** Counts a refused gateway operation; logged at most once a minute. */
  function refuseGateway(gateway: string, reason: string, message: string): void {
    gatewayRefused.add(1, `{reason="${reason}"}`);
    const n = gatewayRefusedLog.note();
    if (n !== undefined) log.warn("mqtt.gateway_refused", { gateway, reason, detail: message, refused: n });
  }

  /**
   * Publishes to the connections of one device identity (a gateway or device may use several,
   * e.g. one to publish and one to listen); aedes relays to subscribers, authorizeForward picks.
   */
  function publishTo(device: string, topic: string, text: string): void {
    const broker = aedes;
    if (!broker || broker.closed) return;
    const payload = Buffer.from(text);
    directed.set(payload, (c) => {
      const identity = identities.get(c);
      return identity !== undefined && thingsBoardDevice(identity) === device;
    });
    broker.publish({ cmd: "publish", topic, payload, qos: 1, retain: false, dup: false }, (error) => {
      if (error) log.warn("mqtt.publish_failed", { topic, error: error.message });
    });
  }

  /** A gateway's connect, disconnect, attribute request or command answer: acknowledged at once. */
  function gatewayOp(gateway: string, op: GatewayOp, payload: Uint8Array): void {
    const parsed = parseJsonObject(payload, 64 * 1024);
    if (!parsed.ok) return refuseGateway(gateway, parsed.reason, `${op}: ${parsed.message}`);
    const via = `gateway:${gateway}`;
    if (op === "connect" || op === "disconnect") {
      const ref = parseChildRef(parsed.value);
      if (!ref.ok) return refuseGateway(gateway, "invalid-request", `${op}: ${ref.message}`);
      if (op === "disconnect") return deps.devices?.disconnected(ref.device, via);
      if (deps.devices && !deps.devices.connected(ref.device, via)) {
        return refuseGateway(gateway, "device-limit", `connect: device "${ref.device}" over devices.max`);
      }
      deps.commands?.listening(ref.device);
      return;
    }
    if (op === "attributes-request") {
      const r = parseGatewayAttributeRequest(parsed.value);
      if (!r.ok) return refuseGateway(gateway, "invalid-request", `attributes request: ${r.message}`);
      // As ThingsBoard's server does: a child the gateway speaks for is connected through it.
      deps.devices?.connected(r.request.device, via);
      const values = deps.devices?.lastValues(r.request.device) ?? {};
      return publishTo(
        gateway,
        GATEWAY_ATTRIBUTES_RESPONSE_TOPIC,
        gatewayAttributeResponse(r.request, values),
      );
    }
    // op === "rpc": the gateway's answer for a child.
    const a = parseGatewayRpcAnswer(parsed.value);
    if (!a.ok) return refuseGateway(gateway, "invalid-request", `rpc answer: ${a.message}`);
    deps.devices?.connected(a.device, via);
    if (!deps.commands) return;
    try {
      deps.commands.answer(a.device, a.id, Buffer.from(JSON.stringify(a.data)), via);
    } catch (error) {
      log.error("mqtt.command_answer_failed", { device: a.device, id: a.id, error: errorMessage(error) });
    }
  }

  /** A ThingsBoard device's attribute request, answered from the last values held for it. */
  function attributesRequest(device: string, n: string, payload: Uint8Array): void {
    const parsed = parseJsonObject(payload, 64 * 1024);
    const request = parsed.ok ? parsed.value : {};
    const values = deps.devices?.lastValues(device) ?? {};
    publishTo(
      device,
      `${THINGSBOARD_PREFIX}attributes/response/${n}`,
      deviceAttributeResponse(request, values),
    );
  }

  /** A connection signed in as a device opened: the device's session (and its gateway's) begins. */
  function sessionOpened(client: Client): void {
    const identity = identities.get(client);
    const device = identity ? thingsBoardDevice(identity) : undefined;
    if (device === undefined || !deps.devices || sessionOf.has(client)) return;
    const n = sessions.get(device) ?? 0;
    if (n === 0 && !deps.devices.connected(device, "mqtt")) return;
    sessions.set(device, n + 1);
    sessionOf.set(client, device);
  }

  /** The last connection of a device closed: it goes offline, with the children of its gateway API. */
  function sessionClosed(client: Client): void {
    const device = sessionOf.get(client);
    if (device === undefined) return;
    sessionOf.delete(client);
    const n = (sessions.get(device) ?? 1) - 1;
    if (n > 0) return void sessions.set(device, n);
    sessions.delete(device);
    deps.devices?.disconnected(device, "mqtt");
  }

  /** Tells the commands which devices a client's new filters make listen (waiting ones go out). */
  function listenersChanged(client: Client, filters: readonly string[]): void {
    if (!deps.commands) return;
    for (const filter of filters) {
      const device = filterDevice(filter);
      if (device !== undefined) deps.commands.listening(device);
      else if (topicMatches(filter, GATEWAY_RPC_TOPIC)) {
        const identity = identities.get(client);
        const gateway = identity ? thingsBoardDevice(identity) : undefined;
        if (gateway !== undefined) {
          for (const child of deps.devices?.childrenOf(gateway) ?? []) deps.commands.listening(child);
        }
      } else if (listensForRpc(filter)) {
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
    if (packet.topic.startsWith(THINGSBOARD_PREFIX) || packet.topic.startsWith(GATEWAY_PREFIX)) {
      // Never relayed between devices: only what outpost addressed to this connection.
      return directed.get(packet.payload as object)?.(_client) ? packet : null;
    }
    return packet;
  }

  return {
    async start() {
      const { hostname: host, port } = splitHostPort(options.listen);
      const broker = new Aedes({
        authenticate: authenticator({
          auth: options.auth,
          credentials,
          telemetry,
          limiter: authLimiter,
          onAuthenticated: (client, identity) => {
            identities.set(client, identity);
            connections.set(client, `${boot}-${++connCounter}`);
          },
        }),
        authorizePublish,
        authorizeSubscribe,
        authorizeForward,
      });
      await broker.listen(); // makes the persistence
      bounds.wrap((broker as unknown as { persistence: unknown }).persistence);
      broker.on("client", (client: Client) => {
        if (!client.clean) bounds.online(client.id);
        sessionOpened(client);
      });
      broker.on("clientDisconnect", (client: Client) => {
        if (client.clean) bounds.cleaned(client.id);
        else bounds.offline(client.id);
        sessionClosed(client);
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
      const srv = await listen(broker, { host, port, listen: options.listen }, (socket) => {
        if (!bounds.admit(socket, sockets.size)) return false;
        sockets.add(socket);
        socket.on("close", () => sockets.delete(socket));
        return true;
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
      return deliverToDevices(broker, command, {
        identities,
        directed,
        log,
        gatewayOf: deps.devices && ((device) => deps.devices!.gatewayOf(device)),
      });
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
