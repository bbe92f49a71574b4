/**
 * Installing a verified release: download (resumable), SHA-256 and a `--version` run of the new
 * binary, then the swap: the running binary kept as `.prev`, the trial marker written, one
 * rename, the folder fsynced. Each step before the rename leaves the running version alone.
 */
import { execFile, spawn } from "node:child_process";
import {
  chmodSync,
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { dirname } from "node:path";
import { bootTime } from "../core/clock.ts";
import { errorMessage } from "../core/errors.ts";
import { processAlive } from "../runtime/mod.ts";
import type { Logger } from "../telemetry/mod.ts";
import { fsyncDir, keepCopy, removeDurably, sha256File, type UpdatePaths } from "./_files.ts";
import { unpackBundle } from "./bundle.ts";
import { downloadArtifact } from "./download.ts";
import type { Artifact, CompressedArtifact } from "./manifest.ts";
import { writeMarker } from "./marker.ts";
import type { UpdateStateName, UpdateStatus } from "./status.ts";

/** A refusal: the update stops with this reason and the running version stays. */
export class Refusal extends Error {
  constructor(message: string, readonly usage = false) {
    super(message);
  }
}

export interface InstallContext {
  paths: UpdatePaths;
  log: Logger;
  now: () => number;
  deps: {
    version: string;
    /** The running target: arm64's compressed form needs an xz that decodes the ARM64 filter. */
    target?: string;
    bundle?: boolean;
    settings: { trialSeconds: number; maxStarts: number };
    onSwapped?: (version: string) => void;
  };
  set(next: Partial<UpdateStatus> & { state: UpdateStateName }, keep?: boolean): void;
  /** Download progress, set on the status without telling listeners. */
  progress(bytes: number, total: number): void;
  pause(step: string): Promise<void>;
  signal: AbortSignal;
  fetch: typeof fetch;
}

export async function install(
  ctx: InstallContext,
  version: string,
  artifact: Artifact & { url: string; compressed?: CompressedArtifact },
  manifestUrl: string,
): Promise<void> {
  const { paths, log, now, deps, set, pause } = ctx;
  // The trial marker goes in the data folder, which the CLI may find not made yet.
  mkdirSync(dirname(paths.marker), { recursive: true, mode: 0o700 });
  const unpacked = artifact.compressed && !deps.bundle
    ? await fetchCompressed(ctx, version, artifact.compressed, manifestUrl)
    : false;
  if (!unpacked) {
    log.info("update.downloading", { version, url: artifact.url, size: artifact.size });
    const downloaded = await download(ctx, version, artifact, paths.part, paths.partState, manifestUrl);
    if (!downloaded.ok) {
      if (!downloaded.resumable) discardPart(paths);
      throw new Refusal(downloaded.reason);
    }
  }

  set({ state: "verifying", version, manifestUrl }, true);
  await pause("verifying");
  const sha = await sha256File(paths.part);
  if (sha !== artifact.sha256) {
    discardPart(paths);
    throw new Refusal(
      `SHA-256 mismatch: the artifact from ${artifact.url} hashes to ${sha}, the manifest says ${artifact.sha256}`,
    );
  }
  if (deps.bundle) {
    try {
      await unpackBundle(paths, artifact.sha256);
    } catch (error) {
      discardPart(paths);
      throw new Refusal(errorMessage(error));
    }
  } else {
    chmodSync(paths.part, 0o755);
  }
  const printed = await candidateVersion(paths.part);
  if (printed !== `outpost ${version}`) {
    discardPart(paths);
    throw new Refusal(
      `The downloaded binary does not run here or is another version: its --version printed ` +
        `${JSON.stringify(printed)}, expected "outpost ${version}"`,
    );
  }

  set({ state: "swapping", version, manifestUrl }, true);
  log.info("update.swapping", { version, exe: paths.exe });
  // 1. Keep the running binary as <exe>.prev (atomic: link or copy to a temporary, rename).
  keepCopy(paths.exe, paths.prevTmp, paths.prev);
  await pause("swapping-prev");
  // 2. The trial marker, before the swap: whatever starts from the executable next knows.
  const seconds = Math.floor(now() / 1000);
  const boot = bootTime();
  writeMarker(paths.marker, {
    version,
    previous: deps.version,
    exe: paths.exe,
    starts: 0,
    boots: 0,
    maxStarts: deps.settings.maxStarts,
    deadline: seconds + deps.settings.trialSeconds,
    trialSeconds: deps.settings.trialSeconds,
    swappedAt: seconds,
    ...(boot ? { bootId: boot.bootId, uptimeDeadline: boot.uptime + deps.settings.trialSeconds } : {}),
  });
  await pause("swapping-marker");
  // 3. The swap itself: one rename in one folder, then the folder is fsynced.
  try {
    renameSync(paths.part, paths.exe);
  } catch (error) {
    removeDurably(paths.marker);
    throw new Refusal(`Cannot rename the new binary over ${paths.exe}: ${errorMessage(error)}`);
  }
  fsyncDir(dirname(paths.exe));
  rmSync(paths.partState, { force: true });
  log.info("update.swapped", { version, previous: deps.version, exe: paths.exe, prev: paths.prev });
  await pause("swapped");
  set({ state: "restarting", version, previous: deps.version, manifestUrl }, true);
  deps.onSwapped?.(version);
}

/** Downloads `artifact` into `part` (resuming what `partState` describes), reporting progress. */
async function download(
  ctx: InstallContext,
  version: string,
  artifact: Artifact,
  part: string,
  partState: string,
  manifestUrl: string,
) {
  const { log, now, set } = ctx;
  let lastProgressLog = 0;
  set({ state: "downloading", version, manifestUrl, progress: { bytes: 0, total: artifact.size } });
  const downloaded = await downloadArtifact({
    url: artifact.url,
    sha256: artifact.sha256,
    size: artifact.size,
    version,
    part,
    partState,
    signal: ctx.signal,
    fetch: ctx.fetch,
    onEvent: (event, fields) => log.info(event, fields),
    onProgress: (bytes, total) => {
      ctx.progress(bytes, total);
      if (now() - lastProgressLog > 250 || bytes === total) {
        lastProgressLog = now();
        set({ state: "downloading", progress: { bytes, total } }, true);
      }
    },
  });
  if (downloaded.ok && downloaded.resumedFrom > 0) {
    log.info("update.download.resumed", {
      from: downloaded.resumedFrom,
      rangeRequests: downloaded.rangeRequests,
    });
  }
  return downloaded;
}

/**
 * The compressed form: downloaded (resumable, beside the plain download's file), checked against
 * its SHA-256 in the signed manifest, then decompressed by the system's `xz` into `paths.part`,
 * which is verified afterwards exactly as a plain download is. Returns false (the caller
 * downloads the plain artifact) when there is no `xz`, the download fails or `xz` cannot decode
 * the file; a compressed file whose hash is wrong refuses the update, as a plain one does.
 */
async function fetchCompressed(
  ctx: InstallContext,
  version: string,
  compressed: CompressedArtifact,
  manifestUrl: string,
): Promise<boolean> {
  const { paths, log } = ctx;
  const xz = await run("xz", ["--version"]);
  if (!xz.ok) {
    log.info("update.compressed.skipped", { reason: `no xz to decompress with (${xz.reason})` });
    return false;
  }
  const utils = /^xz \(XZ Utils\) (\d+)\.(\d+)/.exec(xz.stdout);
  if (
    ctx.deps.target?.startsWith("linux-arm64") && utils && Number(utils[1]) * 100 + Number(utils[2]) < 504
  ) {
    log.info("update.compressed.skipped", {
      reason: `${xz.stdout.split("\n")[0]} cannot decode the ARM64 filter (5.4 or newer can)`,
    });
    return false;
  }
  const discard = () => {
    rmSync(paths.compressedPart, { force: true });
    rmSync(paths.compressedPartState, { force: true });
  };
  log.info("update.downloading", {
    version,
    url: compressed.url,
    size: compressed.size,
    format: compressed.format,
  });
  const downloaded = await download(
    ctx,
    version,
    compressed,
    paths.compressedPart,
    paths.compressedPartState,
    manifestUrl,
  );
  if (!downloaded.ok) {
    if (ctx.signal.aborted) throw new Refusal(downloaded.reason);
    if (!downloaded.resumable) discard();
    log.warn("update.compressed.failed", { reason: downloaded.reason, fallback: "plain" });
    return false;
  }
  const sha = await sha256File(paths.compressedPart);
  if (sha !== compressed.sha256) {
    discard();
    throw new Refusal(
      `SHA-256 mismatch: the compressed artifact from ${compressed.url} hashes to ${sha}, the manifest says ${compressed.sha256}`,
    );
  }
  // The plain download's state no longer describes `part`: it is rewritten from the start.
  rmSync(paths.partState, { force: true });
  const unpacked = await decompressInto(paths.compressedPart, paths.part);
  discard();
  if (!unpacked.ok) {
    rmSync(paths.part, { force: true });
    log.warn("update.compressed.failed", { reason: unpacked.reason, fallback: "plain" });
    return false;
  }
  log.info("update.compressed.unpacked", { version, size: compressed.size });
  return true;
}

/** Runs a command to its end: ok with what it printed, or why not. */
function run(
  cmd: string,
  args: string[],
): Promise<{ ok: true; stdout: string } | { ok: false; reason: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 30_000, encoding: "utf8" }, (error, stdout, stderr) => {
      if (!error) resolve({ ok: true, stdout: String(stdout) });
      else resolve({ ok: false, reason: String(stderr || error.message).trim().slice(0, 200) });
    });
  });
}

