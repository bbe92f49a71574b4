/**
 * Register maps, pure: which reads a poll makes (neighbouring values of one table in one
 * request), how the words or bits read become a device's values (type, word order, scale,
 * offset), and how a value to write becomes words. No I/O, no clock.
 */
import { Buffer } from "node:buffer";

export type Table = "holding" | "input" | "coil" | "discrete";
export type RegisterType = "uint16" | "int16" | "uint32" | "int32" | "float32" | "bool";

/** A register as configured (`modbus[].registers[]`, validated by the config schema). */
export interface RegisterConfig {
  name: string;
  table: Table;
  address: number;
  type?: RegisterType;
  wordOrder?: "big" | "little";
  scale?: number;
  offset?: number;
}

/** A register with its defaults filled in. */
export interface Register {
  name: string;
  table: Table;
  address: number;
  type: RegisterType;
  wordOrder: "big" | "little";
  scale: number;
  offset: number;
  /** Registers (16-bit words) or bits it spans. */
  width: number;
}

/** One request of a poll: `count` words or bits of `table` from `address`. */
export interface Read {
  table: Table;
  address: number;
  count: number;
  registers: Register[];
}

/** Most registers one read may ask for (Modbus: 125), and most bits (2000). */
export const MAX_READ_WORDS = 125;
export const MAX_READ_BITS = 2000;

export function isBitTable(table: Table): boolean {
  return table === "coil" || table === "discrete";
}

export function resolveRegister(r: RegisterConfig): Register {
  const type = r.type ?? (isBitTable(r.table) ? "bool" : "uint16");
  const wide = type === "uint32" || type === "int32" || type === "float32";
  return {
    name: r.name,
    table: r.table,
    address: r.address,
    type,
    wordOrder: r.wordOrder ?? "big",
    scale: r.scale ?? 1,
    offset: r.offset ?? 0,
    width: wide ? 2 : 1,
  };
}

/**
 * The reads that cover every register: per table, registers that touch or overlap share a read
 * (never across a gap: an address nobody mapped may not exist on the server), at most
 * `MAX_READ_WORDS` words or `MAX_READ_BITS` bits each.
 */
export function planReads(registers: readonly Register[]): Read[] {
  const reads: Read[] = [];
  const tables: Table[] = ["holding", "input", "coil", "discrete"];
  for (const table of tables) {
    const max = isBitTable(table) ? MAX_READ_BITS : MAX_READ_WORDS;
    const list = registers.filter((r) => r.table === table).sort((a, b) => a.address - b.address);
    let current: Read | undefined;
    for (const r of list) {
      const end = r.address + r.width;
      if (current && r.address <= current.address + current.count && end - current.address <= max) {
        current.count = Math.max(current.count, end - current.address);
        current.registers.push(r);
        continue;
      }
      current = { table, address: r.address, count: r.width, registers: [r] };
      reads.push(current);
    }
  }
  return reads;
}

/** Rounds away binary noise of scaling (0.1 × 3 is 0.30000000000000004): 12 significant digits. */
function tidy(x: number): number {
  return Number.isInteger(x) ? x : Number(x.toPrecision(12));
}

/** The shortest decimal that is the same float32 (3.14, not 3.140000104904175). */
function shortestFloat32(f: number): number {
  if (!Number.isFinite(f)) return f;
  for (let digits = 1; digits < 9; digits++) {
    const candidate = Number(f.toPrecision(digits));
    if (Math.fround(candidate) === f) return candidate;
  }
  return Number(f.toPrecision(9));
}

/** The value of `r` in what one read returned (`data`: words or bits from `read.address`). */
export function decode(r: Register, read: Read, data: readonly (number | boolean)[]): number | boolean {
  const at = r.address - read.address;
  if (r.type === "bool") return Boolean(data[at]);
  const w0 = Number(data[at]) & 0xffff;
  let raw: number;
  if (r.width === 1) {
    raw = r.type === "int16" ? (w0 << 16) >> 16 : w0;
  } else {
    const w1 = Number(data[at + 1]) & 0xffff;
    const [hi, lo] = r.wordOrder === "big" ? [w0, w1] : [w1, w0];
    const buf = Buffer.alloc(4);
    buf.writeUInt16BE(hi, 0);
    buf.writeUInt16BE(lo, 2);
    raw = r.type === "uint32"
      ? buf.readUInt32BE(0)
      : r.type === "int32"
      ? buf.readInt32BE(0)
      : buf.readFloatBE(0);
    if (r.type === "float32") raw = shortestFloat32(raw);
  }
  return r.scale === 1 && r.offset === 0 ? raw : tidy(raw * r.scale + r.offset);
}

/** The payload of one poll: every register's value by name. */
export function decodeAll(reads: readonly Read[], results: readonly (readonly (number | boolean)[])[]) {
  const payload: Record<string, number | boolean> = {};
  reads.forEach((read, i) => {
    for (const r of read.registers) payload[r.name] = decode(r, read, results[i]);
  });
  return payload;
}

export type Encoded =
  | { ok: true; bit: boolean }
  | { ok: true; words: number[] }
  | { ok: false; message: string };

const RANGES: Record<string, [number, number]> = {
  uint16: [0, 0xffff],
  int16: [-0x8000, 0x7fff],
  uint32: [0, 0xffffffff],
  int32: [-0x80000000, 0x7fffffff],
};

/** What to write for `value` into `r` (the reverse of `decode`), or why it cannot be written. */
export function encode(r: Register, value: unknown): Encoded {
  if (r.table === "input" || r.table === "discrete") {
    return {
      ok: false,
      message:
        `Register "${r.name}" is a read-only ${r.table}: only holding registers and coils can be written`,
    };
  }
  if (r.type === "bool") {
    if (value === true || value === 1) return { ok: true, bit: true };
    if (value === false || value === 0) return { ok: true, bit: false };
    return { ok: false, message: `Coil "${r.name}" takes true or false, not ${JSON.stringify(value)}` };
  }
  if (typeof value !== "number" || !Number.isFinite(value)) {
    return { ok: false, message: `Register "${r.name}" takes a number, not ${JSON.stringify(value)}` };
  }
  const raw = (value - r.offset) / r.scale;
  const buf = Buffer.alloc(4);
  if (r.type === "float32") {
    buf.writeFloatBE(raw, 0);
  } else {
    const n = Math.round(raw);
    const [lo, hi] = RANGES[r.type];
    if (n < lo || n > hi) {
      return { ok: false, message: `Value ${value} of "${r.name}" is out of range for ${r.type} (raw ${n})` };
    }
    if (r.width === 1) return { ok: true, words: [n & 0xffff] };
    if (r.type === "uint32") buf.writeUInt32BE(n, 0);
    else buf.writeInt32BE(n, 0);
  }
  const hiWord = buf.readUInt16BE(0);
  const loWord = buf.readUInt16BE(2);
  return { ok: true, words: r.wordOrder === "big" ? [hiWord, loWord] : [loWord, hiWord] };
}
