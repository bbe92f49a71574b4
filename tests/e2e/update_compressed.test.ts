/**
 * Self-update from the compressed artifact: 0.0.2 built with `--compress` (a fast xz preset: the
 * format is the release's), its manifest written by `npm run release` (the `compressed` member)
 * and served from a loopback server. `outpost update` (no agent running) downloads the .xz when
 * `xz` is on PATH, checks its SHA-256, decompresses it and verifies the binary as always; it falls
 * back to the plain binary without `xz`, when the .xz is missing or when xz cannot decode it; a
 * .xz whose hash is wrong refuses the update and leaves the running binary as it was.
 */
import assert from "node:assert/strict";
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { removeDir, ROOT, tempDir } from "../helpers/procs.ts";
import { signManifest } from "../../src/update/mod.ts";
import { buildDist, runBuild } from "./build_dist.ts";
import { installAgent, opts, ReleaseServer, runExe, sha256Of, versionOf } from "./update_helpers.ts";

const work = tempDir("outpost-update-compressed-");
const XZ = "outpost-linux-x64.xz";

interface Setup {
  server: ReleaseServer;
  v1: string;
  v2: string;
  v2Xz: string;
  v2Sha: string;
  keyPem: string;
  publicKey: string;
  manifest: Record<string, any>;
}

let setup: Promise<Setup> | undefined;

function prepare(): Promise<Setup> {
  setup ??= (async () => {
    const d1 = await buildDist({ outdir: join(work, "build-0.0.1"), targets: "linux-x64", version: "0.0.1" });
    const out2 = join(work, "build-0.0.2");
    const b = await runBuild([
      "--target",
      "linux-x64",
      "--version",
      "0.0.2",
      "--outdir",
      out2,
      "--compress",
      "--xz-preset",
      "0",
    ]);
    assert.equal(b.code, 0, b.stdout + b.stderr);
    const v1 = d1.binaries["linux-x64"];
    const v2 = join(out2, "outpost-linux-x64");
    const server = await new ReleaseServer().start();
    const keyFile = join(work, "release-key.pem");
    const keygen = await runExe(v1, ["update", "keygen", "--out", keyFile]);
    assert.equal(keygen.code, 0, keygen.stderr);
    const publicKey = keygen.stdout.trimEnd().split("\n").at(-1)!;
    // --version defaults to package.json's: give the dist's own.
    const relArgs = [
      "--key",
      keyFile,
      "--base-url",
      server.url("/rel"),
      "--version",
      "0.0.2",
      "--dist",
      out2,
    ];
    const release = await new Deno.Command("npm", {
      args: ["run", "--silent", "release", "--", ...relArgs],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(release.stdout) + new TextDecoder().decode(release.stderr);
    assert.equal(release.code, 0, text);
    const manifest = JSON.parse(readFileSync(join(out2, "manifest.json"), "utf8"));
    server.put("/rel/0.0.2/manifest.json", JSON.stringify(manifest));
    server.putFile("/rel/0.0.2/outpost-linux-x64", v2);
    server.putFile(`/rel/0.0.2/${XZ}`, join(out2, XZ));
    return {
      server,
      v1,
      v2,
      v2Xz: join(out2, XZ),
      v2Sha: await sha256Of(v2),
      keyPem: readFileSync(keyFile, "utf8"),
      publicKey,
      manifest,
    };
  })();
  return setup;
}

/** Runs `outpost update` on a fresh 0.0.1 install against `manifestUrl`; the requests it made. */
async function update(s: Setup, name: string, manifestUrl: string, env: Record<string, string> = {}) {
  const inst = await installAgent(join(work, name), s.v1, { manifestUrl, publicKey: s.publicKey });
  const from = s.server.requests.length;
  const r = await runExe(inst.exe, ["update", "--config", inst.configPath], env);
  const paths = s.server.requests.slice(from).filter((q) => !q.path.endsWith("manifest.json")).map((q) =>
    q.path
  );
  return { inst, r, paths: [...new Set(paths)] };
}

/** Serves the 0.0.2 binary under /<name>/ with a manifest whose `compressed` entry is `xz`. */
function publish(s: Setup, name: string, xz: { bytes?: Uint8Array; sha256: string; size: number } | "none") {
  const base = s.server.url(`/${name}`);
  s.server.putFile(`/${name}/outpost-linux-x64`, s.v2);
  const artifacts = {
    "linux-x64": { ...s.manifest.artifacts["linux-x64"], url: `${base}/outpost-linux-x64` },
  };
  const compressed = xz === "none"
    ? undefined
    : { "linux-x64": { format: "xz", url: `${base}/${XZ}`, sha256: xz.sha256, size: xz.size } };
  if (xz !== "none" && xz.bytes) s.server.put(`/${name}/${XZ}`, xz.bytes);
  const manifest = signManifest(
    { version: "0.0.2", artifacts, ...(compressed ? { compressed } : {}) },
    s.keyPem,
  );
  s.server.put(`/${name}/manifest.json`, JSON.stringify(manifest));
  return s.server.url(`/${name}/manifest.json`);
}

Deno.test({
  ...opts,
  name: "npm run release lists the .xz in the signed manifest's compressed member",
  fn: async () => {
    const s = await prepare();
    const c = s.manifest.compressed?.["linux-x64"];
    assert.ok(c, JSON.stringify(s.manifest));
    assert.equal(c.format, "xz");
    assert.equal(c.url, s.server.url(`/rel/0.0.2/${XZ}`));
    assert.equal(c.sha256, await sha256Of(s.v2Xz));
    assert.equal(c.size, Deno.statSync(s.v2Xz).size);
    assert.ok(c.size < s.manifest.artifacts["linux-x64"].size / 2, "the .xz is much smaller than the binary");
  },
});

Deno.test({
  ...opts,
  name: "with xz on PATH the update downloads the .xz only, verifies it and installs the binary it holds",
  fn: async () => {
    const s = await prepare();
    const { inst, r, paths } = await update(s, "xz", s.server.url("/rel/0.0.2/manifest.json"));
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(paths, [`/rel/0.0.2/${XZ}`], "only the compressed form is downloaded");
    assert.equal(await versionOf(inst.exe), "outpost 0.0.2");
    assert.equal(await sha256Of(inst.exe), s.v2Sha, "the installed binary is the release's, byte for byte");
    assert.deepEqual(
      readdirSync(join(inst.dir, "bin")).sort(),
      ["outpost", "outpost.prev"],
      "no download left",
    );
    removeDir(inst.dir);
  },
});

Deno.test({
  ...opts,
  name: "the plain binary instead: without xz on PATH, with the .xz missing, or a .xz xz cannot decode",
  fn: async (t) => {
    const s = await prepare();
    await t.step("no xz on PATH", async () => {
      const empty = join(work, "empty-path");
      mkdirSync(empty, { recursive: true });
      const { inst, r, paths } = await update(s, "noxz", s.server.url("/rel/0.0.2/manifest.json"), {
        PATH: empty,
      });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.deepEqual(paths, ["/rel/0.0.2/outpost-linux-x64"]);
      assert.equal(await sha256Of(inst.exe), s.v2Sha);
      removeDir(inst.dir);
    });
    await t.step("the .xz is not on the server (404)", async () => {
      const xz = { sha256: await sha256Of(s.v2Xz), size: Deno.statSync(s.v2Xz).size };
      const { inst, r, paths } = await update(s, "missing", publish(s, "missing", xz));
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.deepEqual(paths, [`/missing/${XZ}`, "/missing/outpost-linux-x64"]);
      assert.equal(await sha256Of(inst.exe), s.v2Sha);
      removeDir(inst.dir);
    });
    await t.step("a signed .xz that is not xz data: xz refuses it", async () => {
      const bytes = new TextEncoder().encode("not xz data at all\n".repeat(100));
      const sha256 = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)))
        .map((b) => b.toString(16).padStart(2, "0")).join("");
      const { inst, r, paths } = await update(
        s,
        "undecodable",
        publish(s, "undecodable", {
          bytes,
          sha256,
          size: bytes.length,
        }),
      );
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.deepEqual(paths, [`/undecodable/${XZ}`, "/undecodable/outpost-linux-x64"]);
      assert.equal(await sha256Of(inst.exe), s.v2Sha);
      assert.deepEqual(readdirSync(join(inst.dir, "bin")).sort(), ["outpost", "outpost.prev"]);
      removeDir(inst.dir);
    });
    await t.step("a manifest without a compressed member (an older release)", async () => {
      const { inst, r, paths } = await update(s, "plain", publish(s, "plain", "none"));
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.deepEqual(paths, ["/plain/outpost-linux-x64"]);
      assert.equal(await sha256Of(inst.exe), s.v2Sha);
      removeDir(inst.dir);
    });
  },
});

