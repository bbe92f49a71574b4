/**
 * File-system steps of an update, each either atomic or safe to repeat: writing a small file is
 * write-to-temporary, fsync, rename, fsync the folder; nothing is ever half-written under its
 * final name.
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import {
  closeSync,
  createReadStream,
  existsSync,
  fsyncSync,
  linkSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import process from "node:process";

/** Where an update keeps its files, for the executable `exe` and the data folder `dataDir`. */
export interface UpdatePaths {
  exe: string;
  /** The previous binary, kept after a swap for rollback (automatic or by hand). */
  prev: string;
  /** The download in progress: beside the executable, so that the swap is one rename. */
  part: string;
  /** What `part` is meant to become (url, sha256, size, version): lets a restart resume. */
  partState: string;
  /** The compressed form's download in progress, and its state: decompressed into `part`. */
  compressedPart: string;
  compressedPartState: string;
  /** Temporary name while `prev` is written. */
  prevTmp: string;
  /** Held (pid inside) while an update runs, so that two never run at once. */
  lock: string;
  /** The trial marker: present from just before the swap until commit or rollback. */
  marker: string;
  /** The last update's outcome (committed, rolled-back, failed), for `GET /api/v1/update`. */
  result: string;
}

export function updatePaths(exe: string, dataDir: string): UpdatePaths {
  const dir = dirname(exe);
  const name = basename(exe);
  return {
    exe,
    prev: `${exe}.prev`,
    part: join(dir, `.${name}.update.part`),
    partState: join(dir, `.${name}.update.json`),
    compressedPart: join(dir, `.${name}.update.xz.part`),
    compressedPartState: join(dir, `.${name}.update.xz.json`),
    prevTmp: join(dir, `.${name}.prev.tmp`),
    lock: join(dir, `.${name}.update.lock`),
    marker: join(dataDir, "update-trial"),
    result: join(dataDir, "update-result"),
  };
}

/** fsync a folder, so that a rename or an unlink in it survives a power cut. */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch {
    // Some file systems refuse fsync on a folder; the rename itself is still atomic.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Writes a small file atomically: temporary file, fsync, rename, fsync the folder. */
export function writeFileAtomic(path: string, content: string, mode = 0o644): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, "w", mode);
  try {
    writeSync(fd, Buffer.from(content, "utf8"));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  fsyncDir(dirname(path));
}

/** Removes a file if it exists and makes the removal durable. */
export function removeDurably(path: string): void {
  if (!existsSync(path)) return;
  rmSync(path, { force: true });
  fsyncDir(dirname(path));
}

/**
 * Makes `to` a copy of `from` atomically: a hard link when the file system allows one (instant,
 * no extra space: the old inode lives on under the new name after `from` is replaced), else a
 * byte copy; through a temporary name, then renamed.
 */
export function keepCopy(from: string, tmp: string, to: string): void {
  rmSync(tmp, { force: true });
  try {
    linkSync(from, tmp);
  } catch {
    const data = readFileSync(from);
    const fd = openSync(tmp, "w", 0o755);
    try {
      writeSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
  renameSync(tmp, to);
  fsyncDir(dirname(to));
}

/** SHA-256 of a file, streamed (the binaries are 100+ MiB). */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** Reads a `key=value` file (one per line, `#` comments); undefined when it does not exist. */
export function readKeyValues(path: string): Record<string, string> | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || !line.includes("=")) continue;
    const i = line.indexOf("=");
    out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}

/** `key=value` lines; values are single-line (newlines become spaces). */
export function formatKeyValues(header: string, values: Record<string, string | number | undefined>): string {
  const lines = [header];
  for (const [k, val] of Object.entries(values)) {
    if (val === undefined) continue;
    lines.push(`${k}=${String(val).replace(/[\r\n]+/g, " ")}`);
  }
  return lines.join("\n") + "\n";
}
