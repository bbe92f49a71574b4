/**
 * A hand-written codec for the one frame that carries volume on the hub link, `EdgeFrame{batch}`,
 * in front of the generic one (./codec.ts): encoding and decoding a backlog of small records through
 * protobufjs (a message object per record, a writer operation per field, then `toObject`) cost
 * about a tenth of each side's CPU.
 *
 * Invariants:
 * - The encoder's bytes are exactly protobufjs's for the same object. protobufjs writes every field
 *   that is set (not null or undefined) in field-number order, empty strings and zeros included, so
 *   this does too. It takes only values it can write the same way without conversion: strings
 *   without unpaired surrogates, safe integers (non-negative for `seq`), `Uint8Array` payloads.
 *   Anything else (another frame kind, a numeric string, a base64 payload, a `Long`) goes to
 *   the generic codec.
 * - The decoder's object is exactly proto-loader's for a frame that is one `batch` field and
 *   nothing else (`longs: Number`, defaults filled in); any other frame goes to the generic codec.
 *   Payloads are `Buffer` views into the received bytes, as protobufjs gives them, and ASCII
 *   strings are slices of one string decoded from them: a record kept keeps its whole frame in
 *   memory. The hub keeps none past storing it.
 * - Malformed input throws an Error: every read is checked against the end of the message that
 *   holds it and every step moves forward, so parsing always ends. Unknown fields of wire types 0,
 *   1, 2 and 5 are skipped. Where protobufjs makes something of a broken batch (a known field with
 *   another wire type read as its own, a string running past its record cut short, a group or
 *   field number 0 skipped, a tag beyond 32 bits truncated), this throws.
 */
import { Buffer } from "node:buffer";
import type { Batch, EdgeFrame, WireRecord } from "./frames.ts";
import { encodeStoredBatch } from "./records_codec.ts";
import { varintSize, writeNegative, writeString, writeVarint } from "./varint.ts";

// Tags: field number << 3 | wire type (0 varint, 2 length-delimited).
const FRAME_BATCH = 0x0a;
const BATCH_SEQ = 0x08;
const BATCH_RECORDS = 0x12;
const RECORD_ID = 0x0a;
const RECORD_DEVICE = 0x12;
const RECORD_KIND = 0x1a;
const RECORD_TS = 0x20;
const RECORD_PAYLOAD = 0x2a;
const RECORD_TOPIC = 0x32;

/** Highest field number of each message: below it, a tag not matched is a wrong wire type. */
const BATCH_FIELDS = 2;
const RECORD_FIELDS = 6;

/** In place of a string field's byte length: not set, or set to something protobufjs converts. */
const UNSET = -1;
const FOREIGN = -2;

/** Per record, in the scratch array of sizes: the byte lengths of its four strings, then its size. */
const SLOTS = 5;

/**
 * The frame's bytes when it is a batch this encoder takes, else undefined. Two passes over the
 * records: the first checks each value and computes the exact size, the second writes into one
 * buffer of that size.
 */
