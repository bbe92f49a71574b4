/**
 * The batch codec against protobufjs, through proto-loader's own serializer and deserializer built
 * from the same descriptor and options: the same bytes for the same batch and the same object for
 * the same bytes, over thousands of random batches (seeded); frames it does not take go to
 * proto-loader unchanged; malformed bytes throw.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { decodeBatchFrame, encodeBatchFrame } from "../../../src/proto/batch_codec.ts";
import { hubService } from "../../../src/proto/mod.ts";
import { Random } from "../rules/_random.ts";
import { EDGES, MAX, original, randomString } from "./_reference.ts";

const wired = hubService().Connect;
const TS = [0, 1, -1, -128, -(2 ** 31), -(2 ** 32), -(2 ** 32) - 1, MAX, -MAX, ...EDGES];

function randomTs(r: Random): number {
  switch (r.int(4)) {
    case 0:
      return r.pick(TS);
    case 1:
      return 1_700_000_000_000 + r.int(100_000_000_000);
    case 2:
      return -r.int(2 ** 20) * r.int(2 ** 33);
    default:
      return r.int(2 ** 21) * 2 ** 32 + r.int(2 ** 32);
  }
}

function randomPayload(r: Random): Uint8Array {
  const roll = r.int(6);
  if (roll === 0) return new Uint8Array(0);
  if (roll === 1) {
    // A view at an offset into a larger buffer: only its own bytes may be written.
    const whole = Buffer.from(Array.from({ length: 64 + r.int(64) }, () => r.int(256)));
    return whole.subarray(7, 7 + r.int(50));
  }
  const json = JSON.stringify({ temp: r.int(1000) / 10, rh: r.int(100), label: randomString(r) });
  return roll === 2 ? new TextEncoder().encode(json) : Buffer.from(json);
}

/** A field's value, or (now and then) left out or set to null: protobufjs writes neither. */
function maybe<T>(r: Random, value: () => T): T | undefined | null {
  const roll = r.int(12);
  return roll === 0 ? undefined : roll === 1 ? null : value();
}

function randomRecord(r: Random): Record<string, unknown> {
  const record: Record<string, unknown> = {};
  const fields: [string, () => unknown][] = [
    ["id", () => randomString(r)],
    ["device", () => randomString(r)],
    ["kind", () => r.pick(["telemetry", "attributes", "event", "alarm", ""])],
    ["ts", () => randomTs(r)],
    ["payload", () => randomPayload(r)],
    ["topic", () => randomString(r)],
  ];
  for (const [name, value] of fields) {
    const v = maybe(r, value);
    if (v !== undefined) record[name] = v;
  }
  return record;
}

function randomBatch(r: Random, count: number): Record<string, unknown> {
  const batch: Record<string, unknown> = {};
  const seq = maybe(
    r,
    () => r.pick([0, 1, r.int(1000), r.int(2 ** 32), r.int(2 ** 21) * 2 ** 32, MAX, ...EDGES]),
  );
  if (seq !== undefined) batch.seq = seq;
  if (count > 0 || r.chance(0.5)) batch.records = Array.from({ length: count }, () => randomRecord(r));
  return batch;
}

function assertSameBytes(actual: Uint8Array | undefined, expected: Uint8Array, where: string): void {
  assert.ok(actual !== undefined, `not taken by the fast encoder: ${where}`);
  if (Buffer.compare(actual, expected) !== 0) {
    assert.fail(
      `bytes differ: ${where}\n  fast:  ${Buffer.from(actual).toString("hex")}\n` +
        `  proto: ${Buffer.from(expected).toString("hex")}`,
    );
  }
}

Deno.test("3,000 random batches: the fast path's bytes and objects are protobufjs's (seeded)", () => {
  const seed = 20_240_611;
  const r = new Random(seed);
  let records = 0;
  for (let i = 0; i < 3000; i++) {
    const count = i % 500 === 0 ? 1000 : i % 97 === 0 ? 500 : r.int(4) === 0 ? 0 : 1 + r.int(20);
    const batch = randomBatch(r, count);
    const frame = r.chance(0.9) ? { frame: "batch", batch } : { batch };
    const where = `seed ${seed} batch ${i}`;
    const expected = original.requestSerialize(frame);
    assertSameBytes(encodeBatchFrame(frame), expected, where);
    assertSameBytes(wired.requestSerialize(frame), expected, where);
    const want = original.requestDeserialize(expected);
    assert.deepStrictEqual(decodeBatchFrame(expected), want, where);
    assert.deepStrictEqual(wired.requestDeserialize(expected), want, where);
    records += want.batch.records.length;
  }
  assert.ok(records > 20_000, `only ${records} records`);
});

