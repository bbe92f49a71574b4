/**
 * The pure parts of the compiled binary's memory behaviour (docs/memory.md): which ranges of
 * /proc/self/maps are handed back after start-up, finding Bun's `.bun` section in an ELF file,
 * and when `outpost run` starts itself again with its GC options.
 */
import assert from "node:assert/strict";
import { closeSync, openSync, readSync } from "node:fs";
import {
  forgetGivenOptions,
  GC_OPTIONS,
  gcEnvironment,
  gcRestart,
  type Situation,
} from "../../src/runtime/gc.ts";
import {
  elfSection,
  type Mapping,
  parseMaps,
  startupPagesEnabled,
  startupRanges,
} from "../../src/runtime/pages.ts";

const EXE = "/usr/local/bin/outpost";
const ADDON = "/var/cache/outpost/.bun-0-f62bf34fc664bb18.node";

const MAPS = `00200000-01a39000 r--p 00000000 fe:00 2195923                            ${EXE}
01a40000-0684a000 r-xp 01838000 fe:00 2195923                            ${EXE}
0684a000-0685f000 rw-p 06641000 fe:00 2195923                            ${EXE}
0685f000-06867000 r--p 06656000 fe:00 2195923                            ${EXE}
06867000-07ac4000 rw-p 0665e000 fe:00 2195923                            ${EXE}
07ac4000-07c7d000 rw-p 00000000 00:00 0                                  [heap]
7f5c1efc8000-7f5c5efc8000 rwxp 00000000 00:00 0 
7f5c60000000-7f5c608d3000 r-xp 00000000 fe:00 12                         ${ADDON}
7f5c608d3000-7f5c6093a000 r--p 008d2000 fe:00 12                         ${ADDON}
7f5c6093a000-7f5c60946000 rw-p 00938000 fe:00 12                         ${ADDON}
7f5c61000000-7f5c61156000 r-xp 00028000 fe:00 99                         /usr/lib/x86_64-linux-gnu/libc.so.6
7f5c62000000-7f5c62008000 rw-s 00000000 00:1f 7                          /data/outbox.db-shm
7fff1000000-7fff1021000 rw-p 00000000 00:00 0                            [stack]
`;

Deno.test("parseMaps reads addresses, permissions, offsets and paths, anonymous mappings included", () => {
  const maps = parseMaps(MAPS);
  assert.equal(maps.length, 13);
  assert.deepEqual(maps[1], {
    start: 0x1a40000,
    end: 0x684a000,
    perms: "r-xp",
    offset: 0x1838000,
    path: EXE,
  });
  assert.equal(maps[6].path, "");
  assert.equal(maps[6].perms, "rwxp");
  assert.equal(maps[12].path, "[stack]");
  assert.deepEqual(parseMaps("garbage\n\n"), []);
});

Deno.test("startupRanges: read-only and executable mappings of the binary and its addon, the embedded section's whole pages", () => {
  const maps = parseMaps(MAPS);
  // The embedded module graph: file offset 0x6819000, 0x109cc03 bytes (ends mid-page).
  const ranges = startupRanges(maps, EXE, { offset: 0x6819000, size: 0x109cc03 }, 4096);
  const hex = ranges.map((r) => `${r.start.toString(16)}-${r.end.toString(16)}`);
  assert.deepEqual(hex, [
    "200000-1a39000",
    "1a40000-684a000",
    "685f000-6867000",
    // 0x6867000 + (0x6819000 - 0x665e000) = 0x6a22000; the last partial page is left out.
    "6a22000-7abe000",
    "7f5c60000000-7f5c608d3000",
    "7f5c608d3000-7f5c6093a000",
  ]);
  // Never: the writable data of the binary or the addon, anonymous memory, other libraries,
  // shared mappings.
  for (const r of ranges) {
    assert.ok(!(r.start < 0x685f000 && r.end > 0x684a000), "the binary's .data is not included");
    assert.ok(!(r.start < 0x7f5c60946000 && r.end > 0x7f5c6093a000), "the addon's .data is not included");
  }
  const unaligned = startupRanges(maps, EXE, { offset: 0x6819800, size: 0x1000 }, 4096);
  assert.ok(!unaligned.some((r) => r.start >= 0x6867000 && r.start < 0x7ac4000), "no whole page: nothing");
  const noSection = startupRanges(maps, EXE, undefined, 4096);
  assert.equal(noSection.length, 5, "without the section, the writable mapping is left alone");
  assert.deepEqual(startupRanges(maps, "/somewhere/else", undefined, 4096).length, 2, "only the addon");
});

