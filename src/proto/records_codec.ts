/**
 * Records encoded once, when the outbox stores them: each record as the `repeated Record records
 * = 2` field of `Batch` it becomes on the hub link (tag, length, the record's fields), laid end
 * to end. A batch frame is then its `seq` and such runs copied as they are (`encodeStoredBatch`),
 * with no record read back, decoded or encoded again on the way out.
 *
 * Invariants:
 * - The bytes are exactly protobufjs's (and `encodeBatchFrame`'s) for the batch object the uplink
 *   sent before the outbox stored encoded records: `{id, device, kind, ts, payload, topic}` with
 *   every field set, `topic` "" when the message has none, the payload the UTF-8 bytes of its
 *   JSON text. Strings are written as `Buffer` writes UTF-8 (an unpaired surrogate as U+FFFD, as
 *   the text column they were stored in before turned it); `ts` is an integer (a fraction is cut
 *   off, as protobufjs's int64 writer does).
 * - `decodeRecords` reads back what `encodeRecords` wrote (for people: the control API, tools);
 *   malformed bytes throw, and every read is checked against the end of what holds it.
 */
import { Buffer } from "node:buffer";
import { varintSize, writeNegative, writeString, writeVarint } from "./varint.ts";

/** A record ready to be encoded: its fields and the byte lengths `prepareRecord` measured. */
export interface PreparedRecord {
  device: string;
  kind: string;
  ts: number;
  /** "" when the message has none. */
  topic: string;
  /** The payload's JSON text. */
  payload: string;
  deviceLength: number;
  kindLength: number;
  topicLength: number;
  payloadLength: number;
  /** Bytes of the record's fields other than its id. */
  size: number;
}

/** A record as `decodeRecords` reads it. */
export interface DecodedRecord {
  id: string;
  device: string;
  kind: string;
  ts: number;
  /** The payload's UTF-8 bytes (a view into the decoded buffer). */
  payload: Buffer;
  topic: string;
}

/**
 * A batch whose records are stored runs (`encodeRecords`), as the uplink hands it to the call:
 * `{frame: "batch", batch: {seq, encoded}}`; the batch codec writes it (`encodeStoredBatch`).
 */
export interface StoredBatch {
  seq: number;
  encoded: readonly Uint8Array[];
}

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

/** Measures a record's fields; `payload` is its JSON text. */
export function prepareRecord(
  device: string,
  kind: string,
  ts: number,
  topic: string | null | undefined,
  payload: string,
): PreparedRecord {
  const t = topic ?? "";
  const deviceLength = utf8Length(device);
  const kindLength = utf8Length(kind);
  const topicLength = utf8Length(t);
  const payloadLength = utf8Length(payload);
  const wholeTs = toInt64(ts);
  const size = 1 + varintSize(deviceLength) + deviceLength +
    1 + varintSize(kindLength) + kindLength +
    1 + (wholeTs < 0 ? 10 : varintSize(wholeTs)) +
    1 + varintSize(payloadLength) + payloadLength +
    1 + varintSize(topicLength) + topicLength;
  return {
    device,
    kind,
    ts: wholeTs,
    topic: t,
    payload,
    deviceLength,
    kindLength,
    topicLength,
    payloadLength,
    size,
  };
}

/**
 * `records[from..to)` encoded, the k-th with the id `<idPrefix><firstSeq + k>` (`idPrefix` ASCII,
 * e.g. `"<epoch>-"`): one buffer of exactly their size.
 */
export function encodeRecords(
  records: readonly PreparedRecord[],
  from: number,
  to: number,
  idPrefix: string,
  firstSeq: number,
): Buffer {
  let total = 0;
  for (let i = from; i < to; i++) {
    const idLength = idPrefix.length + decimalDigits(firstSeq + i - from);
    const size = 1 + varintSize(idLength) + idLength + records[i].size;
    total += 1 + varintSize(size) + size;
  }
  const buf = Buffer.allocUnsafe(total);
  let pos = 0;
  for (let i = from; i < to; i++) {
    const r = records[i];
    const seq = firstSeq + i - from;
    const digits = decimalDigits(seq);
    const idLength = idPrefix.length + digits;
    buf[pos++] = BATCH_RECORDS;
    pos = writeVarint(buf, pos, 1 + varintSize(idLength) + idLength + r.size);
    buf[pos++] = RECORD_ID;
    pos = writeVarint(buf, pos, idLength);
    for (let k = 0; k < idPrefix.length; k++) buf[pos++] = idPrefix.charCodeAt(k);
    // The seq's decimal digits, last first.
    let v = seq;
    for (let k = digits - 1; k >= 0; k--) {
      buf[pos + k] = 0x30 + (v % 10);
      v = Math.floor(v / 10);
    }
    pos += digits;
    pos = writeString(buf, pos, RECORD_DEVICE, r.device, r.deviceLength);
    pos = writeString(buf, pos, RECORD_KIND, r.kind, r.kindLength);
    buf[pos++] = RECORD_TS;
    pos = r.ts < 0 ? writeNegative(buf, pos, r.ts) : writeVarint(buf, pos, r.ts);
    pos = writeString(buf, pos, RECORD_PAYLOAD, r.payload, r.payloadLength);
    pos = writeString(buf, pos, RECORD_TOPIC, r.topic, r.topicLength);
  }
  if (pos !== total) throw new Error(`encoded records took ${pos} bytes, measured ${total}`);
  return buf;
}