Deno.test("a decoded batch has every default filled in, payloads as Buffer views into the frame", () => {
  const frame = {
    frame: "batch",
    batch: { records: [{ id: "a" }, { ts: -5, payload: Buffer.from("{}") }] },
  };
  const bytes = original.requestSerialize(frame);
  const decoded = decodeBatchFrame(bytes);
  assert.deepStrictEqual(decoded, {
    batch: {
      records: [
        { id: "a", device: "", kind: "", ts: 0, payload: Buffer.alloc(0), topic: "" },
        { id: "", device: "", kind: "", ts: -5, payload: Buffer.from("{}"), topic: "" },
      ],
      seq: 0,
    },
    frame: "batch",
  });
  assert.ok(decoded?.frame === "batch");
  const payload = decoded.batch.records[1].payload;
  assert.ok(Buffer.isBuffer(payload));
  assert.equal(payload.buffer, bytes.buffer);
  // An empty batch, and an empty frame (no field at all: proto-loader's `{}`).
  assert.deepStrictEqual(decodeBatchFrame(Buffer.from([0x0a, 0x00])), {
    batch: { records: [], seq: 0 },
    frame: "batch",
  });
  assert.equal(decodeBatchFrame(Buffer.alloc(0)), undefined);
  assert.deepStrictEqual(wired.requestDeserialize(Buffer.alloc(0)), {});
});

Deno.test("frames the fast path does not take go to the generic codec, with protobufjs's bytes", () => {
  const payload = Buffer.from('{"a":1}');
  const record = { id: "r", device: "d", kind: "telemetry", ts: 1, payload, topic: "" };
  const batch = (fields: Record<string, unknown>) => ({
    frame: "batch",
    batch: { seq: 1, records: [record], ...fields },
  });
  const change = (fields: Record<string, unknown>) => batch({ records: [{ ...record, ...fields }] });
  const others: unknown[] = [
    { frame: "heartbeat", heartbeat: { ts: 1_700_000_000_000 } },
    { frame: "report", report: { type: "hello", body: Buffer.from("{}") } },
    { frame: "commandResult", commandResult: { id: "c", status: "ok", payload } },
    // Values protobufjs converts: numeric strings, a base64 string, a number array, a float, a number.
    batch({ seq: "7" }),
    change({ ts: "1700000000000" }),
    change({ payload: "eyJhIjoxfQ==" }),
    change({ payload: [1, 2, 3] }),
    change({ ts: 1.5 }),
    change({ id: 42 }),
    batch({ records: 0 }),
    // Beyond 2^53, and negative where unsigned.
    batch({ seq: 2 ** 60, records: [{ ...record, ts: -(2 ** 60) }] }),
    batch({ seq: -1 }),
    // Unpaired surrogates, in a short and a long string (protobufjs writes the two differently).
    change({ id: "a\ud800b" }),
    change({ device: "x".repeat(50) + "\udc00" }),
    // Two members of the oneof at once: protobufjs writes both.
    { ...batch({}), heartbeat: { ts: 5 } },
  ];
  for (const frame of others) {
    const where = JSON.stringify(frame);
    assert.equal(encodeBatchFrame(frame), undefined, where);
    const expected = original.requestSerialize(frame);
    assertSameBytes(wired.requestSerialize(frame), expected, where);
    assert.deepStrictEqual(wired.requestDeserialize(expected), original.requestDeserialize(expected), where);
  }
  // What proto-loader cannot serialize, neither can the wired serializer.
  const array = Object.assign([], batch({}));
  for (const frame of [batch({ records: [null] }), batch({ records: "none" }), array]) {
    assert.throws(() => original.requestSerialize(frame));
    assert.throws(() => wired.requestSerialize(frame));
  }
});

