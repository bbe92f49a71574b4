/** Protocol Buffers varints and length-delimited strings, written into a buffer sized beforehand. */
import type { Buffer } from "node:buffer";

/** Bytes in the varint of a non-negative safe integer. */
export function varintSize(v: number): number {
  return v < 0x80
    ? 1
    : v < 0x4000
    ? 2
    : v < 0x200000
    ? 3
    : v < 0x10000000
    ? 4
    : v < 0x800000000
    ? 5
    : v < 0x40000000000
    ? 6
    : v < 0x2000000000000
    ? 7
    : 8;
}

/** Writes a non-negative safe integer as a varint; returns the position after it. */
export function writeVarint(buf: Buffer, pos: number, v: number): number {
  // Above 32 bits, `&` still sees the low bits exactly (ToInt32 is modulo 2^32).
  while (v > 0xffffffff) {
    buf[pos++] = (v & 0x7f) | 0x80;
    v = Math.floor(v / 0x80);
  }
  while (v > 0x7f) {
    buf[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[pos++] = v;
  return pos;
}

/** Writes a negative safe integer as int64 does: the 10-byte varint of its two's complement. */
export function writeNegative(buf: Buffer, pos: number, v: number): number {
  const magnitude = -v;
  let lo = magnitude >>> 0;
  let hi = ((magnitude - lo) / 4294967296) >>> 0;
  lo = (~lo + 1) >>> 0;
  hi = ~hi >>> 0;
  if (lo === 0) hi = (hi + 1) >>> 0;
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
  return pos;
}

/** Writes a string field (tag, length, UTF-8 bytes) whose byte length is known. */
export function writeString(buf: Buffer, pos: number, tag: number, s: string, length: number): number {
  buf[pos++] = tag;
  pos = writeVarint(buf, pos, length);
  if (length === s.length && length <= 64) {
    // ASCII: a plain loop beats a native call for the short ids, devices, kinds and topics.
    for (let i = 0; i < length; i++) buf[pos + i] = s.charCodeAt(i);
  } else {
    buf.write(s, pos, length, "utf8");
  }
  return pos + length;
}