/**
 * The bytes of `EdgeFrame{batch: {seq, records}}` whose records are `chunks` (runs written by
 * `encodeRecords`), in order: the same bytes protobufjs writes for that batch.
 */
export function encodeStoredBatch(seq: number, chunks: readonly Uint8Array[]): Buffer {
  if (!(Number.isSafeInteger(seq) && seq >= 0)) throw new Error(`invalid batch seq: ${seq}`);
  let records = 0;
  for (const chunk of chunks) {
    if (!(chunk instanceof Uint8Array)) throw new Error("stored records must be bytes");
    records += chunk.length;
  }
  const batchSize = 1 + varintSize(seq) + records;
  const buf = Buffer.allocUnsafe(1 + varintSize(batchSize) + batchSize);
  buf[0] = FRAME_BATCH;
  let pos = writeVarint(buf, 1, batchSize);
  buf[pos++] = BATCH_SEQ;
  pos = writeVarint(buf, pos, seq);
  for (const chunk of chunks) {
    buf.set(chunk, pos);
    pos += chunk.length;
  }
  return buf;
}

/** Reads records written by `encodeRecords` (one run or several laid end to end). */
export function decodeRecords(bytes: Uint8Array): DecodedRecord[] {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const out: DecodedRecord[] = [];
  const at = { pos: 0 };
  while (at.pos < buf.length) {
    if (buf[at.pos++] !== BATCH_RECORDS) throw invalid("expected a record field");
    const end = delimited(buf, at, buf.length);
    let id = "", device = "", kind = "", ts = 0, topic = "";
    let payload = buf.subarray(0, 0);
    while (at.pos < end) {
      const tag = buf[at.pos++];
      if (tag === RECORD_TS) {
        ts = readInt64(buf, at, end);
        continue;
      }
      const stop = delimited(buf, at, end);
      switch (tag) {
        case RECORD_ID:
          id = buf.toString("utf8", at.pos, stop);
          break;
        case RECORD_DEVICE:
          device = buf.toString("utf8", at.pos, stop);
          break;
        case RECORD_KIND:
          kind = buf.toString("utf8", at.pos, stop);
          break;
        case RECORD_PAYLOAD:
          payload = buf.subarray(at.pos, stop);
          break;
        case RECORD_TOPIC:
          topic = buf.toString("utf8", at.pos, stop);
          break;
        default:
          throw invalid(`unexpected tag ${tag}`);
      }
      at.pos = stop;
    }
    out.push({ id, device, kind, ts, payload, topic });
  }
  return out;
}

function invalid(what: string): Error {
  return new Error(`invalid stored records: ${what}`);
}

/** A varint of at most 32 bits (a length), then where what it delimits ends, checked. */
function delimited(buf: Buffer, at: { pos: number }, end: number): number {
  let length = 0;
  for (let shift = 0;; shift += 7) {
    if (at.pos >= end || shift > 28) throw invalid("bad length");
    const b = buf[at.pos++];
    length += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) break;
  }
  if (length > end - at.pos) throw invalid("truncated");
  return at.pos + length;
}

/** An int64 varint as a number (exact within the safe range, which is all `encodeRecords` writes). */
function readInt64(buf: Buffer, at: { pos: number }, end: number): number {
  let lo = 0n;
  for (let shift = 0n;; shift += 7n) {
    if (at.pos >= end || shift > 63n) throw invalid("bad varint");
    const b = buf[at.pos++];
    lo |= BigInt(b & 0x7f) << shift;
    if (b < 0x80) break;
  }
  return Number(BigInt.asIntN(64, lo));
}

/** `ts` as protobufjs writes a number into an int64: the integer part; 0 for what is not finite. */
function toInt64(ts: number): number {
  if (Number.isSafeInteger(ts)) return ts;
  if (!Number.isFinite(ts)) return 0;
  const whole = Math.trunc(ts);
  // Beyond 2^53 a number is an integer already; keep it within what the varint writers take.
  return Math.max(-Number.MAX_SAFE_INTEGER, Math.min(Number.MAX_SAFE_INTEGER, whole));
}

/** UTF-8 byte length, as `Buffer.byteLength` counts it; a loop for short ASCII strings. */
function utf8Length(s: string): number {
  const n = s.length;
  if (n > 64) return Buffer.byteLength(s);
  for (let i = 0; i < n; i++) if (s.charCodeAt(i) >= 0x80) return Buffer.byteLength(s);
  return n;
}

function decimalDigits(v: number): number {
  let digits = 1;
  while (v >= 10) {
    v = Math.floor(v / 10);
    digits++;
  }
  return digits;
}
