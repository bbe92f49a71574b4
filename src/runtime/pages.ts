/**
 * Hands the start-up-only pages of the compiled binary back to the kernel, once, after start-up
 * (docs/memory.md).
 *
 * The kernel maps the whole executable: the Bun runtime's code, the embedded bytecode of the
 * program and the embedded copy of libSQL's addon, which Bun reads in full at every start to
 * extract it. Start-up touches tens of MB of these pages that the running agent never reads
 * again, and they stay resident, counted in the process's RSS (RssFile), until the kernel wants
 * the memory back. `madvise(MADV_PAGEOUT)` on those ranges asks it to reclaim them now.
 *
 * It is advice, and safe: the ranges are clean pages of files (the executable, the extracted
 * addon), so a page that is needed again is read back from its file on the next access. A page
 * this process wrote (relocations, `.data`) is anonymous memory, which the kernel never drops (at
 * most it swaps it, where swap exists), and the kernel leaves alone the pages that another process
 * also maps (a second process started from the same file keeps them resident for both).
 *
 * Only under Bun on Linux, through `bun:ffi` and the C library's `madvise`. On other runtimes, on
 * kernels before 5.4 (no MADV_PAGEOUT), under qemu-user (which ignores the advice) or when
 * anything fails, nothing happens.
 */
import { closeSync, openSync, readFileSync, readlinkSync, readSync } from "node:fs";
import { open } from "node:fs/promises";
import { basename } from "node:path";
import process from "node:process";

/** Linux's MADV_PAGEOUT (5.4+): the same number on x86-64 and arm64. */
const MADV_PAGEOUT = 21;

/** The most advised in one call (a multiple of every page size: 4, 16 and 64 KiB). */
const CHUNK = 4 * 1024 * 1024;

/** One line of /proc/<pid>/maps. */
export interface Mapping {
  start: number;
  end: number;
  /** `r-xp` and the like. */
  perms: string;
  /** Offset in the mapped file. */
  offset: number;
  /** The mapped file, `[heap]` and the like, or "" for anonymous memory. */
  path: string;
}

/**
 * Parses /proc/<pid>/maps. Addresses are plain numbers: user space ends below 2^48 on x86-64 and
 * arm64, well within a double's integers.
 */
export function parseMaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  for (const line of text.split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) \S+ \d+ *(.*)$/.exec(line);
    if (!m) continue;
    out.push({
      start: parseInt(m[1], 16),
      end: parseInt(m[2], 16),
      perms: m[3],
      offset: parseInt(m[4], 16),
      path: m[5],
    });
  }
  return out;
}

/** A byte range of a file. */
export interface FileRange {
  offset: number;
  size: number;
}

/**
 * Where the section called `name` of an ELF64 little-endian file is, read through
 * `read(offset, length)`: the header, the section header table and the section names (a few KB).
 */
export function elfSection(
  read: (offset: number, length: number) => Uint8Array,
  name: string,
): FileRange | undefined {
  const ident = read(0, 64);
  if (ident.length < 64) return undefined;
  if (ident[0] !== 0x7f || ident[1] !== 0x45 || ident[2] !== 0x4c || ident[3] !== 0x46) return undefined;
  if (ident[4] !== 2 || ident[5] !== 1) return undefined; // ELFCLASS64, ELFDATA2LSB
  const header = new DataView(ident.buffer, ident.byteOffset, ident.byteLength);
  const shoff = Number(header.getBigUint64(0x28, true));
  const shentsize = header.getUint16(0x3a, true);
  const shnum = header.getUint16(0x3c, true);
  const shstrndx = header.getUint16(0x3e, true);
  if (shentsize < 64 || shnum === 0 || shnum > 4096 || shstrndx >= shnum) return undefined;
  const table = read(shoff, shnum * shentsize);
  if (table.length < shnum * shentsize) return undefined;
  const sections = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const field = (i: number, at: number) => Number(sections.getBigUint64(i * shentsize + at, true));
  const names = read(field(shstrndx, 0x18), Math.min(field(shstrndx, 0x20), 1 << 20));
  const wanted = new TextEncoder().encode(`${name}\0`);
  for (let i = 0; i < shnum; i++) {
    const at = sections.getUint32(i * shentsize, true);
    if (at + wanted.length > names.length) continue;
    if (wanted.every((byte, k) => names[at + k] === byte)) {
      return { offset: field(i, 0x18), size: field(i, 0x20) };
    }
  }
  return undefined;
}

/** A page-aligned [start, end) range of our address space. */
export interface Range {
  start: number;
  end: number;
}

/**
 * The ranges to page out: every private read-only or executable mapping of the executable and of
 * the native addons Bun extracted for it (`.bun-*.node`), and in the executable's writable
 * mapping only the part that holds `embedded` (the module graph, which nothing writes), shrunk to
 * whole pages so that no page holding writable data is included.
 */
