/**
 * What the codec tests compare against, and draw from: proto-loader's own serializer and
 * deserializer for `Hub/Connect`, built from the same descriptor and options the link used before
 * the hand codecs (protobufjs and proto-loader stay here, in the tests), and random values.
 */
import { fromJSON } from "@grpc/proto-loader";
import type * as grpc from "@grpc/grpc-js";
import { hubDescriptor } from "../../../src/proto/hub_descriptor.gen.ts";
import type { Random } from "../rules/_random.ts";

export const original = (fromJSON(hubDescriptor as any, {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
})["outpost.v1.Hub"] as grpc.ServiceDefinition).Connect;

/** ASCII, then characters of 2, 3 and 4 UTF-8 bytes (the last outside the BMP: surrogate pairs). */
const CHARS = ["abcxyz0189-_/ .", "éüßñøÆ", "€中文字日本語한국", "😀🚀🌍𝄞𠜎"].map((s) => [...s]);

export function randomString(r: Random): string {
  const roll = r.int(10);
  if (roll === 0) return "";
  const length = roll === 1 ? 40 + r.int(200) : r.int(40);
  let s = "";
  const ascii = r.chance(0.6);
  for (let i = 0; i < length; i++) s += r.pick(ascii ? CHARS[0] : r.pick(CHARS));
  return s;
}

export const MAX = Number.MAX_SAFE_INTEGER;
/** Where a varint gains a byte (every 7 bits), around 32 bits, and at the ends of the safe range. */
export const EDGES = [7, 14, 21, 28, 31, 32, 35, 42, 49].flatMap((bits) => [2 ** bits - 1, 2 ** bits]);
