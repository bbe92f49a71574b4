/**
 * Parts of the embedded broker (broker.ts), each with one job: signing clients in (with the
 * failed-authentication limit), batching a session's publishes into the intake and calling back
 * (PUBACK) only after the commit, and publishing a command to the connections that listen for it.
 */
import type { Aedes, Client, PublishPacket } from "aedes";
import { Buffer } from "node:buffer";
import { AUTH_MAX_FAILURES, type AuthLimiter } from "../../core/auth_limiter.ts";
import { RefusalLog } from "../../core/refusal_log.ts";
import type { Logger, Telemetry } from "../../telemetry/mod.ts";
import { authenticate, type Credentials, type Identity, thingsBoardDevice } from "./auth.ts";
import {
  commandPayload,
  commandTopic,
  listensForCommand,
  listensForRpc,
  type OutgoingCommand,
  parseResponseTopic,
  parseRpcResponseTopic,
  RPC_REQUEST_PREFIX,
  rpcRequestPayload,
  topicMatches,
} from "./commands.ts";
import { routeDeviceTopic, THINGSBOARD_PREFIX, thingsBoardKind } from "./topics.ts";
import {
  GATEWAY_PREFIX,
  GATEWAY_RPC_TOPIC,
  type GatewayOp,
  gatewayRpcPayload,
  gatewayTopic,
  parseDeviceAttributeRequestTopic,
} from "./gateway.ts";
import { createServer, type Server, type Socket } from "node:net";
import type { PublishKey } from "./dedupe.ts";
import type { InboundPublish, Intake } from "./intake.ts";

/** A client's current subscriptions (filter → options), as aedes keeps them. */
export function clientSubscriptions(client: Client): Record<string, unknown> {
  return (client as unknown as { subscriptions?: Record<string, unknown> }).subscriptions ?? {};
}

/** aedes' `authenticate` option (its type is not exported). */
type AuthenticateHandler = NonNullable<NonNullable<ConstructorParameters<typeof Aedes>[0]>["authenticate"]>;

/** aedes' `authenticate`: the broker's auth mode, and an address refused for a minute after too many failures. */
export function authenticator(o: {
  auth: "none" | "token";
  credentials: Credentials;
  telemetry: Telemetry;
  limiter: AuthLimiter;
  onAuthenticated: (client: Client, identity: Identity) => void;
}): AuthenticateHandler {
  const { telemetry, credentials } = o;
  const limitedLog = new RefusalLog();
  return (client, username, password, done) => {
    const remote = (client.conn as { remoteAddress?: string } | undefined)?.remoteAddress ?? "unknown";
    if (o.auth === "token" && o.limiter.blocked(remote)) {
      // Refused without checking, for the rest of the minute (SPEC §14).
      const n = limitedLog.note();
      if (n !== undefined) {
        telemetry.log.warn("auth.limited", {
          transport: "mqtt",
          address: remote,
          refused: n,
          rule: `${AUTH_MAX_FAILURES} failed authentications in a minute`,
        });
      }
      const error = new Error("too many failed authentications") as Error & { returnCode: number };
      error.returnCode = 5;
      // deno-lint-ignore no-explicit-any
      return done(error as any, false);
    }
    const result = authenticate(o.auth, username, password?.toString("utf8"), credentials);
    if (!result.ok) {
      o.limiter.fail(remote);
      telemetry.authRefused(result.reason, {
        transport: "mqtt",
        clientId: client.id,
        // A username may be a ThingsBoard token: name it only when it is a known device id.
        username: username && credentials.isProvisioned(username) ? username : undefined,
      });
      const error = new Error(result.reason) as Error & { returnCode: number };
      error.returnCode = result.returnCode;
      // deno-lint-ignore no-explicit-any
      return done(error as any, false);
    }
    o.onAuthenticated(client, result.identity);
    done(null, true);
  };
}

/** A device publish waiting for its commit, and aedes' callback that writes its PUBACK. */
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

/**
 * Batches each client's publishes (every publish of the chunk aedes is parsing joins one batch),
 * submits the batches of a client in order, and calls back only after the commit. Payloads that
 * were not stored (bad input, resends) go into `unrelayed`: aedes does not relay them.
 */
