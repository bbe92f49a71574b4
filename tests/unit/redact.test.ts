/**
 * URLs shown in logs, status and reports have their credentials and query strings masked
 * (SPEC §14): an update manifest addressed with credentials and a presigned query, end to end
 * through the updater's log lines and `GET /api/v1/update`.
 */
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Hono } from "hono";
import { redactUrl, redactUrlsIn } from "../../src/core/redact.ts";
import { createLogger } from "../../src/telemetry/mod.ts";
import { createUpdater, generateSigningKey, mountUpdateRoutes, updatePaths } from "../../src/update/mod.ts";
import { removeDir, tempDir, waitFor } from "../helpers/procs.ts";
import { fakeBinary, ReleaseServer } from "../e2e/update_helpers.ts";

Deno.test("redactUrl masks userinfo and query, keeps scheme, host, port and path", () => {
  assert.equal(
    redactUrl("https://user:s3cret@example.com:8443/r/manifest.json?X-Amz-Signature=abc"),
    "https://***@example.com:8443/r/manifest.json?***",
  );
  assert.equal(redactUrl("mqtt://dev:tok@10.0.0.1:1883"), "mqtt://***@10.0.0.1:1883");
  assert.equal(redactUrl("grpc://127.0.0.1:7443"), "grpc://127.0.0.1:7443");
  assert.equal(redactUrl("not a url"), "***");
  assert.equal(
    redactUrlsIn("Cannot fetch https://a:b@h.example/m.json?sig=1: HTTP 404."),
    "Cannot fetch https://***@h.example/m.json?***: HTTP 404.",
  );
});

Deno.test({
  name: "an update from a manifest URL with credentials and a presigned query: no log line and no status " +
    "answer shows either",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-redact-");
    const server = await new ReleaseServer().start();
    try {
      mkdirSync(join(dir, "bin"));
      mkdirSync(join(dir, "data"));
      const paths = updatePaths(join(dir, "bin/outpost"), join(dir, "data"));
      writeFileSync(paths.exe, fakeBinary("0.0.1", "exit 0"), { mode: 0o755 });
      const lines: string[] = [];
      const updater = createUpdater({
        paths,
        version: "0.0.1",
        target: "linux-x64",
        compiled: true,
        settings: { publicKey: generateSigningKey().publicKey, trialSeconds: 60, maxStarts: 3 },
        log: createLogger("debug", (l) => lines.push(l)),
        pid: 1,
        by: "agent",
      });
      const app = new Hono();
      mountUpdateRoutes(app, updater);
      const secretUrl = server.url("/missing/manifest.json").replace("http://", "http://releases:hunter22@") +
        "?X-Amz-Signature=presigned-secret";
      const post = await app.request("/api/v1/update", {
        method: "POST",
        body: JSON.stringify({ manifestUrl: secretUrl }),
        headers: { "content-type": "application/json", "content-length": "1" },
      });
      assert.equal(post.status, 202);
      const status = await waitFor(
        async () => {
          const s = await (await app.request("/api/v1/update")).json();
          return s.state === "failed" ? s : undefined;
        },
        10_000,
        "the update to fail",
      );
      const shown = JSON.stringify(status) + "\n" + lines.join("\n");
      assert.ok(shown.includes("/missing/manifest.json"), shown);
      for (const secret of ["hunter22", "presigned-secret", "releases:"]) {
        assert.ok(!shown.includes(secret), `"${secret}" shown: ${shown}`);
      }
      updater.stop();
    } finally {
      await server.close();
      removeDir(dir);
    }
  },
});

Deno.test({
  name:
    "a manifest that never ends is refused past 1 MiB, read as a stream (the agent does not hold it whole)",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = tempDir("outpost-manifest-");
    let served = 0;
    const abort = new AbortController();
    const chunk = new TextEncoder().encode(" ".repeat(64 * 1024));
    const server = Deno.serve(
      { port: 0, hostname: "127.0.0.1", signal: abort.signal, onListen: () => {} },
      () =>
        new Response(
          new ReadableStream({
            pull(controller) {
              served += chunk.length;
              if (served > 512 * 1024 * 1024) controller.close();
              else controller.enqueue(chunk);
            },
          }),
          { headers: { "content-type": "application/json" } },
        ),
    );
    try {
      mkdirSync(join(dir, "bin"));
      mkdirSync(join(dir, "data"));
      const paths = updatePaths(join(dir, "bin/outpost"), join(dir, "data"));
      writeFileSync(paths.exe, fakeBinary("0.0.1", "exit 0"), { mode: 0o755 });
      const updater = createUpdater({
        paths,
        version: "0.0.1",
        target: "linux-x64",
        compiled: true,
        settings: { publicKey: generateSigningKey().publicKey, trialSeconds: 60, maxStarts: 3 },
        log: createLogger("error", () => {}),
        pid: 1,
        by: "agent",
      });
      const started = Date.now();
      const result = await updater.check({
        manifestUrl: `http://127.0.0.1:${server.addr.port}/manifest.json`,
      })
        .catch((e: Error) => e);
      const reason = result instanceof Error ? result.message : JSON.stringify(result);
      assert.match(reason, /over 1048576 bytes/);
      assert.ok(served < 16 * 1024 * 1024, `served ${served} bytes before the refusal`);
      assert.ok(Date.now() - started < 10_000);
      updater.stop();
    } finally {
      abort.abort();
      await server.finished;
      removeDir(dir);
    }
  },
});
