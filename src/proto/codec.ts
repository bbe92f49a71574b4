/**
 * Every message of the hub link (proto/outpost/v1/hub.proto) encoded and decoded by hand, so that
 * neither the agent nor the hub loads protobufjs and proto-loader (their modules and the types
 * they build from the descriptor at start-up cost both start-up time and memory). Batches, the
 * bulk of the traffic, take the fast path of ./batch_codec.ts first; everything else comes here.
 *
 * Invariants:
 * - The encoder takes what protobufjs's `fromObject` takes, and converts it the same way, and
 *   writes exactly its bytes: every field that is not null or undefined, in field-number order
 *   (zeros and empty strings included; every member of a oneof that is set); strings in UTF-8
 *   (a short one with an unpaired surrogate as protobufjs writes it); 64-bit fields from numbers,
 *   decimal strings, bigints or `{ low, high }`; bytes from a `Uint8Array`, an array of numbers or
 *   a base64 string. A value protobufjs refuses (a nested message or list element that is not an
 *   object, a list that is not an array, a top-level array) throws a TypeError or an Error; so does
 *   a string for a 64-bit field that is not a decimal integer.
 * - The decoder's object is proto-loader's with the options the link always used (`longs: Number`,
 *   `defaults: true`, `oneofs: true`): every field of a message with its default, the oneof's
 *   members that were sent and `frame` naming the last of them in field order, bytes as `Buffer`
 *   views into the received bytes, 64-bit integers as numbers (rounded beyond 2^53).
 * - Malformed input throws an Error (./batch_codec.ts's reader: every read checked against the end
 *   of its message). Unknown fields are skipped; a known field with another wire type throws.
 */
import { Buffer } from "node:buffer";
import { Reader } from "./batch_codec.ts";

type Scalar = "string" | "bytes" | "uint64" | "int64" | "uint32";

interface Field {
  name: string;
  no: number;
  type: Scalar | Message;
  repeated?: boolean;
}

export interface Message {
  /** The full name, as protobufjs names it in its errors. */
  name: string;
  fields: Field[];
  /** Set when every field is a member of this oneof (EdgeFrame, HubFrame). */
  oneof?: string;
  /** Field by tag (field number << 3 | wire type). */
  byTag: Map<number, Field>;
}

function message(name: string, fields: Field[], oneof?: string): Message {
  const byTag = new Map<number, Field>();
  for (const f of fields) byTag.set(f.no * 8 + wireType(f.type), f);
  return { name: `.outpost.v1.${name}`, fields, oneof, byTag };
}

function wireType(type: Scalar | Message): number {
  return type === "uint64" || type === "int64" || type === "uint32" ? 0 : 2;
}

const f = (name: string, no: number, type: Scalar | Message, repeated?: boolean): Field => ({
  name,
  no,
  type,
  repeated,
});

const RECORD = message("Record", [
  f("id", 1, "string"),
  f("device", 2, "string"),
  f("kind", 3, "string"),
  f("ts", 4, "int64"),
  f("payload", 5, "bytes"),
  f("topic", 6, "string"),
]);
const BATCH = message("Batch", [f("seq", 1, "uint64"), f("records", 2, RECORD, true)]);
const HEARTBEAT = message("Heartbeat", [f("ts", 1, "int64")]);
const COMMAND_RESULT = message("CommandResult", [
  f("id", 1, "string"),
  f("status", 2, "string"),
  f("payload", 3, "bytes"),
]);
const REPORT = message("Report", [f("type", 1, "string"), f("body", 2, "bytes")]);
const ACK = message("Ack", [f("seq", 1, "uint64")]);
const COMMAND = message("Command", [
  f("id", 1, "string"),
  f("device", 2, "string"),
  f("method", 3, "string"),
  f("params", 4, "bytes"),
  f("timeoutMs", 5, "uint32"),
]);
const RULES = message("Rules", [f("version", 1, "string"), f("document", 2, "bytes")]);
const UPDATE_OFFER = message("UpdateOffer", [
  f("version", 1, "string"),
  f("url", 2, "string"),
  f("sha256", 3, "string"),
  f("signature", 4, "string"),
  f("size", 5, "uint64"),
]);
const COMMAND_RESULT_ACK = message("CommandResultAck", [f("id", 1, "string")]);
const OPERATION = message("Operation", [f("id", 1, "string"), f("kind", 2, "string"), f("body", 3, "bytes")]);

export const EDGE_FRAME = message("EdgeFrame", [
  f("batch", 1, BATCH),
  f("commandResult", 2, COMMAND_RESULT),
  f("heartbeat", 3, HEARTBEAT),
  f("report", 4, REPORT),
], "frame");