Deno.test("startupRanges keeps to whole pages of a 64 KiB page size too", () => {
  const maps: Mapping[] = [{ start: 0x400000, end: 0x1400000, perms: "rw-p", offset: 0x100000, path: EXE }];
  const [r] = startupRanges(maps, EXE, { offset: 0x108000, size: 0x300000 }, 0x10000);
  assert.deepEqual(r, { start: 0x410000, end: 0x700000 });
});

/** A minimal ELF64 little-endian file: a header, named sections and the names' string table. */
function fakeElf(sections: { name: string; offset: number; size: number }[]): Uint8Array {
  const names = ["", ".shstrtab", ...sections.map((s) => s.name)];
  const strtab = new TextEncoder().encode(names.join("\0") + "\0");
  const nameAt = (i: number) => names.slice(0, i).reduce((n, s) => n + s.length + 1, 0);
  const shoff = 0x100;
  const all = [
    { name: "", offset: 0, size: 0 },
    { name: ".shstrtab", offset: 0x80, size: strtab.length },
    ...sections,
  ];
  const file = new Uint8Array(shoff + all.length * 64);
  file.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], 0);
  const view = new DataView(file.buffer);
  view.setBigUint64(0x28, BigInt(shoff), true);
  view.setUint16(0x3a, 64, true);
  view.setUint16(0x3c, all.length, true);
  view.setUint16(0x3e, 1, true);
  file.set(strtab, 0x80);
  all.forEach((s, i) => {
    view.setUint32(shoff + i * 64, i === 0 ? 0 : nameAt(i), true);
    view.setBigUint64(shoff + i * 64 + 0x18, BigInt(s.offset), true);
    view.setBigUint64(shoff + i * 64 + 0x20, BigInt(s.size), true);
  });
  return file;
}

Deno.test("elfSection finds a section by its exact name, and nothing in what is not ELF64", () => {
  const file = fakeElf([
    { name: ".bun_builtins", offset: 0x1000, size: 0x10 },
    { name: ".bun", offset: 0x6819000, size: 0x109cc03 },
  ]);
  const read = (offset: number, length: number) => file.subarray(offset, offset + length);
  assert.deepEqual(elfSection(read, ".bun"), { offset: 0x6819000, size: 0x109cc03 });
  assert.deepEqual(elfSection(read, ".bun_builtins"), { offset: 0x1000, size: 0x10 });
  assert.equal(elfSection(read, ".bu"), undefined);
  assert.equal(elfSection(read, ".text"), undefined);
  const text = new TextEncoder().encode("#!/bin/sh\necho not an executable\n".padEnd(128));
  assert.equal(elfSection((o, l) => text.subarray(o, o + l), ".bun"), undefined);
  assert.equal(elfSection(() => new Uint8Array(0), ".bun"), undefined);
});

Deno.test("elfSection reads a real executable's section table (this runtime's own binary)", () => {
  const fd = openSync(Deno.execPath(), "r");
  try {
    const read = (offset: number, length: number) => {
      const b = new Uint8Array(length);
      return b.subarray(0, readSync(fd, b, 0, length, offset));
    };
    const text = elfSection(read, ".text");
    assert.ok(text && text.size > 1_000_000, `.text found: ${JSON.stringify(text)}`);
  } finally {
    closeSync(fd);
  }
});

