/**
 * The update state machine: one update at a time, in this order, each step either atomic or
 * safe to repeat after a kill -9 (docs/update.md has the why):
 *
 *   checking     fetch the manifest; verify its signature against update.publicKey; compare
 *   downloading  artifact for this target → `.<exe>.update.part` beside the executable (Range resume);
 *                its compressed form first when the manifest has one and `xz` is on PATH
 *   verifying    size, sha256, chmod +x, the candidate's `--version` prints the offered version
 *   swapping     `<exe>.prev` ← current (hard link, atomic rename); trial marker written;
 *                candidate renamed over the executable; folder fsynced
 *   restarting   the agent drains and the process is started again (supervisor or spawn)
 *   trial        the new process, until healthy (→ committed) or not in time (→ rolled-back)
 *
 * Any refusal ends in `failed` with a reason and leaves the executable untouched.
 */
import { redactingLogger, redactUrl, redactUrlsIn } from "../core/redact.ts";
import type { Logger } from "../telemetry/mod.ts";
import type { UpdatePaths } from "./_files.ts";
import {
  type Artifact,
  type CompressedArtifact,
  compressedArtifact,
  type Manifest,
  verifyManifest,
} from "./manifest.ts";
import { fetchManifest } from "./manifest_fetch.ts";
import { acquireLock, install, type InstallContext, Refusal } from "./install.ts";
import type { UpdateStateName, UpdateStatus } from "./status.ts";
import { readMarker, readResult, writeResult } from "./marker.ts";
import { compareSemver } from "./semver.ts";
import { trialInfo, TrialWatch } from "./trial_watch.ts";
import { errorMessage } from "../core/errors.ts";

export type { UpdateStateName, UpdateStatus } from "./status.ts";

export interface UpdateSettings {
  manifestUrl?: string;
  publicKey?: string;
  trialSeconds: number;
  maxStarts: number;
}

export interface UpdaterDeps {
  paths: UpdatePaths;
  /** The running version. */
  version: string;
  /** The running target (`linux-x64`, …): picks the artifact. */
  target: string;
  /**
   * Running as an installed executable: the compiled binary, or the Node bundle's link (self-update
   * swaps that; from source it refuses).
   */
  compiled: boolean;
  /** The installed Node bundle (armv7): the artifact is an archive, unpacked beside the running one. */
  bundle?: boolean;
  settings: UpdateSettings;
  log: Logger;
  pid: number;
  /** Called once the new binary is in place: drain and restart into it. */
  onSwapped?: (version: string) => void;
  /** Called after a failed trial restored `.prev`: restart into it. */
  onRolledBack?: () => void;
  /** Who acts, recorded in the result file: `agent` or `cli`. */
  by: string;
  fetch?: typeof fetch;
  now?: () => number;
  /**
   * Test hook (`OUTPOST_TEST_UPDATE_PAUSE`): stop for good at the named step (`verifying`,
   * `swapping-prev`, `swapping-marker`, `swapped`) after logging `update.paused`, so that a test
   * can kill -9 the process exactly there.
   */
  pauseAt?: string;
}

export interface UpdateOptions {
  manifestUrl?: string;
  allowDowngrade?: boolean;
}

export type CheckResult =
  | {
    ok: true;
    manifestUrl: string;
    manifest: Manifest;
    current: string;
    offered: string;
    /** -1 older, 0 same, 1 newer than the running version. */
    order: -1 | 0 | 1;
    /** The artifact for this target, with its compressed form when the manifest offers one. */
    artifact?: Artifact & { url: string; compressed?: CompressedArtifact };
  }
  | { ok: false; reason: string; usage?: boolean };

export type StartResult = { ok: true } | { ok: false; status: 400 | 409; reason: string };

export interface Updater {
  status(): UpdateStatus;
  /** Fetches and verifies the manifest; changes nothing. */
  check(options?: UpdateOptions): Promise<CheckResult>;
  /** Starts an update in the background (the API's 202), or says why it cannot. */
  start(options?: UpdateOptions): StartResult;
  /** Runs an update to its end (the CLI when no agent runs): the final status. */
  run(options?: UpdateOptions): Promise<UpdateStatus>;
  /** Subscribes to state changes (the CLI's progress bar). */
  onChange(listener: (status: UpdateStatus) => void): () => void;
  /**
   * When this process is on trial (the marker names its version), watches `healthy` until it
   * holds (commit) or the deadline passes (rollback, then `onRolledBack`).
   */
  startTrial(healthy: () => Promise<string | undefined>): void;
  /** Fails a running trial now (the agent could not start): true when it rolled back. */
  failTrial(reason: string): boolean;
  /** Stops background work (download, trial watch). Idempotent. */
  stop(): void;
}