export function startupRanges(
  maps: readonly Mapping[],
  exe: string,
  embedded: FileRange | undefined,
  pageSize: number,
): Range[] {
  const ranges: Range[] = [];
  for (const m of maps) {
    const ours = m.path === exe || isAddon(m.path);
    if (!ours || m.perms[3] !== "p") continue;
    if (m.perms[1] !== "w") {
      ranges.push({ start: m.start, end: m.end });
      continue;
    }
    if (m.path !== exe || !embedded) continue;
    const from = Math.max(embedded.offset, m.offset);
    const to = Math.min(embedded.offset + embedded.size, m.offset + (m.end - m.start));
    if (to <= from) continue;
    const start = Math.ceil((m.start + (from - m.offset)) / pageSize) * pageSize;
    const end = Math.floor((m.start + (to - m.offset)) / pageSize) * pageSize;
    if (end > start) ranges.push({ start, end });
  }
  return ranges;
}

/** `OUTPOST_RELEASE_STARTUP_PAGES=0` keeps the pages resident. */
export const STARTUP_PAGES_ENV = "OUTPOST_RELEASE_STARTUP_PAGES";

export function startupPagesEnabled(env: Record<string, string | undefined> = process.env): boolean {
  return env[STARTUP_PAGES_ENV] !== "0";
}

/** A native addon Bun extracted from the binary to load it (in BUN_TMPDIR, or /tmp). */
function isAddon(path: string): boolean {
  return /^\.bun-.*\.node$/.test(basename(path));
}

/** Writes out a file's dirty pages, if any, off the event loop; never throws. */
async function flush(path: string): Promise<void> {
  try {
    const file = await open(path, "r");
    try {
      await file.sync();
    } finally {
      await file.close();
    }
  } catch { /* gone, or not ours to write: its pages are reclaimed once written out anyway */ }
}

/** Reads `length` bytes at `offset` of an open file (fewer at its end). */
function readAt(fd: number, offset: number, length: number): Uint8Array {
  const buffer = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buffer, done, length - done, offset + done);
    if (n <= 0) break;
    done += n;
  }
  return buffer.subarray(0, done);
}

/** The C library under the names dlopen may know it by: glibc's, then musl's. */
function libcNames(): string[] {
  const arch = process.arch === "arm64" ? "aarch64" : "x86_64";
  return ["libc.so.6", `libc.musl-${arch}.so.1`, "libc.so"];
}

export interface ReleaseReport {
  /** Bytes of address space advised (resident or not). */
  advisedBytes: number;
  /** Calls the kernel refused (a kernel without MADV_PAGEOUT refuses all). */
  refused: number;
}

/**
 * Advises the kernel to page out the start-up pages of the executable that runs us (see the top
 * of this file). Returns what was advised, or undefined when this is not Bun on Linux or
 * something it needs is missing. Never throws.
 */
export async function releaseStartupPages(): Promise<ReleaseReport | undefined> {
  try {
    if (typeof (globalThis as any).Bun === "undefined" || process.platform !== "linux") return undefined;
    const exe = readlinkSync("/proc/self/exe");
    const maps = parseMaps(readFileSync("/proc/self/maps", "utf8"));
    if (!maps.some((m) => m.path === exe)) return undefined;
    // A specifier in a variable: resolved by Bun when this runs, by no type checker or bundler.
    const ffiModule = "bun:ffi";
    const ffi = await import(ffiModule);
    let libc: any;
    for (const name of libcNames()) {
      try {
        libc = ffi.dlopen(name, {
          madvise: { args: ["ptr", "usize", "i32"], returns: "i32" },
          getpagesize: { args: [], returns: "i32" },
        });
        break;
      } catch { /* not under this name */ }
    }
    if (!libc) return undefined;
    try {
      const pageSize = Number(libc.symbols.getpagesize());
      if (!(pageSize > 0)) return undefined;
      const fd = openSync(exe, "r");
      let embedded: FileRange | undefined;
      try {
        // Bun keeps the program (bytecode, sources, embedded files) in an ELF section of its own.
        embedded = elfSection((offset, length) => readAt(fd, offset, length), ".bun");
      } finally {
        closeSync(fd);
      }
      // The kernel reclaims only clean pages: a binary installed or updated moments ago may still
      // be waiting to be written out (it would be within the next half minute anyway).
      for (const path of new Set(maps.filter((m) => m.path === exe || isAddon(m.path)).map((m) => m.path))) {
        await flush(path);
      }
      const report: ReleaseReport = { advisedBytes: 0, refused: 0 };
      // In steps of at most CHUNK bytes, letting the event loop run in between: reclaiming is
      // synchronous work in the kernel (tens of ms for the whole binary).
      for (const r of startupRanges(maps, exe, embedded, pageSize)) {
        for (let at = r.start; at < r.end; at += CHUNK) {
          const length = Math.min(CHUNK, r.end - at);
          if (libc.symbols.madvise(at, length, MADV_PAGEOUT) === 0) report.advisedBytes += length;
          else report.refused++;
          await new Promise((resolve) => setTimeout(resolve, 0));
        }
      }
      return report;
    } finally {
      libc.close();
    }
  } catch {
    return undefined;
  }
}
