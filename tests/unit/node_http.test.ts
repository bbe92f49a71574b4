/**
 * The Node HTTP adapter (src/runtime/mod.ts) under a real Node process: request bodies stream,
 * so 300 MiB sent to an unauthenticated or over-limit request does not grow the process.
 */
import assert from "node:assert/strict";
import { createConnection } from "node:net";
import { join } from "node:path";
import { rssMb } from "../../scripts/bench/procs.ts";
import { removeDir, ROOT, startProcess, tempDir } from "../helpers/procs.ts";

const BUN = join(ROOT, "node_modules/.bin/bun");
const MIB = 1024 * 1024;

/** Sends a request with a chunked body of `mib` MiB (or a declared length), returns the status. */
function send(port: number, auth: string, mib: number, declare: boolean): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ port, host: "127.0.0.1" });
    let got = "";
    let sent = 0;
    const chunk = new Uint8Array(MIB).fill(0x20);
    const head = declare ? `content-length: ${mib * MIB}\r\n` : "transfer-encoding: chunked\r\n";
    s.on("data", (d) => {
      got += d.toString();
      const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
      if (m) {
        s.destroy();
        resolve(Number(m[1]));
      }
    });
    // Writes fail (EPIPE) once the server stops reading; the answer may still be on its way.
    s.on("error", () => {});
    s.on("close", () => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
      if (m) resolve(Number(m[1]));
      else reject(new Error(`no answer after ${sent} MiB`));
    });
    s.on("connect", () => {
      s.write(`POST /in HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${auth}\r\n${head}\r\n`);
      const pump = () => {
        while (sent < mib) {
          sent++;
          const ok = declare
            ? s.write(chunk)
            : s.write(`${MIB.toString(16)}\r\n`) && s.write(chunk) && s.write("\r\n");
          if (!ok) return void s.once("drain", pump);
        }
        if (!declare) s.write("0\r\n\r\n");
      };
      pump();
    });
  });
}

Deno.test({
  name: "Node HTTP adapter: 300 MiB to an unauthenticated request, an over-limit stream and an over-limit " +
    "Content-Length are answered early and the process does not grow",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-node-http-");
    const out = join(dir, "serve.mjs");
    const build = await new Deno.Command(BUN, {
      args: ["build", "--target=node", join(ROOT, "tests/unit/node_http_fixture.ts"), "--outfile", out],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(build.code, 0, new TextDecoder().decode(build.stderr));
    const proc = startProcess(["node", out]);
    try {
      const port = Number((await proc.waitForEvent("listening")).port);
      const before = rssMb(proc.pid);
      assert.equal(await send(port, "wrong", 300, false), 401);
      assert.equal(await send(port, "right", 300, false), 413);
      assert.equal(await send(port, "right", 300, true), 413);
      assert.equal(await send(port, "wrong", 300, true), 401);
      // A small authenticated body still arrives whole.
      const res = await fetch(`http://127.0.0.1:${port}/in`, {
        method: "POST",
        body: "x".repeat(200_000),
        headers: { authorization: "Bearer right" },
      });
      assert.deepEqual(await res.json(), { bytes: 200_000, remote: "127.0.0.1" });
      const after = rssMb(proc.pid);
      console.log(
        `node adapter: RSS ${before.rss.toFixed(1)} MB before, peak ${
          after.peak.toFixed(1)
        } MB after 4 × 300 MiB`,
      );
      assert.ok(after.peak - before.rss < 64, `peak RSS grew ${(after.peak - before.rss).toFixed(1)} MB`);

      // Server-Sent Events stream as they come; a client that never reads stays at its queue's bound
      // and does not hold up the others.
      const auth = { authorization: "Bearer right" };
      const stalled = createConnection({ port, host: "127.0.0.1" });
      stalled.pause();
      stalled.write(`GET /api/v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer right\r\n\r\n`);
      const events = await fetch(`http://127.0.0.1:${port}/api/v1/events`, { headers: auth });
      assert.equal(events.status, 200);
      const reader = events.body!.getReader();
      const decoder = new TextDecoder();
      let text = decoder.decode((await reader.read()).value);
      assert.match(text, /^: outpost events/, "the first bytes arrive before any event");
      let published = 0;
      let report: { clients: number; queued: number } = { clients: 0, queued: 0 };
      let seen = 0;
      for (let round = 0; round < 50; round++) {
        const r = await fetch(`http://127.0.0.1:${port}/publish?n=50`, { method: "POST", headers: auth });
        report = await r.json();
        published += 50;
        while (seen < published) {
          text = decoder.decode((await reader.read()).value, { stream: true });
          seen += (text.match(/^event: log$/gm) ?? []).length;
        }
      }
      await reader.cancel();
      stalled.destroy();
      assert.equal(seen, published, "the reading stream got every event");
      assert.equal(report.clients, 2);
      assert.equal(report.queued, 64, "the stalled stream's queue is full and bounded");
    } finally {
      await proc.kill("SIGKILL");
      removeDir(dir);
    }
  },
});