const BUSY: UpdateStateName[] = ["checking", "downloading", "verifying", "swapping", "restarting"];

export function createUpdater(deps: UpdaterDeps): Updater {
  const { paths } = deps;
  // Manifest and artifact URLs may carry credentials or presigned queries: never shown whole.
  const log = redactingLogger(deps.log);
  const now = deps.now ?? Date.now;
  const doFetch = deps.fetch ?? fetch;
  const listeners = new Set<(s: UpdateStatus) => void>();
  const abort = new AbortController();

  let status: UpdateStatus = initialStatus(deps, now());
  const check = (options: UpdateOptions = {}) => checkManifest(deps, doFetch, abort.signal, options);

  function set(next: Partial<UpdateStatus> & { state: UpdateStateName }, keep = false): void {
    const base = keep ? status : { current: deps.version, pid: deps.pid };
    status = { ...base, ...next, at: new Date(now()).toISOString() } as UpdateStatus;
    if (status.manifestUrl !== undefined) status.manifestUrl = redactUrl(status.manifestUrl);
    if (status.reason !== undefined) status.reason = redactUrlsIn(status.reason);
    if (status.message !== undefined) status.message = redactUrlsIn(status.message);
    if (next.state !== "downloading") delete status.progress;
    for (const l of listeners) {
      try {
        l(status);
      } catch { /* a listener never breaks the update */ }
    }
  }

  async function pause(step: string): Promise<void> {
    if (deps.pauseAt !== step) return;
    log.warn("update.paused", { at: step });
    await new Promise(() => {});
  }

  async function perform(options: UpdateOptions): Promise<void> {
    set({ state: "checking", manifestUrl: options.manifestUrl ?? deps.settings.manifestUrl });
    const checked = await check(options);
    if (!checked.ok) throw new Refusal(checked.reason, checked.usage);
    const { manifest, manifestUrl } = checked;
    const offered = manifest.version;
    if (checked.order === 0 && !options.allowDowngrade) {
      set({
        state: "idle",
        version: offered,
        manifestUrl,
        message: `Already up to date: ${offered} is the version offered`,
      });
      log.info("update.up_to_date", { version: offered });
      return;
    }
    if (checked.order < 0 && !options.allowDowngrade) {
      throw new Refusal(
        `The manifest offers ${offered}, which is not newer than the running ${deps.version} ` +
          `(--allow-downgrade or "allowDowngrade": true installs it anyway)`,
      );
    }
    const artifact = checked.artifact;
    if (!artifact) {
      throw new Refusal(
        `The manifest has no artifact for this target ${deps.target} (it offers: ${
          Object.keys(manifest.artifacts).join(", ") || "none"
        })`,
      );
    }
    const release = acquireLock(paths, deps.pid);
    try {
      await install(installContext, offered, artifact, manifestUrl);
    } finally {
      release();
    }
  }

  const trial = new TrialWatch({
    paths,
    log,
    now,
    by: deps.by,
    compiled: deps.compiled,
    version: deps.version,
    set,
    onRolledBack: deps.onRolledBack,
    signal: abort.signal,
  });

  const installContext: InstallContext = {
    paths,
    log,
    now,
    deps,
    set,
    progress: (bytes, total) => {
      status.progress = { bytes, total };
    },
    pause,
    signal: abort.signal,
    fetch: doFetch,
  };

  function fail(error: unknown): void {
    const reason = errorMessage(error);
    log.error("update.failed", { reason, version: status.version });
    set({ state: "failed", version: status.version, manifestUrl: status.manifestUrl, reason });
    if (status.version) {
      try {
        writeResult(paths.result, {
          status: "failed",
          version: status.version,
          reason,
          at: Math.floor(now() / 1000),
          by: deps.by,
        });
      } catch { /* the data folder may be read-only; the state above still says it */ }
    }
  }

  const updater: Updater = {
    status: () => status,
    check,
    start(options = {}) {
      const problem = precondition(status, deps, options);
      if (problem) return { ok: false, ...problem };
      perform(options).catch((error) => fail(error));
      return { ok: true };
    },
    async run(options = {}) {
      const problem = precondition(status, deps, options);
      if (problem) {
        fail(new Refusal(problem.reason, problem.status === 400));
        return status;
      }
      try {
        await perform(options);
      } catch (error) {
        fail(error);
      }
      return status;
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    startTrial: (healthy) => trial.start(healthy),
    failTrial: (reason) => trial.fail(reason),
    stop() {
      abort.abort();
      trial.stop();
    },
  };
  return updater;
}

/** The status at start: on trial, the last update's outcome, or idle. */
function initialStatus(deps: UpdaterDeps, now: number): UpdateStatus {
  const { paths } = deps;
  const base = { current: deps.version, at: new Date(now).toISOString(), pid: deps.pid };
  const marker = readMarker(paths.marker);
  if (deps.compiled && marker && marker !== "corrupt" && marker.version === deps.version) {
    return {
      ...base,
      state: "trial",
      version: marker.version,
      previous: marker.previous,
      trial: trialInfo(marker),
    };
  }
  const result = readResult(paths.result);
  if (result) {
    return {
      ...base,
      state: result.status,
      version: result.version,
      previous: result.previous,
      reason: result.reason,
      at: new Date(result.at * 1000).toISOString(),
    };
  }
  return { ...base, state: "idle" };
}

/** Fetches and verifies the manifest; changes nothing. */
async function checkManifest(
  deps: UpdaterDeps,
  doFetch: typeof fetch,
  signal: AbortSignal,
  options: UpdateOptions,
): Promise<CheckResult> {
  const manifestUrl = options.manifestUrl ?? deps.settings.manifestUrl;
  if (!manifestUrl) {
    return {
      ok: false,
      usage: true,
      reason: "No manifest URL: pass --manifest URL or set update.manifestUrl",
    };
  }
  if (!deps.settings.publicKey) {
    return {
      ok: false,
      usage: true,
      reason: "No update.publicKey configured: outpost installs only signed updates " +
        "(outpost update keygen makes a key pair; docs/update.md)",
    };
  }
  let raw: unknown;
  try {
    raw = await fetchManifest(manifestUrl, doFetch, signal);
  } catch (error) {
    return { ok: false, reason: errorMessage(error) };
  }
  const verified = verifyManifest(raw, deps.settings.publicKey);
  if (!verified.ok) return { ok: false, reason: verified.reason };
  const manifest = verified.manifest;
  const order = compareSemver(manifest.version, deps.version);
  const artifact = manifest.artifacts[deps.target];
  // The armv7 archive is compressed already: only binaries have a compressed form.
  const compressed = deps.bundle ? undefined : compressedArtifact(manifest, deps.target);
  return {
    ok: true,
    manifestUrl,
    manifest,
    current: deps.version,
    offered: manifest.version,
    order,
    artifact: artifact
      ? {
        ...artifact,
        url: new URL(artifact.url, manifestUrl).href,
        ...(compressed
          ? { compressed: { ...compressed, url: new URL(compressed.url, manifestUrl).href } }
          : {}),
      }
      : undefined,
  };
}

/** Preconditions that need no network: answered at once by start(). */
function precondition(
  status: UpdateStatus,
  deps: UpdaterDeps,
  options: UpdateOptions,
): { status: 400 | 409; reason: string } | undefined {
  if (BUSY.includes(status.state)) {
    return { status: 409, reason: `An update is already running (state: ${status.state})` };
  }
  if (status.state === "trial") {
    return {
      status: 409,
      reason: `Version ${status.version} is on trial: wait until it commits or rolls back`,
    };
  }
  if (!deps.compiled) {
    return {
      status: 409,
      reason:
        "Self-update needs the compiled binary or the bundle as install.sh installs it: this outpost runs from source (update the checkout instead)",
    };
  }
  if (!options.manifestUrl && !deps.settings.manifestUrl) {
    return { status: 400, reason: "No manifest URL: pass manifestUrl or set update.manifestUrl" };
  }
  if (!deps.settings.publicKey) {
    return {
      status: 409,
      reason:
        "No update.publicKey configured: outpost installs only signed updates (see outpost update keygen)",
    };
  }
  return undefined;
}
