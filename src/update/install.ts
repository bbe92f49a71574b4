/**
 * Installing a verified release: download (resumable), SHA-256 and a `--version` run of the new
 * binary, then the swap: the running binary kept as `.prev`, the trial marker written, one
 * rename, the folder fsynced. Each step before the rename leaves the running version alone.
 */
import { execFile } from "node:child_process";
import {
  chmodSync,
  closeSync,
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
import type { Artifact } from "./manifest.ts";
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
  artifact: Artifact & { url: string },
  manifestUrl: string,
): Promise<void> {
  const { paths, log, now, deps, set, pause } = ctx;
  let lastProgressLog = 0;
  // The trial marker goes in the data folder, which the CLI may find not made yet.
  mkdirSync(dirname(paths.marker), { recursive: true, mode: 0o700 });
  log.info("update.downloading", { version, url: artifact.url, size: artifact.size });
  set({ state: "downloading", version, manifestUrl, progress: { bytes: 0, total: artifact.size } });
  const downloaded = await downloadArtifact({
    url: artifact.url,
    sha256: artifact.sha256,
    size: artifact.size,
    version,
    part: paths.part,
    partState: paths.partState,
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
  if (!downloaded.ok) {
    if (!downloaded.resumable) discardPart(paths);
    throw new Refusal(downloaded.reason);
  }
  if (downloaded.resumedFrom > 0) {
    log.info("update.download.resumed", {
      from: downloaded.resumedFrom,
      rangeRequests: downloaded.rangeRequests,
    });
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
