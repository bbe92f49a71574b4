/** The on-disk log ring: bounded, kept across reopenings (restarts), 0600, read filtered. */
import assert from "node:assert/strict";
import { appendFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { logRingPaths, openLogRing, parseLogQuery, readLogRing } from "../../src/telemetry/mod.ts";
import { removeDir, tempDir } from "../helpers/procs.ts";

const line = (i: number, level = "info", ts = new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString()) =>
  JSON.stringify({ ts, level, event: "test.line", i, pad: "x".repeat(200) });

Deno.test("the ring never holds more than maxBytes (plus one line), whatever is written, and its files are 0600", () => {
  const dir = tempDir();
  try {
    const ring = openLogRing(dir, 65536);
    for (let i = 0; i < 5000; i++) ring.append(line(i));
    ring.close();
    const paths = logRingPaths(dir);
    const total = readdirSync(paths.dir).reduce((n, f) => n + statSync(join(paths.dir, f)).size, 0);
    assert.ok(total <= 65536 + 300, `ring holds ${total} bytes`);
    assert.ok(total > 65536 / 2, "and keeps more than the newest half");
    for (const f of readdirSync(paths.dir)) assert.equal(statSync(join(paths.dir, f)).mode & 0o777, 0o600);
    assert.equal(statSync(paths.dir).mode & 0o777, 0o700);
    const { lines } = readLogRing(dir);
    assert.equal(lines[lines.length - 1].i, 4999, "the newest line is there");
    const is = lines.map((l) => l.i as number);
    assert.deepEqual(
      is,
      Array.from({ length: is.length }, (_, k) => is[0] + k),
      "a contiguous tail, in order",
    );
  } finally {
    removeDir(dir);
  }
});

Deno.test("the ring survives a restart: a reopened ring appends after the lines already there", () => {
  const dir = tempDir();
  try {
    const first = openLogRing(dir, 1 << 20);
    for (let i = 0; i < 10; i++) first.append(line(i));
    // No close: a process killed -9 leaves its file as it is.
    const second = openLogRing(dir, 1 << 20);
    for (let i = 10; i < 20; i++) second.append(line(i));
    second.close();
    assert.deepEqual(readLogRing(dir).lines.map((l) => l.i), Array.from({ length: 20 }, (_, k) => k));
    // A line cut by a kill -9 mid-write costs that line only, not the next one.
    appendFileSync(logRingPaths(dir).current, '{"ts":"2026-01-01T00:00:30.000Z","level":"in');
    const third = openLogRing(dir, 1 << 20);
    third.append(line(21));
    third.close();
    assert.deepEqual(readLogRing(dir).lines.slice(-2).map((l) => l.i), [19, 21]);
  } finally {
    removeDir(dir);
  }
});

Deno.test("reading filters by level, time and count; a line cut by a crash is skipped", () => {
  const dir = tempDir();
  try {
    const ring = openLogRing(dir, 1 << 20);
    ring.append(line(1, "debug"));
    ring.append(line(2, "info"));
    ring.append(line(3, "warn"));
    ring.append(line(4, "error"));
    ring.append('{"ts":"2026-01-01T00:00:05.000Z","lev'); // cut mid-write
    ring.append(line(6, "info"));
    ring.close();
    assert.deepEqual(readLogRing(dir).lines.map((l) => l.i), [1, 2, 3, 4, 6]);
    assert.deepEqual(readLogRing(dir, { level: "warn" }).lines.map((l) => l.i), [3, 4]);
    assert.deepEqual(readLogRing(dir, { since: Date.UTC(2026, 0, 1, 0, 0, 3) }).lines.map((l) => l.i), [
      3,
      4,
      6,
    ]);
    assert.deepEqual(readLogRing(dir, { lines: 2 }).lines.map((l) => l.i), [4, 6]);
    assert.deepEqual(readLogRing(dir, { lines: 2, level: "info" }).lines.map((l) => l.i), [4, 6]);
  } finally {
    removeDir(dir);
  }
});

Deno.test("a logs request is validated with a path for each problem; since takes a time or a duration", () => {
  const now = Date.UTC(2026, 0, 1, 12);
  assert.deepEqual(parseLogQuery({ since: "15m", level: "warn", lines: 10 }, now), {
    ok: true,
    value: { since: now - 15 * 60_000, level: "warn", lines: 10 },
  });
  const iso = parseLogQuery({ since: "2026-01-01T10:00:00Z" }, now);
  assert.ok(iso.ok && iso.value.since === Date.UTC(2026, 0, 1, 10));
  const bad = parseLogQuery({ since: "yesterday", level: 3, lines: 10001, more: true }, now);
  assert.ok(!bad.ok);
  assert.deepEqual(bad.issues.map((i) => i.path), ["/more", "/since", "/level", "/lines"]);
  assert.deepEqual(parseLogQuery([], now), {
    ok: false,
    issues: [{ path: "", message: "must be an object" }],
  });
});
