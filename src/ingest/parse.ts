/**
 * Turns a device's raw payload into `Message`s (SPEC §4): a JSON object is one message, a JSON
 * array of objects is a batch, an object with a numeric `ts` (ms) and an object `values` is one
 * sample at that time. Anything else is refused with a reason, never thrown.
 */
import type { IngestKind, JsonObject, Message } from "../core/message.ts";

export type RejectReason = "invalid-json" | "not-object" | "too-large" | "empty";

export type ParseResult =
  | { ok: true; messages: Message[] }
  | { ok: false; reason: RejectReason; message: string };

export interface ParseContext {
  device: string;
  kind: IngestKind;
  source: string;
  topic?: string;
  /** Arrival time in ms, used when a sample carries no `ts`. */
  now: number;
  maxBytes: number;
}

const decoder = new TextDecoder("utf-8", { fatal: true });

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Parses bytes (or text) into messages; size is checked before anything is decoded. */
export function parsePayload(raw: Uint8Array | string, ctx: ParseContext): ParseResult {
  const size = typeof raw === "string" ? raw.length : raw.byteLength;
  if (size > ctx.maxBytes) {
    return {
      ok: false,
      reason: "too-large",
      message: `Payload of ${size} bytes is over the ${ctx.maxBytes}-byte limit`,
    };
  }
  let text: string;
  try {
    text = typeof raw === "string" ? raw : decoder.decode(raw);
  } catch {
    return { ok: false, reason: "invalid-json", message: "Payload is not valid UTF-8" };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return {
      ok: false,
      reason: "invalid-json",
      message: `Payload is not valid JSON: ${(error as Error).message}`,
    };
  }
  return toMessages(value, ctx);
}

/** Turns an already-parsed JSON value into messages. */
export function toMessages(value: unknown, ctx: ParseContext): ParseResult {
  if (Array.isArray(value)) {
    if (value.length === 0) return { ok: false, reason: "empty", message: "Payload is an empty array" };
    const messages: Message[] = new Array(value.length);
    for (let i = 0; i < value.length; i++) {
      const item = value[i];
      if (!isObject(item)) {
        return {
          ok: false,
          reason: "not-object",
          message: `Payload item /${i} is ${describe(item)}, expected a JSON object`,
        };
      }
      messages[i] = one(item, ctx);
    }
    return { ok: true, messages };
  }
  if (!isObject(value)) {
    return {
      ok: false,
      reason: "not-object",
      message: `Payload is ${describe(value)}, expected a JSON object or an array of objects`,
    };
  }
  return { ok: true, messages: [one(value, ctx)] };
}

function one(obj: JsonObject, ctx: ParseContext): Message {
  const ts = obj.ts;
  const values = obj.values;
  if (typeof ts === "number" && Number.isFinite(ts) && isObject(values)) {
    return {
      device: ctx.device,
      kind: ctx.kind,
      ts: Math.trunc(ts),
      payload: values,
      source: ctx.source,
      topic: ctx.topic,
    };
  }
  return {
    device: ctx.device,
    kind: ctx.kind,
    ts: ctx.now,
    payload: obj,
    source: ctx.source,
    topic: ctx.topic,
  };
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return `a ${typeof value}`;
}

/** Device ids: what may stand in a topic level and a URL path segment. */
export const DEVICE_ID = /^[A-Za-z0-9._:-]{1,128}$/;
