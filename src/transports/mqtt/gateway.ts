/**
 * The ThingsBoard gateway MQTT API (SPEC §10), as ThingsBoard's server reads it: pure parsing of
 * what a gateway device publishes on `v1/gateway/…`, and the payloads outpost sends back. No I/O.
 *
 * - `v1/gateway/telemetry` `{"A": [{"ts": ms, "values": {…}}, {"k": v}, …], "B": […]}`: each
 *   child's value is an array of timestamped or bare entries;
 * - `v1/gateway/attributes` `{"A": {…}}`;
 * - `v1/gateway/connect` `{"device": "A", "type"?}`, `v1/gateway/disconnect` `{"device": "A"}`;
 * - `v1/gateway/attributes/request` `{"id", "device", "client": true, "key"|"keys"}`, answered on
 *   `v1/gateway/attributes/response` with `{"id", "device", "value"}` (one attribute found) or
 *   `"values"` (several);
 * - commands to a child on `v1/gateway/rpc` `{"device", "data": {"id", "method", "params"}}`,
 *   answered on `v1/gateway/rpc` with `{"device", "id", "data"}`.
 *
 * A child that cannot be taken (an invalid id, a value of the wrong shape, `devices.max`) is left
 * out and counted; the others in the same publish are stored.
 */
import { depthOverBytes, MAX_DEPTH } from "../../core/json_depth.ts";
import { errorMessage } from "../../core/errors.ts";
import type { JsonObject, Message } from "../../core/message.ts";
import { DEVICE_ID, toMessages } from "../../ingest/mod.ts";
import type { OutgoingCommand } from "./commands.ts";

export { GATEWAY_PREFIX } from "./topics.ts";
export const GATEWAY_RPC_TOPIC = "v1/gateway/rpc";
export const GATEWAY_ATTRIBUTES_RESPONSE_TOPIC = "v1/gateway/attributes/response";

/** Per-record overhead the outbox counts (as in ingest/parse.ts). */
const RECORD_OVERHEAD = 48;
/** Problems named in one dead letter, at most. */
const MAX_PROBLEMS = 5;

export type GatewayOp = "connect" | "disconnect" | "attributes-request" | "rpc";

/** What a `v1/gateway/…` topic is: data to store, an operation, or not part of the API. */
export function gatewayTopic(
  topic: string,
): { type: "data"; kind: "telemetry" | "attributes" } | { type: "op"; op: GatewayOp } | undefined {
  switch (topic) {
    case "v1/gateway/telemetry":
      return { type: "data", kind: "telemetry" };
    case "v1/gateway/attributes":
      return { type: "data", kind: "attributes" };
    case "v1/gateway/connect":
      return { type: "op", op: "connect" };
    case "v1/gateway/disconnect":
      return { type: "op", op: "disconnect" };
    case "v1/gateway/attributes/request":
      return { type: "op", op: "attributes-request" };
    case GATEWAY_RPC_TOPIC:
      return { type: "op", op: "rpc" };
  }
  return undefined;
}

export interface GatewayParseContext {
  gateway: string;
  kind: "telemetry" | "attributes";
  topic: string;
  now: number;
  maxBytes: number;
  maxBatchBytes?: number;
  /** Admits a child under `devices.max`: undefined when it may send, else why not. */
  admit?: (device: string) => string | undefined;
}

export type GatewayParseResult =
  | {
    ok: true;
    messages: Message[];
    /** Children left out, and why (the first few). */
    refused: number;
    problems: string[];
    /** Children refused because of `devices.max`. */
    overLimit: number;
  }
  | {
    ok: false;
    reason: "too-large" | "too-deep" | "invalid-json" | "not-object" | "batch-too-large";
    message: string;
  };

const decoder = new TextDecoder("utf-8", { fatal: true });