Deno.test({
  ...opts,
  name: "a .xz whose SHA-256 is not the manifest's is refused: the running binary stays, nothing is left",
  fn: async () => {
    const s = await prepare();
    const good = Deno.readFileSync(s.v2Xz);
    const bad = good.slice();
    bad[Math.floor(bad.length / 2)] ^= 0xff;
    const sha256 = await sha256Of(s.v2Xz);
    const { inst, r, paths } = await update(
      s,
      "corrupt",
      publish(s, "corrupt", { bytes: bad, sha256, size: good.length }),
    );
    assert.notEqual(r.code, 0, r.stdout + r.stderr);
    assert.match(
      r.stdout + r.stderr,
      /SHA-256 mismatch: the compressed artifact from .*outpost-linux-x64\.xz hashes to/,
    );
    assert.deepEqual(paths, [`/corrupt/${XZ}`], "not retried as the plain binary");
    assert.equal(await versionOf(inst.exe), "outpost 0.0.1");
    assert.equal(await sha256Of(inst.exe), await sha256Of(s.v1), "the running binary is unchanged");
    assert.deepEqual(readdirSync(join(inst.dir, "bin")), ["outpost"], "no download left beside it");
    removeDir(inst.dir);
  },
});

Deno.test({
  ...opts,
  name: "(cleanup) stop the release server",
  fn: async () => {
    if (setup) await (await setup).server.close();
    removeDir(work);
  },
});