// A few wire-format helpers for hand-made frames.
function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
}
const tag = (field: number, wireType: number) => varint(field * 8 + wireType);
const delimited = (field: number, bytes: number[]) => [...tag(field, 2), ...varint(bytes.length), ...bytes];
const text = (s: string) => [...Buffer.from(s)];

/** Unknown fields of each wire type a newer peer could send (0, 1, 2, 5), high field numbers too. */
const UNKNOWN = [
  [...tag(7, 0), ...varint(2 ** 40)],
  [...tag(8, 0), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
  [...tag(9, 1), 1, 2, 3, 4, 5, 6, 7, 8],
  delimited(10, text("a newer field")),
  delimited(2 ** 29 - 1, []),
  [...tag(11, 5), 1, 2, 3, 4],
];

Deno.test("64-bit values beyond 2^53 decode as protobufjs rounds them", () => {
  const all = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]; // 2^64 - 1, or -1
  const top = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]; // 2^63
  const over = [0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]; // 2^60 + 1
  for (const [seq, ts] of [[all, all], [top, top], [over, over], [all, top]]) {
    const bytes = Buffer.from(delimited(1, [...tag(1, 0), ...seq, ...delimited(2, [...tag(4, 0), ...ts])]));
    const decoded = decodeBatchFrame(bytes);
    assert.deepStrictEqual(decoded, original.requestDeserialize(bytes));
    assert.ok(decoded?.frame === "batch" && decoded.batch.seq > 2 ** 53);
  }
});

Deno.test("unknown fields in a batch and in its records are skipped", () => {
  const record = [
    ...UNKNOWN[0],
    ...delimited(1, text("id-1")),
    ...UNKNOWN[2],
    ...delimited(2, text("dev")),
    ...tag(4, 0),
    ...varint(1_700_000_000_000),
    ...UNKNOWN[3],
    ...delimited(5, text('{"t":1}')),
    ...UNKNOWN[5],
    ...UNKNOWN[4],
    ...UNKNOWN[1],
  ];
  const batch = [...UNKNOWN[3], ...tag(1, 0), 9, ...delimited(2, record), ...UNKNOWN[5], ...delimited(2, [])];
  const bytes = Buffer.from(delimited(1, batch));
  const decoded = decodeBatchFrame(bytes);
  assert.deepStrictEqual(decoded, original.requestDeserialize(bytes));
  assert.deepStrictEqual(decoded, {
    batch: {
      records: [
        {
          id: "id-1",
          device: "dev",
          kind: "",
          ts: 1_700_000_000_000,
          payload: Buffer.from('{"t":1}'),
          topic: "",
        },
        { id: "", device: "", kind: "", ts: 0, payload: Buffer.alloc(0), topic: "" },
      ],
      seq: 9,
    },
    frame: "batch",
  });
});

Deno.test("random unknown fields spliced into random batches decode as protobufjs decodes them (seeded)", () => {
  const seed = 4_711;
  const r = new Random(seed);
  for (let i = 0; i < 1000; i++) {
    const batch: number[] = [];
    for (let k = r.int(6); k > 0; k--) {
      const record = unwrap(unwrap(original.requestSerialize({ batch: { records: [randomRecord(r)] } })));
      const fields: number[] = [];
      for (const field of splitFields(record)) {
        if (r.chance(0.3)) fields.push(...r.pick(UNKNOWN));
        fields.push(...field);
      }
      if (r.chance(0.3)) fields.push(...r.pick(UNKNOWN));
      if (r.chance(0.3)) batch.push(...r.pick(UNKNOWN));
      batch.push(...delimited(2, fields));
    }
    const bytes = Buffer.from(delimited(1, batch));
    assert.deepStrictEqual(
      decodeBatchFrame(bytes),
      original.requestDeserialize(bytes),
      `seed ${seed} batch ${i}`,
    );
  }
});

/** The content of a message holding one length-delimited field with a one-byte tag. */
function unwrap(bytes: Uint8Array | number[]): number[] {
  let pos = 1;
  while (bytes[pos++] >= 0x80);
  return [...bytes].slice(pos);
}

