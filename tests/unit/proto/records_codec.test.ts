/**
 * Records encoded when stored (src/proto/records_codec.ts) against what the hub link wrote for
 * the same records before: proto-loader's serializer (protobufjs, from the same descriptor) and
 * the batch codec's object path give the very same frame bytes, over thousands of random records
 * (seeded), however the records are split into stored runs; and they decode back.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { fromJSON } from "@grpc/proto-loader";
import type * as grpc from "@grpc/grpc-js";
import { hubDescriptor } from "../../../src/proto/hub_descriptor.gen.ts";
import { decodeBatchFrame, encodeBatchFrame } from "../../../src/proto/batch_codec.ts";
import {
  decodeRecords,
  encodeRecords,
  encodeStoredBatch,
  type PreparedRecord,
  prepareRecord,
} from "../../../src/proto/records_codec.ts";
import { hubService } from "../../../src/proto/mod.ts";
import { Random } from "../rules/_random.ts";

const original = (fromJSON(hubDescriptor as any, {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
})["outpost.v1.Hub"] as grpc.ServiceDefinition).Connect;

const CHARS = ["abcxyz0189-_/ .", "éüßñøÆ", "€中文字日本語한국", "😀🚀🌍𝄞𠜎"].map((s) => [...s]);

function randomString(r: Random, empty = true): string {
  const roll = r.int(10);
  if (roll === 0 && empty) return "";
  const length = roll === 1 ? 40 + r.int(200) : 1 + r.int(40);
  let s = "";
  const ascii = r.chance(0.6);
  for (let i = 0; i < length; i++) s += r.pick(ascii ? CHARS[0] : r.pick(CHARS));
  return s;
}

const EDGES = [7, 14, 21, 28, 31, 32, 35, 42, 49].flatMap((bits) => [2 ** bits - 1, 2 ** bits]);
const TS = [
  0,
  1,
  -1,
  -128,
  -(2 ** 31),
  -(2 ** 32),
  Number.MAX_SAFE_INTEGER,
  -Number.MAX_SAFE_INTEGER,
  ...EDGES,
];

interface Input {
  device: string;
  kind: string;
  ts: number;
  topic: string | null;
  payload: string;
}

function randomInput(r: Random): Input {
  const payload = r.chance(0.05)
    ? JSON.stringify({ big: randomString(r).repeat(200 + r.int(200)) })
    : JSON.stringify({ temp: r.int(1000) / 10, rh: r.int(100), label: randomString(r) });
  return {
    device: randomString(r, false),
    kind: r.pick(["telemetry", "attributes", "event", "alarm"]),
    ts: r.chance(0.3) ? r.pick(TS) : 1_700_000_000_000 + r.int(100_000_000_000),
    topic: r.chance(0.4) ? null : randomString(r),
    payload,
  };
}

/** The batch object the uplink sent before records were stored encoded. */
function asObject(inputs: Input[], epoch: string, firstSeq: number, seq: number) {
  return {
    frame: "batch",
    batch: {
      seq,
      records: inputs.map((x, k) => ({
        id: `${epoch}-${firstSeq + k}`,
        device: x.device,
        kind: x.kind,
        ts: x.ts,
        payload: Buffer.from(x.payload),
        topic: x.topic ?? "",
      })),
    },
  };
}

Deno.test("3,000 random batches of stored records: the frame is proto-loader's and the object path's, byte for byte (seeded)", () => {
  const r = new Random(17);
  for (let round = 0; round < 3000; round++) {
    const epoch = Buffer.from(Array.from({ length: 6 }, () => r.int(256))).toString("hex");
    const inputs = Array.from({ length: r.int(30) }, () => randomInput(r));
    const prepared = inputs.map((x) => prepareRecord(x.device, x.kind, x.ts, x.topic, x.payload));
    const firstSeq = r.pick([1, 9, 99, 999_999, 2 ** 40, r.int(2 ** 31)]);
    const seq = r.pick([0, 1, 127, 128, r.int(2 ** 40)]);
    // Stored as runs of random lengths, sent as one batch.
    const runs: Uint8Array[] = [];
    for (let from = 0; from < prepared.length;) {
      const to = Math.min(prepared.length, from + 1 + r.int(8));
      runs.push(encodeRecords(prepared, from, to, `${epoch}-`, firstSeq + from));
      from = to;
    }
    const object = asObject(inputs, epoch, firstSeq, seq);
    const expected = Buffer.from(original.requestSerialize(object as any));
    const stored = encodeBatchFrame({ frame: "batch", batch: { seq, encoded: runs } });
    assert.deepEqual(stored, expected, `round ${round}`);
    assert.deepEqual(encodeBatchFrame(object), expected, `round ${round}: the object path`);
    assert.deepEqual(
      Buffer.from(
        hubService().Connect.requestSerialize({ frame: "batch", batch: { seq, encoded: runs } } as any),
      ),
      expected,
    );
    // And back: the hub's decoder reads them, and so does decodeRecords.
    assert.deepEqual(
      decodeBatchFrame(stored),
      original.requestDeserialize(expected),
      `round ${round}: decoded`,
    );
    const decoded = runs.flatMap((run) => decodeRecords(run));
    assert.deepEqual(
      decoded.map((d) => ({ ...d, payload: d.payload.toString() })),
      object.batch.records.map((x) => ({ ...x, payload: x.payload.toString() })),
    );
  }
});

Deno.test("a fraction in ts is cut off as protobufjs's int64 writer does; unpaired surrogates become U+FFFD", () => {
  const record = (ts: number, device: string) => prepareRecord(device, "telemetry", ts, null, "{}");
  for (const ts of [1.5, -1.5, 1_700_000_000_000.9, 0.25]) {
    const mine = encodeStoredBatch(1, [encodeRecords([record(ts, "d")], 0, 1, "e-", 1)]);
    const theirs = original.requestSerialize({
      batch: {
        seq: 1,
        records: [{ id: "e-1", device: "d", kind: "telemetry", ts, payload: Buffer.from("{}"), topic: "" }],
      },
    } as any);
    assert.deepEqual(mine, Buffer.from(theirs), `ts ${ts}`);
  }
  // What the text column of the one-row-per-record outbox made of it.
  const [decoded] = decodeRecords(encodeRecords([record(1, "a\ud800b")], 0, 1, "e-", 1));
  assert.equal(decoded.device, "a\ufffdb");
});

Deno.test("a batch of stored records is never handed to proto-loader: bad runs throw", () => {
  assert.throws(() => encodeBatchFrame({ frame: "batch", batch: { seq: 1, encoded: "nope" } }));
  assert.throws(() => encodeBatchFrame({ frame: "batch", batch: { seq: 1, encoded: [[1, 2]] } }));
  assert.throws(() => encodeBatchFrame({ frame: "batch", batch: { seq: -1, encoded: [] } }));
  assert.throws(() => decodeRecords(Buffer.from([0x12, 5, 0x0a])), /invalid stored records/);
  assert.throws(() => decodeRecords(Buffer.from([0x0a, 0])), /invalid stored records/);
  const empty: PreparedRecord[] = [];
  assert.deepEqual(
    encodeStoredBatch(3, [encodeRecords(empty, 0, 0, "e-", 1)]),
    Buffer.from(original.requestSerialize({ batch: { seq: 3, records: [] } } as any)),
  );
});