/** Parses JSON bytes into an object, or says why not (the same checks as device payloads). */
export function parseJsonObject(
  raw: Uint8Array,
  maxBytes: number,
):
  | { ok: true; value: JsonObject }
  | { ok: false; reason: "too-large" | "too-deep" | "invalid-json" | "not-object"; message: string } {
  if (raw.byteLength > maxBytes) {
    return {
      ok: false,
      reason: "too-large",
      message: `Payload of ${raw.byteLength} bytes is over the ${maxBytes}-byte limit`,
    };
  }
  const deep = depthOverBytes(raw);
  if (deep >= 0) {
    return {
      ok: false,
      reason: "too-deep",
      message: `Payload is nested deeper than ${MAX_DEPTH} levels (at byte ${deep})`,
    };
  }
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(raw));
  } catch (error) {
    return {
      ok: false,
      reason: "invalid-json",
      message: `Payload is not valid JSON: ${errorMessage(error)}`,
    };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { ok: false, reason: "not-object", message: "Payload must be a JSON object keyed by device name" };
  }
  return { ok: true, value: value as JsonObject };
}

/** A gateway's telemetry or attributes publish → the messages of its children. */
export function parseGatewayData(raw: Uint8Array, ctx: GatewayParseContext): GatewayParseResult {
  const parsed = parseJsonObject(raw, ctx.maxBytes);
  if (!parsed.ok) return parsed;
  const messages: Message[] = [];
  const problems: string[] = [];
  let refused = 0;
  let overLimit = 0;
  const source = `gateway:${ctx.gateway}`;
  const note = (problem: string) => {
    refused++;
    if (problems.length < MAX_PROBLEMS) problems.push(problem);
  };
  const children: [string, Message[]][] = [];
  let need = raw.byteLength;
  for (const device in parsed.value) {
    const value = parsed.value[device];
    if (!DEVICE_ID.test(device)) {
      note(`/${pointer(device.slice(0, 64))}: device name is not 1-128 of A-Z a-z 0-9 . _ : -`);
      continue;
    }
    let out: Message[];
    if (ctx.kind === "telemetry") {
      if (!Array.isArray(value)) {
        note(`/${pointer(device)}: must be an array of {"ts", "values"} or key-value entries`);
        continue;
      }
      if (value.length === 0) continue;
      const r = toMessages(value, {
        device,
        kind: "telemetry",
        source,
        topic: ctx.topic,
        now: ctx.now,
        maxBytes: ctx.maxBytes,
      });
      if (!r.ok) {
        note(`/${pointer(device)}: ${r.message}`);
        continue;
      }
      out = r.messages;
    } else {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        note(`/${pointer(device)}: must be an object of attributes`);
        continue;
      }
      out = [{
        device,
        kind: "attributes",
        ts: ctx.now,
        payload: value as JsonObject,
        source,
        topic: ctx.topic,
      }];
    }
    need += out.length * (RECORD_OVERHEAD + device.length + ctx.topic.length);
    children.push([device, out]);
  }
  if (ctx.maxBatchBytes !== undefined && need > ctx.maxBatchBytes) {
    return {
      ok: false,
      reason: "batch-too-large",
      message:
        `Payload needs about ${need} bytes, more than the whole outbox (outbox.maxBytes ${ctx.maxBatchBytes})`,
    };
  }
  // Last: only children whose data would be stored take a place in the registry.
  for (const [device, out] of children) {
    const no = ctx.admit?.(device);
    if (no !== undefined) {
      overLimit++;
      note(`/${pointer(device)}: ${no}`);
      continue;
    }
    for (const m of out) messages.push(m);
  }
  return { ok: true, messages, refused, problems, overLimit };
}

/** `v1/gateway/connect` and `v1/gateway/disconnect`: the child's id, or why not. */
export function parseChildRef(
  value: JsonObject,
): { ok: true; device: string } | { ok: false; message: string } {
  const device = value.device;
  if (typeof device !== "string" || !DEVICE_ID.test(device)) {
    return { ok: false, message: "/device: must be a device name, 1-128 of A-Z a-z 0-9 . _ : -" };
  }
  return { ok: true, device };
}

