/**
 * Who an MQTT connection is, and what it may publish and subscribe to on the embedded broker.
 * Pure decisions: the token checks are passed in.
 *
 * With `auth: "token"`:
 * - password = the API token (any username): a local-bus client, allowed everything but `$SYS/`;
 * - username = a device id, password = its token: that device;
 * - username = a device token, no password (ThingsBoard style): the device owning the token.
 * A device publishes only under `devices/{id}/…` (and `v1/devices/me/…`, `v1/gateway/…`) and
 * subscribes only to `devices/{id}/commands/…` (and `v1/devices/me/…`, `v1/gateway/…`, which
 * outpost never relays between devices).
 *
 * With `auth: "none"` everyone is allowed everything but `$SYS/`; a ThingsBoard-style username is
 * still resolved to a device (a token, else the username itself when it is a valid device id).
 */
import { DEVICE_ID } from "../../ingest/mod.ts";
import { GATEWAY_PREFIX, THINGSBOARD_PREFIX } from "./topics.ts";

export type Identity =
  /** `auth: "none"`: anyone; `username` is kept for the ThingsBoard API. */
  | { type: "anonymous"; device?: string }
  /** A local-bus client holding the API token. */
  | { type: "service" }
  | { type: "device"; device: string; via: "credentials" | "thingsboard" };

export interface Credentials {
  /** The API token, compared in constant time. */
  isApiToken(candidate: string): boolean;
  /** True when `token` is the device's own token. */
  verifyDevice(id: string, token: string): boolean;
  /** The device a token belongs to. */
  deviceByToken(token: string): string | undefined;
  /** True for a provisioned device id (which, unlike a token, may appear in logs). */
  isProvisioned(id: string): boolean;
}

export type AuthResult =
  | { ok: true; identity: Identity }
  /** `returnCode`: MQTT 3.1.1 CONNACK 4 (bad user name or password) or 5 (not authorized). */
  | { ok: false; reason: "missing-credentials" | "wrong-credentials"; returnCode: 4 | 5 };

export function authenticate(
  mode: "none" | "token",
  username: string | undefined,
  password: string | undefined,
  credentials: Credentials,
): AuthResult {
  const user = username ?? "";
  const pass = password ?? "";
  if (mode === "none") {
    const device = user === ""
      ? undefined
      : credentials.deviceByToken(user) ?? (DEVICE_ID.test(user) ? user : undefined);
    return { ok: true, identity: { type: "anonymous", device } };
  }
  if (user === "" && pass === "") return { ok: false, reason: "missing-credentials", returnCode: 5 };
  if (pass !== "" && credentials.isApiToken(pass)) return { ok: true, identity: { type: "service" } };
  if (pass !== "" && DEVICE_ID.test(user) && credentials.verifyDevice(user, pass)) {
    return { ok: true, identity: { type: "device", device: user, via: "credentials" } };
  }
  if (pass === "" && user !== "") {
    const device = credentials.deviceByToken(user);
    if (device !== undefined) return { ok: true, identity: { type: "device", device, via: "thingsboard" } };
  }
  return { ok: false, reason: "wrong-credentials", returnCode: 4 };
}

/** The device a ThingsBoard `v1/devices/me/…` publish belongs to, if the connection has one. */
export function thingsBoardDevice(identity: Identity): string | undefined {
  if (identity.type === "device") return identity.device;
  if (identity.type === "anonymous") return identity.device;
  return undefined;
}

export type Decision = { ok: true } | { ok: false; reason: string };

const RESERVED = "$SYS/";

export function mayPublish(identity: Identity, topic: string): Decision {
  if (topic.startsWith(RESERVED)) return { ok: false, reason: "reserved-topic" };
  if (identity.type !== "device") return { ok: true };
  if (topic.startsWith(THINGSBOARD_PREFIX) || topic.startsWith(GATEWAY_PREFIX)) return { ok: true };
  const own = `devices/${identity.device}/`;
  if (topic.startsWith(own) && topic.length > own.length) return { ok: true };
  return { ok: false, reason: "foreign-topic" };
}

export function maySubscribe(identity: Identity, filter: string): Decision {
  if (identity.type !== "device") return { ok: true };
  if (filter.startsWith(THINGSBOARD_PREFIX) || filter.startsWith(GATEWAY_PREFIX)) return { ok: true };
  const levels = filter.split("/");
  if (
    levels.length >= 3 && levels[0] === "devices" && levels[1] === identity.device && levels[2] === "commands"
  ) {
    return { ok: true };
  }
  return { ok: false, reason: "foreign-subscription" };
}
