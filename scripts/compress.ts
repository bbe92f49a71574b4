/**
 * The compressed form of a release binary: `outpost-<target>.xz`, the download install.sh and
 * self-update prefer when the gateway has `xz` (docs/release.md, "Compressed artifacts").
 *
 * xz because every gateway's base system can decode it (xz-utils, busybox's `xz -d`/`unxz`) and
 * it gives the smallest files for this content (docs/performance.md, "Download size"; zstd
 * --ultra -22 --long=27 is about 8 % bigger). A BCJ filter goes first, which rewrites relative
 * branch addresses so that machine code compresses better: x86 for x64 (every xz decoder has it),
 * ARM64 for arm64 (15 % smaller code; decoding it needs xz ≥ 5.4, so install.sh and self-update
 * use the plain binary with an older xz, and whenever xz fails). The dictionary is 128 MiB, so
 * that the whole binary is one window: decompressing needs about that much memory.
 */
import { spawnSync } from "node:child_process";
import { closeSync, openSync, renameSync, rmSync } from "node:fs";

/** `xz` preset for the release (`9e`); a lower one (`0`…`9`) trades size for build time. */
export const RELEASE_PRESET = "9e";

/** The xz filter options for a target's binary. */
export function xzFilters(target: string, preset = RELEASE_PRESET): string[] {
  // lc=4,pb=0 suits x86's unaligned instructions; arm64's are 4-byte aligned (the defaults, pb=2).
  if (target.startsWith("linux-x64")) return ["--x86", `--lzma2=preset=${preset},dict=128MiB,lc=4,pb=0`];
  if (target.startsWith("linux-arm64")) return ["--arm64", `--lzma2=preset=${preset},dict=128MiB`];
  return [`--lzma2=preset=${preset},dict=128MiB`];
}

/**
 * Writes `out` (temporary name, then a rename): `binary` compressed with xz. Throws when xz is
 * missing or fails.
 */
export function compressBinary(binary: string, out: string, target: string, preset = RELEASE_PRESET): void {
  const tmp = `${out}.tmp`;
  const fd = openSync(tmp, "w", 0o644);
  try {
    const run = spawnSync(
      "xz",
      ["--threads=1", "--check=crc64", ...xzFilters(target, preset), "-c", binary],
      {
        stdio: ["ignore", fd, "pipe"],
        encoding: "utf8",
      },
    );
    if (run.error) {
      throw new Error(
        `xz could not run (${(run.error as NodeJS.ErrnoException).code ?? run.error}): install xz-utils`,
      );
    }
    if (run.status !== 0) throw new Error(`xz failed (exit ${run.status}): ${run.stderr.trim()}`);
  } catch (error) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw error;
  }
  closeSync(fd);
  renameSync(tmp, out);
}

/** The sha256 of what `xz -dc file` gives (the check that a compressed file is its binary). */
export function decompressedSha256(file: string): string {
  const run = spawnSync("sh", ["-c", 'xz -dc -- "$1" | sha256sum', "sh", file], {
    encoding: "utf8",
    maxBuffer: 1 << 20,
  });
  if (run.status !== 0) throw new Error(`xz -dc ${file} failed: ${run.stderr.trim()}`);
  return run.stdout.split(" ")[0];
}
