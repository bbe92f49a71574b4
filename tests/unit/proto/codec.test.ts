/**
 * The hand-written codec of every hub-link frame against protobufjs, through proto-loader's own
 * serializer and deserializer built from the same descriptor and options the link used before
 * (protobufjs and proto-loader stay here, in the tests): the same bytes for the same frame and the
 * same object for the same bytes, for random frames of every kind in both directions (seeded);
 * the values protobufjs converts, converted the same way; what it refuses, refused; malformed
 * bytes throw.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { hubService } from "../../../src/proto/mod.ts";
import { Random } from "../rules/_random.ts";
import { EDGES, MAX, original, randomString } from "./_reference.ts";

const wired = hubService().Connect;

function randomUnsigned(r: Random): number {
  return r.pick([0, 1, r.int(1000), r.int(2 ** 32), r.int(2 ** 21) * 2 ** 32, MAX, ...EDGES]);
}

function randomSigned(r: Random): number {
  const n = randomUnsigned(r);
  return r.chance(0.3) ? -n : n;
}

function randomBytes(r: Random): Uint8Array {
  const roll = r.int(4);
  if (roll === 0) return new Uint8Array(0);
  if (roll === 1) {
    const whole = Buffer.from(Array.from({ length: 64 + r.int(64) }, () => r.int(256)));
    return whole.subarray(5, 5 + r.int(50));
  }
  const json = Buffer.from(JSON.stringify({ a: r.int(1000), s: randomString(r) }));
  return roll === 2 ? new Uint8Array(json) : json;
}

/** A field's value, or (now and then) left out or set to null: protobufjs writes neither. */
function maybe<T>(r: Random, value: () => T): T | undefined | null {
  const roll = r.int(12);
  return roll === 0 ? undefined : roll === 1 ? null : value();
}

function fields(r: Random, spec: [string, () => unknown][]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, value] of spec) {
    const v = maybe(r, value);
    if (v !== undefined) out[name] = v;
  }
  return out;
}

const str = (r: Random) => () => randomString(r);
const bytes = (r: Random) => () => randomBytes(r);

function randomHubFrame(r: Random): Record<string, unknown> {
  const members: [string, () => unknown][] = [
    ["ack", () => fields(r, [["seq", () => randomUnsigned(r)]])],
    ["command", () =>
      fields(r, [
        ["id", str(r)],
        ["device", str(r)],
        ["method", str(r)],
        ["params", bytes(r)],
        ["timeoutMs", () => r.int(2 ** 32)],
      ])],
    ["rules", () => fields(r, [["version", str(r)], ["document", bytes(r)]])],
    ["updateOffer", () =>
      fields(r, [
        ["version", str(r)],
        ["url", str(r)],
        ["sha256", str(r)],
        ["signature", str(r)],
        ["size", () => randomUnsigned(r)],
      ])],
    ["heartbeat", () => fields(r, [["ts", () => randomSigned(r)]])],
    ["commandResultAck", () => fields(r, [["id", str(r)]])],
    ["operation", () => fields(r, [["id", str(r)], ["kind", str(r)], ["body", bytes(r)]])],
  ];
  return oneOf(r, members);
}

function randomEdgeFrame(r: Random): Record<string, unknown> {
  const members: [string, () => unknown][] = [
    ["commandResult", () => fields(r, [["id", str(r)], ["status", str(r)], ["payload", bytes(r)]])],
    ["heartbeat", () => fields(r, [["ts", () => randomSigned(r)]])],
    ["report", () => fields(r, [["type", str(r)], ["body", bytes(r)]])],
  ];
  return oneOf(r, members);
}

/** One member of the oneof, named by `frame` (usually), and now and then a second one. */
function oneOf(r: Random, members: [string, () => unknown][]): Record<string, unknown> {
  const [name, make] = r.pick(members);
  const frame: Record<string, unknown> = { [name]: make() };
  if (r.chance(0.8)) frame.frame = name;
  if (r.chance(0.05)) {
    const [other, otherMake] = r.pick(members);
    frame[other] = otherMake();
  }
  return frame;
}

function assertSameBytes(actual: Uint8Array, expected: Uint8Array, where: string): void {
  if (Buffer.compare(actual, expected) !== 0) {
    assert.fail(
      `bytes differ: ${where}\n  hand:  ${Buffer.from(actual).toString("hex")}\n` +
        `  proto: ${Buffer.from(expected).toString("hex")}`,
    );
  }
}

Deno.test("4,000 random hub and edge frames of every kind: protobufjs's bytes and objects (seeded)", () => {
  const seed = 20_261_205;
  const r = new Random(seed);
  const seen = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const where = `seed ${seed} frame ${i}`;
    const hub = randomHubFrame(r);
    const hubBytes = original.responseSerialize(hub);
    assertSameBytes(wired.responseSerialize(hub), hubBytes, `${where} (hub) ${JSON.stringify(hub)}`);
    const hubObject = original.responseDeserialize(hubBytes);
    assert.deepStrictEqual(wired.responseDeserialize(hubBytes), hubObject, where);
    seen.add(`hub ${hubObject.frame}`);

    const edge = randomEdgeFrame(r);
    const edgeBytes = original.requestSerialize(edge);
    assertSameBytes(wired.requestSerialize(edge), edgeBytes, `${where} (edge) ${JSON.stringify(edge)}`);
    const edgeObject = original.requestDeserialize(edgeBytes);
    assert.deepStrictEqual(wired.requestDeserialize(edgeBytes), edgeObject, where);
    seen.add(`edge ${edgeObject.frame}`);
  }
  assert.equal(seen.size, 10, [...seen].join(", "));
});

