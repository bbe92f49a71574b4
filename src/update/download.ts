/**
 * Downloads an artifact to a temporary file beside the executable, resuming with HTTP Range.
 *
 * The partial file (`part`) grows only by appending what the server sent; `partState` records
 * what it is meant to become (sha256, size, url, version), so that a later run, also after a
 * restart or a kill -9, resumes it instead of starting over. A server that ignores Range (200)
 * restarts the file from zero; one that answers a different range is refused. A body that ends
 * cleanly short of the expected size is a truncated artifact (refused); one cut off mid-way is an
 * interruption (resumed, up to `attempts` times in a row without progress).
 */
import {
  closeSync,
  existsSync,
  fsyncSync,
  ftruncateSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { writeFileAtomic } from "./_files.ts";
import { errorMessage } from "../core/errors.ts";

export interface DownloadTarget {
  url: string;
  sha256: string;
  size: number;
  version: string;
}

export interface DownloadOptions extends DownloadTarget {
  part: string;
  partState: string;
  signal?: AbortSignal;
  onProgress?: (bytes: number, total: number) => void;
  /** Consecutive attempts without progress before giving up (default 5). */
  attempts?: number;
  /** A response that sends nothing for this long is dropped and resumed (default 60 s). */
  idleTimeoutMs?: number;
  /** First retry delay; doubles each time (default 500 ms). */
  backoffMs?: number;
  onEvent?: (
    event: "update.download.resume" | "update.download.interrupted",
    fields: Record<string, unknown>,
  ) => void;
  fetch?: typeof fetch;
}

export type DownloadResult =
  | { ok: true; resumedFrom: number; rangeRequests: number }
  | {
    ok: false;
    reason: string; /** The partial file is worth keeping for a later resume. */
    resumable: boolean;
  };

/** Thrown inside the loop for a failure that no retry can fix. */
class Permanent extends Error {}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** Keeps `part` only if `partState` says it belongs to this very artifact. */
function preparePart(o: DownloadOptions): void {
  let state: Partial<DownloadTarget> | undefined;
  try {
    state = JSON.parse(readFileSync(o.partState, "utf8"));
  } catch {
    state = undefined;
  }
  if (!state || state.sha256 !== o.sha256 || state.size !== o.size || !existsSync(o.part)) {
    rmSync(o.part, { force: true });
    writeFileAtomic(
      o.partState,
      JSON.stringify({ url: o.url, sha256: o.sha256, size: o.size, version: o.version }) + "\n",
      0o600,
    );
  }
}

export async function downloadArtifact(o: DownloadOptions): Promise<DownloadResult> {
  const doFetch = o.fetch ?? fetch;
  const maxAttempts = o.attempts ?? 5;
  const idleMs = o.idleTimeoutMs ?? 60_000;
  let backoff = o.backoffMs ?? 500;
  preparePart(o);
  const resumedFrom = sizeOf(o.part);
  let rangeRequests = 0;
  let failures = 0;
  if (resumedFrom > 0) o.onEvent?.("update.download.resume", { from: resumedFrom, size: o.size });

  while (true) {
    if (o.signal?.aborted) return { ok: false, reason: "The download was cancelled", resumable: true };
    let have = sizeOf(o.part);
    if (have > o.size) {
      rmSync(o.part, { force: true });
      have = 0;
    }
    if (have === o.size) return { ok: true, resumedFrom, rangeRequests };
    const progressBefore = have;
    try {
      await fetchOnce(o, doFetch, have, idleMs, () => rangeRequests++);
      if (sizeOf(o.part) === o.size) return { ok: true, resumedFrom, rangeRequests };
    } catch (error) {
      if (error instanceof Permanent) return { ok: false, reason: error.message, resumable: false };
      if (o.signal?.aborted) return { ok: false, reason: "The download was cancelled", resumable: true };
      const now = sizeOf(o.part);
      failures = now > progressBefore ? 1 : failures + 1;
      o.onEvent?.("update.download.interrupted", {
        bytes: now,
        size: o.size,
        error: errorMessage(error),
        attempt: failures,
      });
      if (failures >= maxAttempts) {
        return {
          ok: false,
          reason: `The download of ${o.url} failed ${failures} times in a row: ${errorMessage(error)}`,
          resumable: true,
        };
      }
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 30_000);
    }
  }
}

