/**
 * Turns a device's raw payload into `Message`s (SPEC §4): a JSON object is one message, a JSON
 * array of objects is a batch, an object with a numeric `ts` (ms) and an object `values` is one
 * sample at that time. Anything else is refused with a reason, never thrown.
 */
import { depthOverBytes, MAX_DEPTH } from "../core/json_depth.ts";
import type { IngestKind, JsonObject, Message } from "../core/message.ts";
import { errorMessage } from "../core/errors.ts";

export type RejectReason =
  | "invalid-json"
  | "not-object"
  | "too-large"
  | "empty"
  | "too-deep"
  | "batch-too-large"
  | "device-limit";

/** Per-record overhead the outbox counts against `outbox.maxBytes` (see src/outbox/mod.ts). */
const RECORD_OVERHEAD = 48;

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
  /**
   * The outbox's capacity (`outbox.maxBytes`): a payload whose records would need more than this
   * can never be stored, whatever is dropped, so it is bad input rather than a retry.
   */
  maxBatchBytes?: number;
  /**
   * Admits the device (the seen-device registry's bound, `devices.max`): undefined when it may
   * send, else why not. Checked last, once the payload is known to be good (so bad input takes
   * no place).
   */
  admit?: (device: string) => string | undefined;
}

const decoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

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
  // Text (no transport passes it; bytes are what arrives) is scanned as its UTF-8 bytes.
  const deep = depthOverBytes(typeof raw === "string" ? encoder.encode(raw) : raw);
  if (deep >= 0) {
    return {
      ok: false,
      reason: "too-deep",
      message: `Payload is nested deeper than ${MAX_DEPTH} levels (at byte ${deep})`,
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
      message: `Payload is not valid JSON: ${errorMessage(error)}`,
    };
  }
  const result = toMessages(value, ctx);
  if (result.ok && ctx.maxBatchBytes !== undefined) {
    // What the outbox will count: the payload's bytes plus each record's own overhead (an upper
    // bound for what JSON.stringify gives back, except numbers written shorter than JavaScript
    // writes them, which the outbox still refuses on its own).
    const n = result.messages.length;
    const need = size + n * (RECORD_OVERHEAD + ctx.device.length + (ctx.topic?.length ?? 0));
    if (need > ctx.maxBatchBytes) {
      return {
        ok: false,
        reason: "batch-too-large",
        message: `Payload of ${n} message(s) needs about ${need} bytes, more than the whole outbox ` +
          `(outbox.maxBytes ${ctx.maxBatchBytes})`,
      };
    }
  }
  // Last: only a payload that would be stored takes a place in the registry.
  const refused = result.ok ? ctx.admit?.(ctx.device) : undefined;
  if (refused !== undefined) return { ok: false, reason: "device-limit", message: refused };
  return result;
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
