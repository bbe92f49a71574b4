/**
 * The agent's log lines on disk, bounded and kept across restarts (SPEC §12): two files in
 * `<dataDir>/logs/`, `outpost.log` (written) and `outpost.log.1` (the half before). When the
 * written file reaches half of `log.maxBytes` it becomes `.1` (one rename, replacing the older
 * half) and a new file starts, so the ring never holds more than `maxBytes` plus one line.
 * Files are 0600 whatever the umask; the folder 0700. A line that cannot be written (disk full)
 * is given up silently: logging never stops the agent.
 *
 * Readers (`outpost logs`, `GET /api/v1/logs`, the hub's `POST /api/v1/edges/{edge}/logs`) read
 * the same two files, oldest first, filtered by time, level and count.
 */
import { Buffer } from "node:buffer";
import {
  chmodSync,
  closeSync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import type { Level } from "./events.ts";

export const LOG_RING_DEFAULT_BYTES = 4 * 1024 * 1024;
/** At most this many lines in one answer, and at most this many bytes of them. */
export const LOG_READ_MAX_LINES = 10_000;
export const LOG_READ_MAX_BYTES = 1024 * 1024;

const LEVELS: Record<string, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export function logRingPaths(dataDir: string): { dir: string; current: string; previous: string } {
  const dir = join(dataDir, "logs");
  return { dir, current: join(dir, "outpost.log"), previous: join(dir, "outpost.log.1") };
}

export interface LogRing {
  /** Appends one line (without its newline). */
  append(line: string): void;
  close(): void;
}

export function openLogRing(dataDir: string, maxBytes = LOG_RING_DEFAULT_BYTES): LogRing {
  const paths = logRingPaths(dataDir);
  const half = Math.max(1024, Math.floor(maxBytes / 2));
  let fd: number | undefined;
  let size = 0;
  let broken = false;

  const open = () => {
    mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
    chmodSync(paths.dir, 0o700);
    fd = openSync(paths.current, "a+", 0o600);
    chmodSync(paths.current, 0o600);
    size = fstatSync(fd).size;
    // A process killed mid-line left it without its newline: end it, so the next line stays whole.
    if (size > 0) {
      const last = Buffer.alloc(1);
      readSync(fd, last, 0, 1, size - 1);
      if (last[0] !== 0x0a) {
        writeSync(fd, "\n");
        size += 1;
      }
    }
  };

  return {
    append(line) {
      if (broken) return;
      try {
        if (fd === undefined) open();
        const bytes = Buffer.from(line + "\n", "utf8");
        if (size > 0 && size + bytes.length > half) {
          closeSync(fd!);
          fd = undefined;
          renameSync(paths.current, paths.previous);
          open();
        }
        writeSync(fd!, bytes);
        size += bytes.length;
      } catch {
        // A full or read-only disk: the line still went to stdout. Try again on the next line
        // only after reopening, so one failure does not become one per line forever.
        if (fd !== undefined) {
          try {
            closeSync(fd);
          } catch { /* already closed */ }
        }
        fd = undefined;
      }
    },
    close() {
      broken = true;
      if (fd !== undefined) {
        try {
          closeSync(fd);
        } catch { /* already closed */ }
      }
      fd = undefined;
    },
  };
}

export interface LogQuery {
  /** Only lines at or after this time (ms since the epoch). */
  since?: number;
  /** Only lines at this level or above. */
  level?: Level;
  /** At most this many lines, the newest (default and maximum `LOG_READ_MAX_LINES`). */
  lines?: number;
}

export interface LogLine {
  ts: string;
  level: string;
  event: string;
  [field: string]: unknown;
}

/** The ring's lines, oldest first, filtered; `truncated` when older matching lines were left out. */
export function readLogRing(dataDir: string, query: LogQuery = {}): { lines: LogLine[]; truncated: boolean } {
  const paths = logRingPaths(dataDir);
  const min = query.level ? LEVELS[query.level] : 0;
  const limit = Math.min(query.lines ?? LOG_READ_MAX_LINES, LOG_READ_MAX_LINES);
  const matching: LogLine[] = [];
  for (const file of [paths.previous, paths.current]) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const raw of text.split("\n")) {
      if (!raw.startsWith("{")) continue;
      let line: LogLine;
      try {
        line = JSON.parse(raw);
      } catch {
        continue; // a line cut by a crash mid-write
      }
      if (typeof line.ts !== "string" || typeof line.level !== "string") continue;
      if ((LEVELS[line.level] ?? 0) < min) continue;
      if (query.since !== undefined && !(Date.parse(line.ts) >= query.since)) continue;
      matching.push(line);
    }
  }
  let start = Math.max(0, matching.length - limit);
  // Newest first until the byte budget is spent.
  let bytes = 0;
  for (let i = matching.length - 1; i >= start; i--) {
    bytes += JSON.stringify(matching[i]).length + 1;
    if (bytes > LOG_READ_MAX_BYTES) {
      start = i + 1;
      break;
    }
  }
  return { lines: matching.slice(start), truncated: start > 0 };
}

/** `since`: an ISO 8601 time, or a duration back from now ("15m", "2h", "1d"). */
const SINCE = /^(\d+)(ms|s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** The body of a logs request (`{"since"?, "level"?, "lines"?}`): every issue with its path. */
export function parseLogQuery(
  input: unknown,
  now: number,
): { ok: true; value: LogQuery } | { ok: false; issues: { path: string; message: string }[] } {
  const issues: { path: string; message: string }[] = [];
  if (input === null || typeof input !== "object" || Array.isArray(input)) {
    return { ok: false, issues: [{ path: "", message: "must be an object" }] };
  }
  const body = input as Record<string, unknown>;
  const value: LogQuery = {};
  for (const key of Object.keys(body)) {
    if (!["since", "level", "lines"].includes(key)) issues.push({ path: `/${key}`, message: "unknown key" });
  }
  if (body.since !== undefined) {
    const since = typeof body.since === "string" ? parseSince(body.since, now) : undefined;
    if (since === undefined) {
      issues.push({
        path: "/since",
        message:
          'must be an ISO 8601 time ("2026-01-31T12:00:00Z") or a duration back from now ("15m", "2h")',
      });
    } else value.since = since;
  }
  if (body.level !== undefined) {
    if (typeof body.level !== "string" || !(body.level in LEVELS)) {
      issues.push({ path: "/level", message: 'must be "debug", "info", "warn" or "error"' });
    } else value.level = body.level as Level;
  }
  if (body.lines !== undefined) {
    const n = body.lines;
    if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > LOG_READ_MAX_LINES) {
      issues.push({ path: "/lines", message: `must be an integer from 1 to ${LOG_READ_MAX_LINES}` });
    } else value.lines = n;
  }
  return issues.length > 0 ? { ok: false, issues } : { ok: true, value };
}

function parseSince(text: string, now: number): number | undefined {
  const m = SINCE.exec(text);
  if (m) return now - Number(m[1]) * UNIT_MS[m[2]];
  if (!/^\d{4}-\d{2}-\d{2}/.test(text)) return undefined;
  const t = Date.parse(text);
  return Number.isNaN(t) ? undefined : t;
}