/** One request from byte `have` on; appends to `part`. Throws Permanent, or anything to retry. */
async function fetchOnce(
  o: DownloadOptions,
  doFetch: typeof fetch,
  have: number,
  idleMs: number,
  countRange: () => void,
): Promise<void> {
  const ac = new AbortController();
  const onAbort = () => ac.abort();
  o.signal?.addEventListener("abort", onAbort);
  let idle = setTimeout(() => ac.abort(), idleMs);
  const touch = () => {
    clearTimeout(idle);
    idle = setTimeout(() => ac.abort(), idleMs);
  };
  const headers: Record<string, string> = {};
  if (have > 0) {
    headers.range = `bytes=${have}-`;
    countRange();
  }
  let fd: number | undefined;
  try {
    let response: Response;
    try {
      response = await doFetch(o.url, { headers, signal: ac.signal, redirect: "follow" });
    } catch (error) {
      throw new Error(`Cannot reach ${o.url}: ${errorMessage(error)}`);
    }
    let start = 0;
    if (response.status === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(response.headers.get("content-range") ?? "");
      if (!m || Number(m[1]) !== have) {
        await response.body?.cancel();
        throw new Permanent(
          `The server answered the range request for ${o.url} with the wrong range ` +
            `(${response.headers.get("content-range")}, asked for bytes ${have}-)`,
        );
      }
      if (m[3] !== "*" && Number(m[3]) !== o.size) {
        await response.body?.cancel();
        throw new Permanent(sizeMismatch(o, Number(m[3])));
      }
      start = have;
    } else if (response.status === 200) {
      const length = response.headers.get("content-length");
      if (length !== null && Number(length) !== o.size) {
        await response.body?.cancel();
        throw new Permanent(sizeMismatch(o, Number(length)));
      }
      start = 0; // The server ignored Range (or there was none): start over.
    } else if (response.status === 416) {
      const total = /\/(\d+)$/.exec(response.headers.get("content-range") ?? "")?.[1];
      await response.body?.cancel();
      throw new Permanent(
        total
          ? sizeMismatch(o, Number(total))
          : `The server refused the range bytes=${have}- of ${o.url} (416)`,
      );
    } else {
      await response.body?.cancel();
      const what = `The download of ${o.url} failed: HTTP ${response.status} ${response.statusText}`.trim();
      if (response.status >= 500 || response.status === 408 || response.status === 429) throw new Error(what);
      throw new Permanent(what);
    }
    if (!response.body) throw new Permanent(`The server sent no body for ${o.url}`);
    fd = openSync(o.part, start === 0 ? "w" : "a", 0o600);
    if (start === 0) ftruncateSync(fd, 0);
    let bytes = start;
    o.onProgress?.(bytes, o.size);
    const reader = response.body.getReader();
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      touch();
      if (bytes + value.length > o.size) {
        await reader.cancel();
        throw new Permanent(`The artifact at ${o.url} is bigger than the ${o.size} bytes the manifest says`);
      }
      writeSync(fd, value);
      bytes += value.length;
      o.onProgress?.(bytes, o.size);
    }
    fsyncSync(fd);
    if (bytes < o.size) {
      // The body ended cleanly (the server said it was complete) short of the size: a truncated
      // file on the server, not an interruption.
      throw new Permanent(sizeMismatch(o, bytes));
    }
  } finally {
    clearTimeout(idle);
    o.signal?.removeEventListener("abort", onAbort);
    if (fd !== undefined) {
      try {
        fsyncSync(fd);
      } catch { /* best effort: the data is re-verified anyway */ }
      closeSync(fd);
    }
  }
}

function sizeMismatch(o: DownloadOptions, actual: number): string {
  return `Size mismatch: the artifact at ${o.url} is ${actual} bytes, the manifest says ${o.size} ` +
    `(a truncated or wrong file)`;
}