export function publishQueue(
  intake: Intake,
  unrelayed: WeakSet<object>,
): (client: Client, item: Waiting) => void {
  const queues = new WeakMap<Client, SessionQueue>();

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

  return (client, item) => {
    let q = queues.get(client);
    if (!q) {
      q = { items: [], scheduled: false, tail: Promise.resolve() };
      queues.set(client, q);
    }
    q.items.push(item);
    if (q.scheduled) return;
    q.scheduled = true;
    const queue = q;
    setImmediate(() => {
      queue.scheduled = false;
      const items = queue.items;
      queue.items = [];
      queue.tail = queue.tail.then(() => settle(client, items));
    });
  };
}

/**
 * Publishes a command (QoS 1) to the connections that listen for it now: on
 * `devices/{device}/commands/{id}`, and on `v1/devices/me/rpc/request/{id}` to the device's
 * ThingsBoard-style connections; when the device itself does not listen and is a gateway's child,
 * on `v1/gateway/rpc` to that gateway. Says where it went, or undefined when nothing listens.
 */
export function deliverToDevices(
  broker: Aedes,
  command: OutgoingCommand,
  o: {
    identities: WeakMap<Client, Identity>;
    /** Payloads forwarded only to some connections (see broker.ts `authorizeForward`). */
    directed: WeakMap<object, (client: Client) => boolean>;
    log: Logger;
    /** The gateway a device is connected through now, if any. */
    gatewayOf?: (device: string) => string | undefined;
  },
): string | undefined {
  const topic = commandTopic(command.device, command.id);
  let plain = false;
  let rpc = false;
  for (const client of Object.values((broker as unknown as { clients: Record<string, Client> }).clients)) {
    if (!client.connected || client.closed) continue;
    const filters = Object.keys(clientSubscriptions(client));
    if (!plain && filters.some((f) => listensForCommand(f, command.device, command.id))) plain = true;
    if (!rpc && filters.some((f) => listensForRpc(f, command.id))) {
      const identity = o.identities.get(client);
      rpc = identity !== undefined && thingsBoardDevice(identity) === command.device;
    }
    if (plain && rpc) break;
  }
  const send = (to: string, payload: Buffer) =>
    broker.publish({ cmd: "publish", topic: to, payload, qos: 1, retain: false, dup: false }, (error) => {
      if (error) o.log.warn("mqtt.publish_failed", { topic: to, error: error.message });
    });
  if (!plain && !rpc) {
    // The device itself does not listen: its gateway, if it is a gateway's child now.
    const gateway = o.gatewayOf?.(command.device);
    return gateway === undefined ? undefined : deliverToGateway(broker, command, gateway, o);
  }
  if (plain) send(topic, Buffer.from(commandPayload(command)));
  if (rpc) {
    // aedes forwards this very Buffer, which is how authorizeForward knows whose it is.
    const payload = Buffer.from(rpcRequestPayload(command));
    o.directed.set(payload, (client) => {
      const identity = o.identities.get(client);
      return identity !== undefined && thingsBoardDevice(identity) === command.device;
    });
    send(RPC_REQUEST_PREFIX + command.id, payload);
  }
  return plain ? "mqtt" : rpc ? "thingsboard" : undefined;
}

/**
 * A command to a gateway's child, on `v1/gateway/rpc` to the gateway's connections that
 * subscribed to it; undefined when none did (the command waits).
 */
function deliverToGateway(
  broker: Aedes,
  command: OutgoingCommand,
  gateway: string,
  o: {
    identities: WeakMap<Client, Identity>;
    directed: WeakMap<object, (client: Client) => boolean>;
    log: Logger;
  },
): string | undefined {
  const isGateway = (client: Client) => {
    const identity = o.identities.get(client);
    return identity !== undefined && thingsBoardDevice(identity) === gateway;
  };
  let listens = false;
  for (const client of Object.values((broker as unknown as { clients: Record<string, Client> }).clients)) {
    if (!client.connected || client.closed || !isGateway(client)) continue;
    if (Object.keys(clientSubscriptions(client)).some((f) => topicMatches(f, GATEWAY_RPC_TOPIC))) {
      listens = true;
      break;
    }
  }
  if (!listens) return undefined;
  const payload = Buffer.from(gatewayRpcPayload(command));
  o.directed.set(payload, isGateway);
  broker.publish(
    { cmd: "publish", topic: GATEWAY_RPC_TOPIC, payload, qos: 1, retain: false, dup: false },
    (error) => {
      if (error) o.log.warn("mqtt.publish_failed", { topic: GATEWAY_RPC_TOPIC, error: error.message });
    },
  );
  return `gateway:${gateway}`;
}

