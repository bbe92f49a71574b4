/**
 * downloadArtifact against a loopback server: resume with Range after a cut (in one run and
 * across runs through the state file), servers that ignore Range, truncated and oversized files,
 * permanent and retryable HTTP errors.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { downloadArtifact, type DownloadOptions } from "../../../src/update/mod.ts";
import { removeDir, tempDir } from "../../helpers/procs.ts";
import { ReleaseServer } from "../../e2e/update_helpers.ts";

const data = new Uint8Array(3 * 1024 * 1024).map((_, i) => (i * 7919) % 251);
const sha256 = createHash("sha256").update(data).digest("hex");

async function withServer(fn: (s: ReleaseServer, dir: string, o: DownloadOptions) => Promise<void>) {
  const server = await new ReleaseServer().start();
  const dir = tempDir("outpost-download-");
  server.put("/a", data);
  const options: DownloadOptions = {
    url: server.url("/a"),
    sha256,
    size: data.length,
    version: "1.0.0",
    part: join(dir, ".outpost.update.part"),
    partState: join(dir, ".outpost.update.json"),
    backoffMs: 10,
  };
  try {
    await fn(server, dir, options);
  } finally {
    await server.close();
    removeDir(dir);
  }
}

const same = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex") === sha256;

Deno.test("a download cut mid-body resumes with Range in the same run", async () => {
  await withServer(async (server, _dir, o) => {
    server.fault("/a", "cut", 1_000_000);
    const progress: number[] = [];
    const r = await downloadArtifact({ ...o, onProgress: (b) => progress.push(b) });
    assert.deepEqual(r, { ok: true, resumedFrom: 0, rangeRequests: 1 });
    assert.ok(same(o.part));
    assert.deepEqual(server.requests.map((q) => [q.range, q.status]), [[null, 200], ["bytes=1000000-", 206]]);
    assert.equal(progress.at(-1), data.length);
  });
});

Deno.test("a later run resumes the partial file its state file describes; another artifact starts over", async () => {
  await withServer(async (server, _dir, o) => {
    writeFileSync(o.part, data.subarray(0, 12345));
    writeFileSync(o.partState, JSON.stringify({ sha256, size: data.length }));
    const r = await downloadArtifact(o);
    assert.deepEqual(r, { ok: true, resumedFrom: 12345, rangeRequests: 1 });
    assert.equal(server.requests[0].range, "bytes=12345-");
    assert.ok(same(o.part));

    // A part that belongs to another artifact (another sha256) is discarded.
    writeFileSync(o.part, new Uint8Array(500).fill(9));
    writeFileSync(o.partState, JSON.stringify({ sha256: "f".repeat(64), size: data.length }));
    const again = await downloadArtifact(o);
    assert.equal(again.ok && again.resumedFrom, 0);
    assert.equal(server.requests[1].range, null);
    assert.ok(same(o.part));

    // A complete part is not fetched again.
    const before = server.requests.length;
    assert.ok((await downloadArtifact(o)).ok);
    assert.equal(server.requests.length, before);
  });
});

Deno.test("a server that ignores Range (200) restarts the file from zero, correctly", async () => {
  await withServer(async (server, _dir, o) => {
    writeFileSync(o.part, data.subarray(0, 1000));
    writeFileSync(o.partState, JSON.stringify({ sha256, size: data.length }));
    const noRange: typeof fetch = (url, init) => fetch(url, { ...init, headers: {} });
    assert.ok((await downloadArtifact({ ...o, fetch: noRange })).ok);
    assert.ok(same(o.part));
    assert.equal(server.requests[0].status, 200);
  });
});

Deno.test("truncated, oversized and missing artifacts are refused for good; 5xx is retried", async () => {
  await withServer(async (server, _dir, o) => {
    server.put("/short", data.subarray(0, 1000));
    const short = await downloadArtifact({ ...o, url: server.url("/short") });
    assert.ok(!short.ok && !short.resumable);
    assert.match(short.reason, /Size mismatch: the artifact at .* is 1000 bytes, the manifest says 3145728/);

    server.put("/long", new Uint8Array(data.length + 10));
    const long = await downloadArtifact({ ...o, url: server.url("/long") });
    assert.ok(!long.ok && /is \d+ bytes, the manifest says/.test(long.reason));

    const missing = await downloadArtifact({ ...o, url: server.url("/missing") });
    assert.ok(!missing.ok && !missing.resumable);
    assert.match(missing.reason, /HTTP 404/);

    let calls = 0;
    const flaky: typeof fetch = (url, init) => {
      calls++;
      if (calls <= 2) return Promise.resolve(new Response("busy", { status: 503 }));
      return fetch(url, init);
    };
    assert.ok((await downloadArtifact({ ...o, fetch: flaky })).ok);
    assert.equal(calls, 3);

    rmSync(o.part);
    const down: typeof fetch = () => Promise.resolve(new Response("busy", { status: 503 }));
    const gaveUp = await downloadArtifact({ ...o, fetch: down, attempts: 3 });
    assert.ok(!gaveUp.ok && gaveUp.resumable);
    assert.match(gaveUp.reason, /failed 3 times in a row: .*HTTP 503/);
  });
});

Deno.test("a stalled body is dropped after the idle timeout and resumed", async () => {
  await withServer(async (server, _dir, o) => {
    server.fault("/a", "stall", 500_000);
    const r = await downloadArtifact({ ...o, idleTimeoutMs: 300 });
    assert.ok(r.ok, JSON.stringify(r));
    assert.ok(same(o.part));
    assert.equal(server.requests[1].range, "bytes=500000-");
    assert.ok(existsSync(o.partState));
  });
});