Deno.test("a decoded frame has every default of its message, bytes as Buffer views, `frame` naming it", () => {
  const bytes = original.responseSerialize({ command: { id: "c1", params: Buffer.from("{}") } });
  const decoded = wired.responseDeserialize(bytes);
  assert.deepStrictEqual(decoded, {
    command: { id: "c1", device: "", method: "", params: Buffer.from("{}"), timeoutMs: 0 },
    frame: "command",
  });
  assert.ok(Buffer.isBuffer(decoded.command.params));
  assert.equal(decoded.command.params.buffer, bytes.buffer);
  assert.deepStrictEqual(wired.responseDeserialize(Buffer.from([0x2a, 0x00])), {
    heartbeat: { ts: 0 },
    frame: "heartbeat",
  });
  assert.deepStrictEqual(wired.responseDeserialize(Buffer.alloc(0)), {});
  // A plain Uint8Array decodes too (grpc-js always hands a Buffer).
  assert.deepStrictEqual(
    wired.responseDeserialize(new Uint8Array(bytes) as Buffer),
    original.responseDeserialize(bytes),
  );
});

Deno.test("values protobufjs converts are converted the same way; what it refuses is refused", () => {
  const converted: unknown[] = [
    { ack: { seq: "7" } },
    { ack: { seq: "18446744073709551615" } },
    { ack: { seq: -1 } },
    { ack: { seq: 2 ** 64 } },
    { ack: { seq: 1.7 } },
    { ack: { seq: Number.NaN } },
    { ack: { seq: { low: 5, high: 1 } } },
    { heartbeat: { ts: "-1700000000000" } },
    { heartbeat: { ts: -(2 ** 63) - 4096 } },
    { command: { id: 42, timeoutMs: -1, params: "eyJhIjoxfQ==" } },
    { command: { timeoutMs: 2 ** 33 + 5, params: [1, 2, 300] } },
    { command: { params: 17 } },
    { rules: { version: "1", document: "x".repeat(100) } },
    { operation: { id: "a\ud800b", kind: "x".repeat(50) + "\udc00", body: Buffer.alloc(0) } },
    { updateOffer: { size: 0, url: "" } },
    { ack: { seq: 123n } },
    { heartbeat: { ts: -5n } },
  ];
  for (const frame of converted) {
    const where = Deno.inspect(frame);
    assertSameBytes(wired.responseSerialize(frame), original.responseSerialize(frame), where);
  }
  assertSameBytes(
    wired.requestSerialize({ report: { type: "hello", body: "e30=" }, heartbeat: { ts: 1 } }),
    original.requestSerialize({ report: { type: "hello", body: "e30=" }, heartbeat: { ts: 1 } }),
    "two members",
  );
  const refused: unknown[] = [
    null,
    "not an object",
    [],
    { ack: 5, batch: 5 },
    { command: "c", report: "r" },
    { frame: "batch", batch: { records: [null] }, operation: 1 },
    { frame: "batch", batch: { records: [1] }, rules: true },
    { frame: "batch", batch: { records: "none" }, updateOffer: "u" },
  ];
  for (const frame of refused) {
    assert.throws(() => original.requestSerialize(frame), JSON.stringify(frame));
    assert.throws(() => wired.requestSerialize(frame), JSON.stringify(frame));
    assert.throws(() => original.responseSerialize(frame), JSON.stringify(frame));
    assert.throws(() => wired.responseSerialize(frame), JSON.stringify(frame));
  }
});

Deno.test("unknown fields are skipped; truncated and malformed frames throw an Error", () => {
  const frame = {
    updateOffer: { version: "1.2.3", url: "https://x/y", sha256: "ab", signature: "s", size: 9 },
  };
  const bytes = original.responseSerialize(frame) as Buffer;
  // An unknown varint field (20) and an unknown length-delimited one (21), inside and outside.
  const inner = bytes.subarray(2);
  const extra = Buffer.from([0xa0, 0x01, 0x05, 0xaa, 0x01, 0x02, 0x68, 0x69]);
  const withUnknown = Buffer.concat([
    Buffer.from([0x22, inner.length + extra.length]),
    inner,
    extra,
    extra,
  ]);
  assert.deepStrictEqual(wired.responseDeserialize(withUnknown), original.responseDeserialize(withUnknown));
  for (let n = 1; n < bytes.length; n++) {
    assert.throws(() => wired.responseDeserialize(bytes.subarray(0, n)), Error, `prefix of ${n} bytes`);
  }
  const malformed: [string, number[]][] = [
    ["field number 0", [0x00, 0x01]],
    ["a known field with another wire type", [0x08, 0x01]],
    ["wire type 3", [0x0b]],
    ["a length beyond the frame", [0x0a, 0x05, 0x08]],
    ["a varint of 11 bytes", [0x0a, 0x0b, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]],
  ];
  for (const [what, b] of malformed) {
    assert.throws(() => wired.responseDeserialize(Buffer.from(b)), Error, what);
  }
});