/** A message's fields, each as its bytes (valid input only: varints and length-delimited). */
function splitFields(bytes: number[]): number[][] {
  const out: number[][] = [];
  let pos = 0;
  const readVarint = () => {
    let n = 0, scale = 1, b;
    do {
      b = bytes[pos++];
      n += (b & 0x7f) * scale;
      scale *= 128;
    } while (b >= 0x80);
    return n;
  };
  while (pos < bytes.length) {
    const start = pos;
    const t = readVarint();
    const length = (t & 7) === 0 ? (readVarint(), 0) : readVarint();
    pos += length;
    out.push(bytes.slice(start, pos));
  }
  return out;
}

Deno.test("every truncation of a batch frame throws", () => {
  const r = new Random(99);
  const batch = randomBatch(r, 8);
  (batch.records as unknown[]).push({ id: "x", ts: -1, payload: Buffer.from("{}"), topic: "t" });
  const bytes = original.requestSerialize({ frame: "batch", batch }) as Buffer;
  assert.ok(bytes.length > 200);
  for (let n = 1; n < bytes.length; n++) {
    const prefix = Buffer.from(bytes.subarray(0, n));
    assert.throws(() => wired.requestDeserialize(prefix), Error, `prefix of ${n} bytes`);
    if (n >= 2) assert.throws(() => decodeBatchFrame(prefix), Error, `prefix of ${n} bytes`);
  }
});

Deno.test("malformed batches throw an Error", () => {
  const frame = (batch: number[]) => Buffer.from(delimited(1, batch));
  const record = (fields: number[]) => frame(delimited(2, fields));
  const cases: [string, Buffer][] = [
    ["a record longer than its batch", frame([...tag(2, 2), 10, ...delimited(1, text("a"))])],
    ["a string longer than its record", record([...tag(1, 2), 9, ...text("ab"), ...delimited(6, text("t"))])],
    ["a varint of 11 bytes", record([...tag(4, 0), ...Array(10).fill(0xff), 0x01])],
    ["a tag longer than 32 bits", frame([0xff, 0xff, 0xff, 0xff, 0x7f])],
    ["a truncated varint at the end of a record", record([...tag(4, 0), 0x80, 0x80])],
    ["field number 0", record([0x00, 0x00])],
    ["a known field with another wire type", record([...tag(4, 2), 1, 0])],
    ["seq as length-delimited", frame(delimited(1, [1]))],
    ["a group", record([...tag(9, 3), ...tag(9, 4)])],
    ["wire type 6", record([...tag(9, 6), 0])],
    ["wire type 7", frame([...tag(9, 7), 0])],
    ["an unknown fixed64 cut short", record([...tag(9, 1), 1, 2, 3])],
    ["an unknown fixed32 cut short", record([...tag(9, 5), 1, 2])],
    ["an unknown field longer than its record", record([...tag(9, 2), 9, 1])],
  ];
  for (const [what, bytes] of cases) {
    assert.throws(() => decodeBatchFrame(bytes), Error, what);
    assert.throws(() => wired.requestDeserialize(bytes), Error, what);
  }
});

Deno.test("10,000 corrupted batches: the fast decoder throws an Error or agrees with protobufjs (seeded)", () => {
  const seed = 31_337;
  const r = new Random(seed);
  let thrown = 0, agreed = 0;
  for (let i = 0; i < 10_000; i++) {
    const valid = unwrap(original.requestSerialize({ batch: randomBatch(r, 1 + r.int(8)) }));
    const bytes = r.chance(0.2) ? valid.slice(0, r.int(valid.length)) : valid;
    for (let k = 1 + r.int(3); k > 0; k--) {
      const at = r.int(bytes.length);
      const roll = r.int(3);
      if (roll === 0) bytes[at] = r.int(256);
      else if (roll === 1) bytes.splice(at, 0, r.int(256));
      else bytes.splice(at, 1);
    }
    // The outer frame stays well formed, so that the fast decoder is the one reading the batch.
    const corrupt = Buffer.from(delimited(1, bytes));
    const where = `seed ${seed} frame ${i}: ${corrupt.toString("hex")}`;
    let fast: unknown;
    try {
      fast = decodeBatchFrame(corrupt);
    } catch (error) {
      assert.ok(error instanceof Error, where);
      thrown++;
      continue;
    }
    assert.deepStrictEqual(fast, original.requestDeserialize(corrupt), where);
    agreed++;
  }
  assert.ok(thrown > 1000 && agreed > 1000, `thrown ${thrown}, agreed ${agreed}`);
});