export const HUB_FRAME = message("HubFrame", [
  f("ack", 1, ACK),
  f("command", 2, COMMAND),
  f("rules", 3, RULES),
  f("updateOffer", 4, UPDATE_OFFER),
  f("heartbeat", 5, HEARTBEAT),
  f("commandResultAck", 6, COMMAND_RESULT_ACK),
  f("operation", 7, OPERATION),
], "frame");

// ---- Encoding ----

/** `value` as `type`'s bytes, as proto-loader's serializer makes them. */
export function encodeMessage(type: Message, value: unknown): Buffer {
  if (Array.isArray(value)) {
    throw new Error(
      `Failed to serialize message: expected object with ${type.name} structure, got array instead`,
    );
  }
  const w = new Writer();
  writeMessage(w, type, value);
  return w.finish();
}

/** A growing buffer. */
class Writer {
  buf = Buffer.allocUnsafe(64);
  pos = 0;

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
  }

  /** A varint of the 64 bits `hi:lo` (both unsigned 32-bit). */
  varint64(lo: number, hi: number): void {
    this.room(10);
    const buf = this.buf;
    let pos = this.pos;
    while (hi !== 0) {
      buf[pos++] = (lo & 0x7f) | 0x80;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    while (lo > 0x7f) {
      buf[pos++] = (lo & 0x7f) | 0x80;
      lo >>>= 7;
    }
    buf[pos++] = lo;
    this.pos = pos;
  }

  varint32(v: number): void {
    this.varint64(v >>> 0, 0);
  }

  bytes(bytes: Uint8Array): void {
    this.varint32(bytes.length);
    this.room(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  string(s: string): void {
    const length = Buffer.byteLength(s);
    this.varint32(length);
    this.room(length);
    // protobufjs writes strings under 40 bytes with its own encoder, which keeps an unpaired
    // surrogate as three bytes of its own where Buffer writes U+FFFD (same length).
    if (length < 40 && !s.isWellFormed()) utf8Write(s, this.buf, this.pos);
    else this.buf.write(s, this.pos, length, "utf8");
    this.pos += length;
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

function writeMessage(w: Writer, type: Message, value: unknown): void {
  if (!value || typeof value !== "object") throw new TypeError(`${type.name}: object expected`);
  const d = value as Record<string, unknown>;
  for (const field of type.fields) {
    const v = d[field.name];
    if (field.repeated) {
      // protobufjs skips a falsy list (0, "", false) and refuses anything else that is not an array.
      if (!v) continue;
      if (!Array.isArray(v)) throw new TypeError(`${type.name}.${field.name}: array expected`);
      for (const element of v) {
        if (!element || typeof element !== "object") {
          throw new TypeError(`${type.name}.${field.name}: object expected`);
        }
        writeField(w, field, element, type);
      }
    } else if (v != null) {
      writeField(w, field, v, type);
    }
  }
}

function writeField(w: Writer, field: Field, v: unknown, parent: Message): void {
  const tag = field.no * 8 + wireType(field.type);
  switch (field.type) {
    case "string":
      w.varint32(tag);
      w.string(String(v));
      return;
    case "bytes": {
      const bytes = toBytes(v);
      if (bytes === undefined) return;
      w.varint32(tag);
      w.bytes(bytes);
      return;
    }
    case "uint32":
      w.varint32(tag);
      w.varint32((v as number) >>> 0);
      return;
    case "uint64":
    case "int64": {
      const [lo, hi] = longBits(v, field.type === "uint64");
      w.varint32(tag);
      w.varint64(lo, hi);
      return;
    }
    default: {
      if (typeof v !== "object") throw new TypeError(`${parent.name}.${field.name}: object expected`);
      const inner = new Writer();
      writeMessage(inner, field.type, v);
      w.varint32(tag);
      w.bytes(inner.finish());
    }
  }
}

/** A bytes field's value as protobufjs's `fromObject` takes it; undefined: not written. */
function toBytes(v: unknown): Uint8Array | undefined {
  if (v instanceof Uint8Array) return v;
  if (typeof v === "string") return Buffer.from(v, "base64");
  const length = (v as { length?: unknown }).length;
  if (typeof length === "number" && length >= 0) return Buffer.from(v as ArrayLike<number>);
  return undefined;
}

const TWO_32 = 4294967296;
const TWO_63 = 2 ** 63;
const TWO_64 = 2 ** 64;

/** The low and high 32 bits protobufjs (with long.js) writes for a 64-bit field's value. */
function longBits(v: unknown, unsigned: boolean): [number, number] {
  if (typeof v === "number") return numberBits(v, unsigned);
  if (typeof v === "bigint") return bigintBits(v);
  if (typeof v === "string") {
    if (v === "NaN" || v === "Infinity" || v === "+Infinity" || v === "-Infinity") return [0, 0];
    if (!/^-?\d+$/.test(v)) throw new TypeError(`not a decimal integer: "${v}"`);
    return bigintBits(BigInt(v));
  }
  const long = v as { low?: number; high?: number };
  return [long.low! >>> 0, long.high! >>> 0];
}

/** long.js's `Long.fromNumber`: NaN is 0, saturating at the field's range, truncated. */
function numberBits(v: number, unsigned: boolean): [number, number] {
  if (Number.isNaN(v)) return [0, 0];
  if (unsigned) {
    if (v < 0) return [0, 0];
    if (v >= TWO_64) return [0xffffffff, 0xffffffff];
  } else {
    if (v <= -TWO_63) return [0, 0x80000000];
    if (v + 1 >= TWO_63) return [0xffffffff, 0x7fffffff];
  }
  if (v < 0) {
    let [lo, hi] = numberBits(-v, false);
    lo = (~lo + 1) >>> 0;
    hi = ~hi >>> 0;
    if (lo === 0) hi = (hi + 1) >>> 0;
    return [lo, hi];
  }
  return [(v % TWO_32 | 0) >>> 0, (v / TWO_32 | 0) >>> 0];
}

function bigintBits(v: bigint): [number, number] {
  const u = BigInt.asUintN(64, v);
  return [Number(u & 0xffffffffn), Number(u >> 32n)];
}

/** protobufjs's own UTF-8 writer (@protobufjs/utf8), for the strings it writes with it. */
function utf8Write(s: string, buf: Buffer, pos: number): void {
  for (let i = 0; i < s.length; i++) {
    let c1 = s.charCodeAt(i);
    let c2: number;
    if (c1 < 128) {
      buf[pos++] = c1;
    } else if (c1 < 2048) {
      buf[pos++] = (c1 >> 6) | 192;
      buf[pos++] = (c1 & 63) | 128;
    } else if ((c1 & 0xfc00) === 0xd800 && ((c2 = s.charCodeAt(i + 1)) & 0xfc00) === 0xdc00) {
      c1 = 0x10000 + ((c1 & 0x03ff) << 10) + (c2 & 0x03ff);
      i++;
      buf[pos++] = (c1 >> 18) | 240;
      buf[pos++] = ((c1 >> 12) & 63) | 128;
      buf[pos++] = ((c1 >> 6) & 63) | 128;
      buf[pos++] = (c1 & 63) | 128;
    } else {
      buf[pos++] = (c1 >> 12) | 224;
      buf[pos++] = ((c1 >> 6) & 63) | 128;
      buf[pos++] = (c1 & 63) | 128;
    }
  }
}

// ---- Decoding ----

/** The object proto-loader's deserializer makes of `bytes`. Throws on malformed input. */
export function decodeMessage(type: Message, bytes: Uint8Array): any {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return readMessage(type, new Reader(buf, 0), buf.length);
}

function readMessage(type: Message, reader: Reader, end: number): any {
  const values: unknown[] = new Array(type.fields.length);
  while (reader.pos < end) {
    const tag = reader.uint32(end);
    const field = type.byTag.get(tag);
    if (field === undefined) {
      reader.skip(tag, end, type.fields.length);
      continue;
    }
    const i = field.no - 1;
    const value = readValue(field, reader, end);
    if (field.repeated) ((values[i] ??= []) as unknown[]).push(value);
    else values[i] = value;
  }
  // Keys in the order protobufjs's toObject makes them: lists, then the other fields.
  const out: any = {};
  for (const field of type.fields) if (field.repeated) out[field.name] = values[field.no - 1] ?? [];
  for (const field of type.fields) {
    if (field.repeated) continue;
    const value = values[field.no - 1];
    if (type.oneof) {
      if (value === undefined) continue;
      out[field.name] = value;
      out[type.oneof] = field.name;
    } else {
      out[field.name] = value ?? defaultValue(field, reader);
    }
  }
  return out;
}

function readValue(field: Field, reader: Reader, end: number): unknown {
  switch (field.type) {
    case "string":
      return reader.string(end);
    case "bytes":
      return reader.bytes(end);
    case "uint64":
      return reader.long(end, false);
    case "int64":
      return reader.long(end, true);
    case "uint32":
      return reader.long(end, false) % TWO_32;
    default:
      return readMessage(field.type, reader, reader.delimited(end));
  }
}

function defaultValue(field: Field, reader: Reader): unknown {
  switch (field.type) {
    case "string":
      return "";
    case "bytes":
      // A fresh empty Buffer each, as toObject's default.
      return reader.buf.subarray(0, 0);
    case "uint64":
    case "int64":
    case "uint32":
      return 0;
    default:
      return null;
  }
}