/** What a publish is: device data to store, a device's answer to a command, or plain MQTT. */
export type PublishRoute =
  | { type: "store"; target: InboundPublish["target"] }
  | { type: "answer"; device: string; id: string; via: "mqtt" | "thingsboard" }
  /** A ThingsBoard gateway's operation (connect, disconnect, attribute request, command answer). */
  | { type: "gateway"; gateway: string; op: GatewayOp }
  /** A ThingsBoard device's attribute request `v1/devices/me/attributes/request/{n}`. */
  | { type: "attributes-request"; device: string; n: string }
  | { type: "ignore" };

export function routePublish(identity: Identity, topic: string, takesAnswers: boolean): PublishRoute {
  if (topic.startsWith(GATEWAY_PREFIX)) {
    const route = gatewayTopic(topic);
    const gateway = thingsBoardDevice(identity);
    if (route === undefined) return { type: "ignore" };
    if (gateway === undefined) {
      if (route.type === "op") return { type: "ignore" };
      return {
        type: "store",
        target: {
          type: "invalid",
          reason: "no-device-identity",
          message: "The gateway API needs the gateway's device token as the MQTT username",
        },
      };
    }
    if (route.type === "data") {
      return { type: "store", target: { type: "gateway", gateway, kind: route.kind } };
    }
    return { type: "gateway", gateway, op: route.op };
  }
  const tbKind = thingsBoardKind(topic);
  if (tbKind !== undefined) {
    const device = thingsBoardDevice(identity);
    return {
      type: "store",
      target: device === undefined
        ? {
          type: "invalid",
          reason: "no-device-identity",
          message: "A ThingsBoard-style publish needs a device token as the MQTT username",
        }
        : { type: "device", device, kind: tbKind },
    };
  }
  if (topic.startsWith(THINGSBOARD_PREFIX)) {
    const n = parseDeviceAttributeRequestTopic(topic);
    if (n !== undefined) {
      const device = thingsBoardDevice(identity);
      return device === undefined ? { type: "ignore" } : { type: "attributes-request", device, n };
    }
    // RPC answers go to the commands; other ThingsBoard API topics are not served.
    const id = takesAnswers ? parseRpcResponseTopic(topic) : undefined;
    const device = id ? thingsBoardDevice(identity) : undefined;
    return id && device ? { type: "answer", device, id, via: "thingsboard" } : { type: "ignore" };
  }
  const route = routeDeviceTopic(topic);
  if (route.type !== "bus") return { type: "store", target: route };
  const response = takesAnswers ? parseResponseTopic(topic) : undefined;
  return response
    ? { type: "answer", device: response.device, id: response.id, via: "mqtt" }
    : { type: "ignore" };
}

/** Listens for MQTT connections and hands each admitted one to aedes; a clear error when it cannot. */
export async function listen(
  broker: Aedes,
  where: { host: string; port: number; listen: string },
  admit: (socket: Socket) => boolean,
): Promise<Server> {
  const srv = createServer((socket) => {
    if (admit(socket)) broker.handle(socket);
  });
  await new Promise<void>((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(where.port, where.host, () => {
      srv.off("error", reject);
      resolve();
    });
  }).catch((error: NodeJS.ErrnoException) => {
    broker.close();
    const why = error.code === "EADDRINUSE" ? "the address is in use" : error.message;
    throw new Error(
      `MQTT broker cannot listen on ${where.listen}: ${why} (set mqtt.broker.listen, or mqtt.broker: false)`,
      { cause: error },
    );
  });
  return srv;
}