/** A gateway's attribute request. */
export interface GatewayAttributeRequest {
  id: unknown;
  device: string;
  client: boolean;
  /** One key (`key`) or several (`keys`). */
  key?: string;
  keys?: string[];
}

export function parseGatewayAttributeRequest(
  value: JsonObject,
): { ok: true; request: GatewayAttributeRequest } | { ok: false; message: string } {
  const ref = parseChildRef(value);
  if (!ref.ok) return ref;
  if (value.id === undefined || (typeof value.id !== "number" && typeof value.id !== "string")) {
    return { ok: false, message: "/id: must be a number or a string" };
  }
  const request: GatewayAttributeRequest = {
    id: value.id,
    device: ref.device,
    client: value.client !== false,
  };
  if (typeof value.key === "string") request.key = value.key;
  else if (Array.isArray(value.keys) && value.keys.every((k) => typeof k === "string")) {
    request.keys = value.keys as string[];
  } else return { ok: false, message: '/key: give "key" (a string) or "keys" (an array of strings)' };
  return { ok: true, request };
}

/**
 * The answer to an attribute request, from the last values held for the child, shaped as
 * ThingsBoard's server shapes it: one attribute found is `"value"`, several are `"values"`
 * (whether the request said `key` or `keys`), none leaves both out.
 */
export function gatewayAttributeResponse(
  request: GatewayAttributeRequest,
  values: Record<string, unknown>,
): string {
  // Shared attributes live on the server side of ThingsBoard; outpost holds none.
  const held = request.client ? values : {};
  const found: [string, unknown][] = [];
  for (const k of request.key !== undefined ? [request.key] : request.keys ?? []) {
    if (Object.hasOwn(held, k)) found.push([k, held[k]]);
  }
  const out: Record<string, unknown> = { id: request.id, device: request.device };
  if (found.length === 1) out.value = found[0][1];
  else if (found.length > 1) out.values = Object.fromEntries(found);
  return JSON.stringify(out);
}

/** A gateway's answer to a command: the child, the command id and the data. */
export function parseGatewayRpcAnswer(
  value: JsonObject,
): { ok: true; device: string; id: string; data: unknown } | { ok: false; message: string } {
  const ref = parseChildRef(value);
  if (!ref.ok) return ref;
  const id = value.id;
  if ((typeof id !== "string" || id === "") && typeof id !== "number") {
    return { ok: false, message: "/id: must be the command's id" };
  }
  return { ok: true, device: ref.device, id: String(id), data: value.data ?? null };
}

/** A command to a child, as the gateway receives it on `v1/gateway/rpc`. */
export function gatewayRpcPayload(command: OutgoingCommand): string {
  return JSON.stringify({
    device: command.device,
    data: { id: command.id, method: command.method, params: command.params ?? null },
  });
}

/** `v1/devices/me/attributes/request/{n}` → n. */
export function parseDeviceAttributeRequestTopic(topic: string): string | undefined {
  const prefix = "v1/devices/me/attributes/request/";
  if (!topic.startsWith(prefix)) return undefined;
  const n = topic.slice(prefix.length);
  return /^[A-Za-z0-9._-]{1,64}$/.test(n) ? n : undefined;
}

/** The answer to a device's attribute request `{"clientKeys": "a,b", "sharedKeys"?}`. */
export function deviceAttributeResponse(request: JsonObject, values: Record<string, unknown>): string {
  const client: Record<string, unknown> = {};
  const keys = typeof request.clientKeys === "string"
    ? request.clientKeys.split(",").map((k) => k.trim()).filter((k) => k !== "")
    : undefined;
  if (keys === undefined && request.sharedKeys === undefined) Object.assign(client, values);
  for (const k of keys ?? []) if (Object.hasOwn(values, k)) client[k] = values[k];
  return JSON.stringify({ client, shared: {} });
}

function pointer(key: string): string {
  return key.replace(/~/g, "~0").replace(/\//g, "~1");
}