Deno.test("OUTPOST_RELEASE_STARTUP_PAGES=0 keeps the pages; anything else releases them", () => {
  assert.equal(startupPagesEnabled({}), true);
  assert.equal(startupPagesEnabled({ OUTPOST_RELEASE_STARTUP_PAGES: "1" }), true);
  assert.equal(startupPagesEnabled({ OUTPOST_RELEASE_STARTUP_PAGES: "0" }), false);
});

const situation = (over: Partial<Situation> = {}): Situation => ({
  env: { PATH: "/usr/bin", HOME: "/root" },
  args: ["run", "--config", "/etc/outpost/config.json"],
  argv0: "/usr/local/bin/outpost",
  execPath: "/usr/local/bin/outpost",
  compiled: true,
  platform: "linux",
  arch: "x64",
  kernelArch: "x86_64",
  ...over,
});

Deno.test("gcRestart: the compiled `outpost run` starts itself again once, same arguments, with the GC options", () => {
  const restart = gcRestart(situation());
  assert.ok(restart);
  assert.equal(restart.file, "/usr/local/bin/outpost");
  assert.deepEqual(restart.args, ["/usr/local/bin/outpost", "run", "--config", "/etc/outpost/config.json"]);
  assert.equal(restart.env.PATH, "/usr/bin");
  for (const [k, v] of Object.entries(GC_OPTIONS)) assert.equal(restart.env[`BUN_JSC_${k}`], v);
  // The restarted process does not start again.
  assert.equal(gcRestart(situation({ env: restart.env })), undefined);
  // Kernels before 6.1 do not say their architecture: go ahead.
  assert.ok(gcRestart(situation({ kernelArch: undefined })));
  assert.ok(gcRestart(situation({ arch: "arm64", kernelArch: "aarch64" })));
});

Deno.test("gcRestart: not from source, not for other commands, not when disabled, not under an emulator", () => {
  assert.equal(gcRestart(situation({ compiled: false })), undefined);
  assert.equal(gcRestart(situation({ platform: "darwin" })), undefined);
  for (const args of [[], ["--version"], ["hub", "--config", "h.json"], ["update"], ["status"]]) {
    assert.equal(gcRestart(situation({ args })), undefined, args.join(" "));
  }
  assert.equal(gcRestart(situation({ env: { OUTPOST_GC_TUNING: "0" } })), undefined);
  assert.equal(
    gcRestart(situation({ arch: "arm64", kernelArch: "x86_64" })),
    undefined,
    "arm64 under qemu-user",
  );
});

Deno.test("gcRestart keeps options the environment sets, and adds only the missing ones", () => {
  const [first, ...rest] = Object.keys(gcEnvironment());
  const restart = gcRestart(situation({ env: { [first]: "3" } }));
  assert.ok(restart);
  assert.equal(restart.env[first], "3");
  for (const k of rest) assert.equal(restart.env[k], gcEnvironment()[k]);
  const all = Object.fromEntries(Object.keys(gcEnvironment()).map((k) => [k, "2"]));
  assert.equal(gcRestart(situation({ env: all })), undefined, "nothing to add: no restart");
});

Deno.test("forgetGivenOptions removes exactly what the restart added, so child processes start clean", () => {
  const [first] = Object.keys(gcEnvironment());
  const restart = gcRestart(situation({ env: { [first]: "3", KEEP: "yes" } }))!;
  const env: Record<string, string | undefined> = { ...restart.env };
  const given = forgetGivenOptions(env);
  assert.deepEqual(given, Object.keys(gcEnvironment()).filter((k) => k !== first));
  assert.equal(env[first], "3", "the user's own setting stays");
  assert.equal(env.KEEP, "yes");
  for (const k of given) assert.equal(env[k], undefined);
  assert.deepEqual(Object.keys(env).filter((k) => k.startsWith("OUTPOST_GC")), []);
  assert.deepEqual(forgetGivenOptions({ PATH: "/bin" }), []);
});