export function encodeBatchFrame(frame: unknown): Buffer | undefined {
  if (!isObject(frame) || Array.isArray(frame)) return undefined;
  const { batch } = frame;
  // protobufjs writes every member of the oneof that is set; only a lone batch is taken here.
  if (frame.commandResult != null || frame.heartbeat != null || frame.report != null) return undefined;
  if (!isObject(batch)) return undefined;
  // Records the outbox stored already encoded (`{seq, encoded: [runs of Record fields]}`, see
  // records_codec.ts): copied as they are. Never handed on: protobufjs would drop them silently.
  if (batch.encoded != null) return encodeStoredBatch(batch.seq, batch.encoded);
  const { seq, records } = batch;
  if (seq != null && !(Number.isSafeInteger(seq) && (seq as number) >= 0)) return undefined;
  if (records != null && !Array.isArray(records)) return undefined;
  const count = records?.length ?? 0;

  const sizes = new Int32Array(count * SLOTS);
  let batchSize = seq == null ? 0 : 1 + varintSize(seq as number);
  for (let i = 0; i < count; i++) {
    const r = records[i];
    if (!isObject(r)) return undefined;
    const o = i * SLOTS;
    const id = (sizes[o] = utf8Size(r.id));
    const device = (sizes[o + 1] = utf8Size(r.device));
    const kind = (sizes[o + 2] = utf8Size(r.kind));
    const topic = (sizes[o + 3] = utf8Size(r.topic));
    if (id === FOREIGN || device === FOREIGN || kind === FOREIGN || topic === FOREIGN) return undefined;
    let size = stringFieldSize(id) + stringFieldSize(device) + stringFieldSize(kind) +
      stringFieldSize(topic);
    const { ts, payload } = r;
    if (ts != null) {
      if (!Number.isSafeInteger(ts)) return undefined;
      size += 1 + ((ts as number) < 0 ? 10 : varintSize(ts as number));
    }
    if (payload != null) {
      if (!(payload instanceof Uint8Array)) return undefined;
      size += 1 + varintSize(payload.length) + payload.length;
    }
    sizes[o + 4] = size;
    batchSize += 1 + varintSize(size) + size;
  }
  const total = 1 + varintSize(batchSize) + batchSize;

  const buf = Buffer.allocUnsafe(total);
  buf[0] = FRAME_BATCH;
  let pos = writeVarint(buf, 1, batchSize);
  if (seq != null) {
    buf[pos++] = BATCH_SEQ;
    pos = writeVarint(buf, pos, seq as number);
  }
  for (let i = 0; i < count; i++) {
    const r = records[i];
    const o = i * SLOTS;
    buf[pos++] = BATCH_RECORDS;
    pos = writeVarint(buf, pos, sizes[o + 4]);
    if (sizes[o] !== UNSET) pos = writeString(buf, pos, RECORD_ID, r.id, sizes[o]);
    if (sizes[o + 1] !== UNSET) pos = writeString(buf, pos, RECORD_DEVICE, r.device, sizes[o + 1]);
    if (sizes[o + 2] !== UNSET) pos = writeString(buf, pos, RECORD_KIND, r.kind, sizes[o + 2]);
    if (r.ts != null) {
      buf[pos++] = RECORD_TS;
      pos = r.ts < 0 ? writeNegative(buf, pos, r.ts) : writeVarint(buf, pos, r.ts);
    }
    if (r.payload != null) {
      const payload = r.payload as Uint8Array;
      buf[pos++] = RECORD_PAYLOAD;
      pos = writeVarint(buf, pos, payload.length);
      buf.set(payload, pos);
      pos += payload.length;
    }
    if (sizes[o + 3] !== UNSET) pos = writeString(buf, pos, RECORD_TOPIC, r.topic, sizes[o + 3]);
  }
  // Only a value that changed between the passes (a getter) could break this; never send a torn frame.
  if (pos !== total) throw new Error("batch frame changed while it was being encoded");
  return buf;
}

/**
 * The frame `bytes` hold when they are exactly one batch field, else undefined (proto-loader's
 * rules apply). Throws on a malformed batch.
 */
export function decodeBatchFrame(bytes: Uint8Array): EdgeFrame | undefined {
  // protobufjs reads a plain Uint8Array with its own UTF-8 decoder; grpc-js always hands a Buffer.
  if (!Buffer.isBuffer(bytes) || bytes.length < 2 || bytes[0] !== FRAME_BATCH) return undefined;
  const reader = new Reader(bytes, 1);
  const end = reader.delimited(bytes.length);
  if (end !== bytes.length) return undefined;
  return { batch: readBatch(reader, end), frame: "batch" };
}

function readBatch(reader: Reader, end: number): Batch {
  // Key order as protobufjs's toObject builds it.
  const batch: Batch = { records: [], seq: 0 };
  while (reader.pos < end) {
    const tag = reader.uint32(end);
    if (tag === BATCH_SEQ) batch.seq = reader.long(end, false);
    else if (tag === BATCH_RECORDS) batch.records.push(readRecord(reader, reader.delimited(end)));
    else reader.skip(tag, end, BATCH_FIELDS);
  }
  return batch;
}

function readRecord(reader: Reader, end: number): WireRecord {
  let id = "", device = "", kind = "", ts = 0, topic = "";
  let payload: Buffer | undefined;
  while (reader.pos < end) {
    const tag = reader.uint32(end);
    switch (tag) {
      case RECORD_ID:
        id = reader.string(end);
        break;
      case RECORD_DEVICE:
        device = reader.string(end);
        break;
      case RECORD_KIND:
        kind = reader.string(end);
        break;
      case RECORD_TS:
        ts = reader.long(end, true);
        break;
      case RECORD_PAYLOAD:
        payload = reader.bytes(end);
        break;
      case RECORD_TOPIC:
        topic = reader.string(end);
        break;
      default:
        reader.skip(tag, end, RECORD_FIELDS);
    }
  }
  // A fresh empty Buffer each, as toObject's default; an empty view is much cheaper than alloc(0).
  payload ??= reader.buf.subarray(0, 0);
  return { id, device, kind, ts, payload, topic };
}

/** A position in a received buffer. Every read takes the end of the enclosing message. */
export class Reader {
  /** The whole buffer decoded as Latin-1, once a string field needs it. */
  private latin1: string | undefined;

  constructor(readonly buf: Buffer, public pos: number) {}

