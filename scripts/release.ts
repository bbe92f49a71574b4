/**
 * `npm run release -- --key FILE --base-url URL [--version X] [--dist DIR] [--out FILE]`
 *
 * Writes the signed update manifest for the binaries that `npm run build` left in `dist/`:
 *
 *   {"version", "artifacts": {"<target>": {"url", "sha256", "size"}},
 *    "compressed": {"<target>": {"format": "xz", "url", "sha256", "size"}}, "keyId", "signature"}
 *
 * Each artifact's URL is `<base-url>/<version>/outpost-<target>` (`outpost-linux-armv7.tar.gz` for
 * the armv7 archive), the layout install.sh reads. `compressed` lists the binaries' compressed forms
 * (`outpost-<target>.xz`, from `npm run build -- --compress`) when the build made them: a member
 * of its own, so that agents that do not know it still accept the manifest (an artifact's members
 * are checked strictly).
 * The hashes are computed here from the files (and must match dist/build.json); the version is
 * `--version`, else package.json's, and must be the one the binaries were built with. The
 * signature is ed25519 with the PKCS8 PEM key in FILE (from `outpost update keygen`) over the
 * manifest's canonical bytes (src/update/manifest.ts, docs/update.md). The public key that
 * verifies it is printed, to compare with the devices' `update.publicKey`.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { keyIdOf, parsePrivateKey, publicKeyOf, signManifest, verifyManifest } from "../src/update/mod.ts";
import { parseSemver } from "../src/update/semver.ts";

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), "..");

const USAGE = `Usage: npm run release -- --key FILE --base-url URL [options]

  --key FILE       ed25519 private key, PKCS8 PEM (outpost update keygen --out FILE)
  --base-url URL   where the release is published: artifacts at <URL>/<version>/outpost-<target>
  --version X      the release's version (default: package.json's); must match dist/build.json
  --dist DIR       the build folder (default: dist)
  --out FILE       where to write the manifest (default: <dist>/manifest.json)
  --help           this text`;

class ReleaseError extends Error {}

function sha256(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

export function release(argv: string[]): { path: string; manifest: unknown; publicKey: string } | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      key: { type: "string" },
      "base-url": { type: "string" },
      version: { type: "string" },
      dist: { type: "string" },
      out: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) return undefined;
  if (!values.key) {
    throw new ReleaseError("--key FILE is required (make one with: outpost update keygen --out FILE)");
  }
  if (!values["base-url"]) {
    throw new ReleaseError("--base-url URL is required, e.g. https://releases.example.com");
  }
  const base = values["base-url"].replace(/\/+$/, "");
  if (!/^https?:\/\/[^/]/.test(base)) throw new ReleaseError(`--base-url "${base}" is not an http(s) URL`);
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
  const version: string = values.version ?? pkg.version;
  if (!parseSemver(version)) throw new ReleaseError(`Version "${version}" is not a semver (e.g. 1.2.3)`);

  const dist = resolve(values.dist ?? join(ROOT, "dist"));
  const infoPath = join(dist, "build.json");
  if (!existsSync(infoPath)) {
    throw new ReleaseError(
      `${infoPath} is missing: build first (npm run build -- --version ${version} --target all)`,
    );
  }
  const info = JSON.parse(readFileSync(infoPath, "utf8"));
  if (info.version !== version) {
    throw new ReleaseError(
      `${dist} holds version ${info.version}, not ${version}: build it (npm run build -- --version ${version} --target all)`,
    );
  }
  const targets = Object.keys(info.targets ?? {}).sort();
  if (targets.length === 0) throw new ReleaseError(`${infoPath} lists no binaries`);

  const artifacts: Record<string, { url: string; sha256: string; size: number }> = {};
  const compressed: Record<string, { format: string; url: string; sha256: string; size: number }> = {};
  for (const target of targets) {
    // The Node bundle alone is no device's artifact; the armv7 archive is linux-armv7's.
    if (target === "node") continue;
    const name = target === "linux-armv7" ? "outpost-linux-armv7.tar.gz" : `outpost-${target}`;
    const file = join(dist, name);
    if (!existsSync(file)) throw new ReleaseError(`${file} is missing (build.json lists it)`);
    const hash = sha256(file);
    if (hash !== info.targets[target].sha256) {
      throw new ReleaseError(
        `${file} changed since it was built (sha256 ${hash}, build.json says ${info.targets[target].sha256})`,
      );
    }
    artifacts[target] = {
      url: `${base}/${version}/${name}`,
      sha256: hash,
      size: statSync(file).size,
    };
    const packed = info.targets[target].compressed;
    if (packed) {
      const path = join(dist, packed.file);
      if (!existsSync(path)) throw new ReleaseError(`${path} is missing (build.json lists it)`);
      const packedHash = sha256(path);
      if (packedHash !== packed.sha256) {
        throw new ReleaseError(
          `${path} changed since it was built (sha256 ${packedHash}, build.json says ${packed.sha256})`,
        );
      }
      compressed[target] = {
        format: packed.format,
        url: `${base}/${version}/${packed.file}`,
        sha256: packedHash,
        size: statSync(path).size,
      };
    }
  }

  let pem: string;
  try {
    pem = readFileSync(values.key, "utf8");
  } catch (error) {
    throw new ReleaseError(
      `Cannot read the key ${values.key}: ${(error as NodeJS.ErrnoException).code ?? error}`,
    );
  }
  let publicKey: string;
  try {
    publicKey = publicKeyOf(parsePrivateKey(pem));
  } catch (error) {
    throw new ReleaseError(`${values.key}: ${(error as Error).message}`);
  }
  const manifest = signManifest(
    Object.keys(compressed).length > 0 ? { version, artifacts, compressed } : { version, artifacts },
    pem,
  );
  // Sign, then check as a device would: never publish a manifest that does not verify.
  const check = verifyManifest(JSON.parse(JSON.stringify(manifest)), publicKey);
  if (!check.ok) throw new ReleaseError(`The signed manifest does not verify: ${check.reason}`);

  const out = resolve(values.out ?? join(dist, "manifest.json"));
  writeFileSync(`${out}.tmp`, JSON.stringify(manifest, null, 2) + "\n");
  renameSync(`${out}.tmp`, out);
  return { path: out, manifest, publicKey };
}

function main(argv: string[]): number {
  let result: ReturnType<typeof release>;
  try {
    result = release(argv);
  } catch (error) {
    const usage = error instanceof ReleaseError ||
      (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS");
    console.error(`error: ${(error as Error).message}${usage ? `\n\n${USAGE}` : ""}`);
    return usage ? 2 : 1;
  }
  if (!result) {
    console.log(USAGE);
    return 0;
  }
  const m = result.manifest as {
    version: string;
    artifacts: Record<string, { url: string; size: number }>;
    compressed?: Record<string, { url: string; size: number }>;
  };
  console.log(`wrote ${result.path}: outpost ${m.version}, signed with key ${keyIdOf(result.publicKey)}`);
  for (const [target, a] of Object.entries(m.artifacts)) {
    console.log(`  ${target}: ${a.url} (${a.size} bytes)`);
    const c = m.compressed?.[target];
    if (c) console.log(`  ${target} compressed: ${c.url} (${c.size} bytes)`);
  }
  console.log(`publish the binaries and manifest.json under ${dirname(Object.values(m.artifacts)[0].url)}/`);
  console.log(`devices verify it with update.publicKey = ${result.publicKey}`);
  return 0;
}

if (import.meta.main) process.exit(main(process.argv.slice(2)));