/** `xz -dc from > to` (to made 0600, fsynced): ok, or xz's complaint. */
function decompressInto(from: string, to: string): Promise<{ ok: true } | { ok: false; reason: string }> {
  return new Promise((resolve) => {
    const fd = openSync(to, "w", 0o600);
    let stderr = "";
    const child = spawn("xz", ["-dc", "--", from], { stdio: ["ignore", fd, "pipe"] });
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (d: string) => {
      if (stderr.length < 1000) stderr += d;
    });
    const done = (result: { ok: true } | { ok: false; reason: string }) => {
      try {
        fsyncSync(fd);
      } catch { /* verified by its hash next anyway */ }
      closeSync(fd);
      resolve(result);
    };
    child.on("error", (error) => done({ ok: false, reason: `xz could not run: ${errorMessage(error)}` }));
    child.on("close", (code, signal) => {
      if (code === 0) done({ ok: true });
      else {done({
          ok: false,
          reason: `xz -d failed (${signal ?? `exit ${code}`}): ${stderr.trim().slice(0, 300)}`,
        });}
    });
  });
}

function discardPart(paths: UpdatePaths): void {
  rmSync(paths.part, { force: true });
  rmSync(paths.partState, { force: true });
}

function candidateVersion(file: string): Promise<string> {
  return new Promise((resolve) => {
    execFile(file, ["--version"], { timeout: 60_000, encoding: "utf8" }, (error, stdout, stderr) => {
      const first = String(stdout ?? "").split("\n")[0].trim();
      if (error && !first) resolve(`(failed: ${String(stderr || error.message).trim().slice(0, 200)})`);
      else resolve(first);
    });
  });
}

/** An exclusive lock beside the executable (pid inside); a dead holder's lock is taken over. */
export function acquireLock(paths: UpdatePaths, pid: number): () => void {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(paths.lock, "wx", 0o600);
      writeSync(fd, `${pid}\n`);
      closeSync(fd);
      return () => rmSync(paths.lock, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") {
        throw new Refusal(`Cannot write beside ${paths.exe}: ${errorMessage(error)}`);
      }
      const holder = Number(readFileSync(paths.lock, "utf8").trim());
      if (holder && holder !== pid && processAlive(holder)) {
        throw new Refusal(`Another update (pid ${holder}) is running on ${paths.exe}`);
      }
      rmSync(paths.lock, { force: true });
    }
  }
  throw new Refusal(`Cannot take the update lock ${paths.lock}`);
}
