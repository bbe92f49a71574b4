/**
 * Register maps, pure: reads planned per table without crossing gaps, each type decoded in both
 * word orders with scale and offset, and writes encoded as the exact reverse.
 */
import assert from "node:assert/strict";
import {
  decode,
  decodeAll,
  encode,
  planReads,
  type Read,
  type RegisterConfig,
  resolveRegister,
} from "../../../src/transports/modbus/mod.ts";

const regs = (list: RegisterConfig[]) => list.map(resolveRegister);

Deno.test("reads: neighbours of one table share a request, gaps and tables split, at most 125 words", () => {
  const reads = planReads(regs([
    { name: "a", table: "holding", address: 0 },
    { name: "b", table: "holding", address: 1, type: "uint32" },
    { name: "c", table: "holding", address: 3 },
    { name: "gap", table: "holding", address: 10 },
    { name: "i", table: "input", address: 0 },
    { name: "c1", table: "coil", address: 0 },
    { name: "c2", table: "coil", address: 1 },
    { name: "far", table: "holding", address: 200 },
    { name: "edge", table: "holding", address: 323, type: "float32" },
  ]));
  assert.deepEqual(
    reads.map((r) => [r.table, r.address, r.count, r.registers.map((x) => x.name)]),
    [
      ["holding", 0, 4, ["a", "b", "c"]],
      ["holding", 10, 1, ["gap"]],
      ["holding", 200, 1, ["far"]],
      ["holding", 323, 2, ["edge"]],
      ["input", 0, 1, ["i"]],
      ["coil", 0, 2, ["c1", "c2"]],
    ],
  );
  const long = planReads(
    regs(Array.from({ length: 130 }, (_, i) => ({ name: `r${i}`, table: "input", address: i }))),
  );
  assert.deepEqual(long.map((r) => [r.address, r.count]), [[0, 125], [125, 5]]);
});

function one(config: RegisterConfig, words: (number | boolean)[]): number | boolean {
  const r = resolveRegister(config);
  const read: Read = { table: r.table, address: r.address, count: words.length, registers: [r] };
  return decode(r, read, words);
}

Deno.test("decode: each type in both word orders, scale and offset, bits as booleans", () => {
  assert.equal(one({ name: "x", table: "holding", address: 0 }, [1234]), 1234);
  assert.equal(one({ name: "x", table: "holding", address: 0, scale: 0.1 }, [1234]), 123.4);
  assert.equal(one({ name: "x", table: "input", address: 0, type: "int16" }, [0xfb2e]), -1234);
  assert.equal(
    one({ name: "x", table: "input", address: 0, type: "int16", scale: 0.5, offset: 100 }, [0xffec]),
    90,
  );
  assert.equal(
    one({ name: "x", table: "holding", address: 0, type: "uint32" }, [0x1234, 0x5678]),
    0x12345678,
  );
  assert.equal(
    one({ name: "x", table: "holding", address: 0, type: "uint32", wordOrder: "little" }, [0x5678, 0x1234]),
    0x12345678,
  );
  assert.equal(one({ name: "x", table: "holding", address: 0, type: "int32" }, [0xffff, 0xfffe]), -2);
  assert.equal(
    one({ name: "x", table: "holding", address: 0, type: "int32", wordOrder: "little" }, [0x1dc0, 0xfffe]),
    -123456,
  );
  assert.equal(one({ name: "x", table: "holding", address: 0, type: "float32" }, [0x41ac, 0x0000]), 21.5);
  assert.equal(
    one({ name: "x", table: "holding", address: 0, type: "float32", wordOrder: "little" }, [0x0000, 0xc050]),
    -3.25,
  );
  assert.equal(one({ name: "x", table: "holding", address: 0, type: "float32" }, [0x4048, 0xf5c3]), 3.14);
  assert.equal(one({ name: "x", table: "coil", address: 0 }, [true]), true);
  assert.equal(one({ name: "x", table: "discrete", address: 0 }, [false]), false);

  const registers = regs([
    { name: "a", table: "holding", address: 5 },
    { name: "b", table: "holding", address: 6, type: "int16" },
  ]);
  const reads = planReads(registers);
  assert.deepEqual(decodeAll(reads, [[7, 0xffff]]), { a: 7, b: -1 });
});

Deno.test("encode is decode's reverse; read-only tables, wrong types and out-of-range values are refused", () => {
  const cases: [RegisterConfig, number | boolean][] = [
    [{ name: "x", table: "holding", address: 0 }, 65535],
    [{ name: "x", table: "holding", address: 0, scale: 0.1, offset: -10 }, 40],
    [{ name: "x", table: "holding", address: 0, type: "int16" }, -32768],
    [{ name: "x", table: "holding", address: 0, type: "uint32", wordOrder: "little" }, 4_000_000_000],
    [{ name: "x", table: "holding", address: 0, type: "int32" }, -123456],
    [{ name: "x", table: "holding", address: 0, type: "float32", wordOrder: "little" }, 1013.25],
    [{ name: "x", table: "coil", address: 0 }, true],
  ];
  for (const [config, value] of cases) {
    const r = resolveRegister(config);
    const e = encode(r, value);
    assert.ok(e.ok, JSON.stringify(config));
    const data = "bit" in e ? [e.bit] : e.words;
    assert.equal(decode(r, { table: r.table, address: 0, count: data.length, registers: [r] }, data), value);
  }
  const input = encode(resolveRegister({ name: "t", table: "input", address: 0 }), 1);
  assert.ok(!input.ok && /read-only input/.test(input.message));
  const discrete = encode(resolveRegister({ name: "d", table: "discrete", address: 0 }), true);
  assert.ok(!discrete.ok);
  const range = encode(resolveRegister({ name: "s", table: "holding", address: 0, type: "int16" }), 40000);
  assert.ok(!range.ok && /out of range for int16/.test(range.message));
  const text = encode(resolveRegister({ name: "s", table: "holding", address: 0 }), "5");
  assert.ok(!text.ok && /takes a number/.test(text.message));
  const coil = encode(resolveRegister({ name: "c", table: "coil", address: 0 }), "on");
  assert.ok(!coil.ok && /takes true or false/.test(coil.message));
});