  /** A varint of at most 32 bits: a tag or a length. */
  uint32(end: number): number {
    const buf = this.buf;
    let pos = this.pos;
    let value = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      if (pos >= end) throw truncated();
      const b = buf[pos++];
      value |= (b & 0x7f) << shift;
      if (b < 0x80) {
        this.pos = pos;
        return value;
      }
    }
    if (pos >= end) throw truncated();
    const b = buf[pos++];
    if (b > 0x0f) throw new Error("invalid batch frame: varint longer than 32 bits");
    this.pos = pos;
    return (value | (b << 28)) >>> 0;
  }

  /**
   * A varint of up to 64 bits as a number, the way protobufjs turns a uint64 or int64 into one
   * with `longs: Number`: exact up to 2^53, rounded above; bits past the 64th are dropped.
   */
  long(end: number, signed: boolean): number {
    const buf = this.buf;
    let pos = this.pos;
    // Bytes 1-4 fill bits 0-27, byte 5 bits 28-34, bytes 6-10 bits 35-63 (and drop the rest).
    let lo = 0, hi = 0, b = 0x80;
    for (let shift = 0; shift < 28 && b >= 0x80; shift += 7) {
      if (pos >= end) throw truncated();
      b = buf[pos++];
      lo |= (b & 0x7f) << shift;
    }
    if (b >= 0x80) {
      if (pos >= end) throw truncated();
      b = buf[pos++];
      lo |= (b & 0x7f) << 28;
      hi = (b & 0x7f) >> 4;
      for (let shift = 3; shift < 38 && b >= 0x80; shift += 7) {
        if (pos >= end) throw truncated();
        b = buf[pos++];
        hi |= (b & 0x7f) << shift;
      }
      if (b >= 0x80) throw new Error("invalid batch frame: varint longer than 10 bytes");
    }
    this.pos = pos;
    lo >>>= 0;
    hi >>>= 0;
    if (signed && hi >>> 31) {
      // Two's complement, as protobufjs's LongBits.toNumber.
      lo = (~lo + 1) >>> 0;
      hi = ~hi >>> 0;
      if (lo === 0) hi = (hi + 1) >>> 0;
      return -(lo + hi * 4294967296);
    }
    return lo + hi * 4294967296;
  }

  /** A length prefix; returns where what it delimits ends, checked against `end`. */
  delimited(end: number): number {
    const length = this.uint32(end);
    if (length > end - this.pos) throw truncated();
    return this.pos + length;
  }

  /**
   * A string field. ASCII bytes (ids, devices, kinds, topics nearly always are) are cut from a
   * Latin-1 decoding of the whole frame, made once: slicing a string costs far less than a native
   * decode per field, and for bytes below 0x80 Latin-1 and UTF-8 agree. Other bytes get Buffer's
   * UTF-8 decoding (U+FFFD for invalid ones), as protobufjs's BufferReader.
   */
  string(end: number): string {
    const stop = this.delimited(end);
    const buf = this.buf;
    const start = this.pos;
    this.pos = stop;
    let i = start;
    while (i < stop && buf[i] < 0x80) i++;
    if (i < stop) return buf.toString("utf8", start, stop);
    this.latin1 ??= buf.toString("latin1");
    return this.latin1.slice(start, stop);
  }

  /** A view into the received buffer, as protobufjs's BufferReader returns (no copy). */
  bytes(end: number): Buffer {
    const stop = this.delimited(end);
    const view = this.buf.subarray(this.pos, stop);
    this.pos = stop;
    return view;
  }

  /** Skips an unknown field; `fields` is the message's highest field number. */
  skip(tag: number, end: number, fields: number): void {
    const field = tag >>> 3;
    const wireType = tag & 7;
    if (field === 0) throw new Error("invalid batch frame: field number 0");
    if (field <= fields) throw new Error(`invalid batch frame: field ${field} with wire type ${wireType}`);
    switch (wireType) {
      case 0:
        this.long(end, false);
        return;
      case 1:
        return this.advance(8, end);
      case 2:
        this.pos = this.delimited(end);
        return;
      case 5:
        return this.advance(4, end);
      default:
        throw new Error(`invalid batch frame: wire type ${wireType}`);
    }
  }

  private advance(n: number, end: number): void {
    if (n > end - this.pos) throw truncated();
    this.pos += n;
  }
}

function truncated(): Error {
  return new Error("invalid batch frame: truncated");
}

/**
 * An object whose fields protobufjs's `fromObject` reads. (It passes a message of its own type
 * through as it is, but proto-loader's message classes never leave its serializer.)
 */
export function isObject(value: unknown): value is Record<string, any> {
  return typeof value === "object" && value !== null;
}

/** A string field's UTF-8 byte length, UNSET, or FOREIGN for a value protobufjs would convert. */
function utf8Size(value: unknown): number {
  if (value == null) return UNSET;
  if (typeof value !== "string") return FOREIGN;
  const length = Buffer.byteLength(value);
  // protobufjs writes a short string with its own encoder, which keeps an unpaired surrogate as
  // three bytes of its own where Buffer writes U+FFFD: such strings are left to it. Equal lengths
  // mean ASCII, well formed.
  if (length !== value.length && !value.isWellFormed()) return FOREIGN;
  return length;
}

function stringFieldSize(length: number): number {
  return length === UNSET ? 0 : 1 + varintSize(length) + length;
}
