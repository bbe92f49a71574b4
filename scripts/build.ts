/**
 * `npm run build -- [--version X] [--target T|all] [--outdir DIR] [--compress] [--no-smoke] [--deno]`
 *
 * Builds the release executables with `bun build --compile` (run with Bun: package.json's
 * `build` script is `bun scripts/build.ts`): one self-contained file per target,
 * `dist/outpost-<T>`, with `--compress` its compressed form `dist/outpost-<T>.xz`
 * (scripts/compress.ts), and `dist/SHA256SUMS` over every artifact in the folder.
 *
 * What makes the file self-contained:
 * - libSQL's loader picks its native addon with a computed `require(\`@libsql/${target}\`)`,
 *   which a bundler cannot follow. A build plugin rewrites that one line into a static
 *   `require("<abs path>/index.node")` of the addon for the *build target* (not the host), so
 *   Bun embeds that addon. The other architectures' addon packages are not installable by
 *   `npm ci` on this host (`cpu` field), so they are fetched with `npm pack` into `.cache/npm/`
 *   at the exact version libsql pins, and checked against package-lock.json's integrity hash.
 * - SQL migrations and protobuf descriptors are generated TS modules (src/db/migrations.gen.ts,
 *   src/proto/hub_descriptor.gen.ts): nothing is read from beside the binary at run time.
 * - The version is a compile-time define, `OUTPOST_BUILD_VERSION`; the target name is another,
 *   `OUTPOST_BUILD_TARGET` (so a musl build reports `linux-x64-musl` and updates itself from the
 *   matching artifact).
 *
 * Each binary is written to a temporary name and renamed into place, and (unless --no-smoke) run
 * once with `--version` from an empty temporary folder: natively, or under qemu-aarch64-static
 * with `.cache/arm64-sysroot` for arm64 when both are present. `dist/build.json` records the
 * version and the per-target hashes; binaries left from a different version are removed so that
 * SHA256SUMS always describes one release.
 *
 * The smoke run sets the engine's GC options that `outpost run` gives itself (src/runtime/gc.ts):
 * the embedded Bun refuses to start with an option it does not know, and that must fail the build,
 * not the agent.
 *
 * `--deno` is an opt-in alternative that uses `deno compile` (it downloads a `denort` runtime per
 * target, which needs network access beyond the npm registry).
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { gcEnvironment } from "../src/runtime/gc.ts";
import { compressBinary, decompressedSha256, RELEASE_PRESET } from "./compress.ts";

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), "..");
const ENTRY = join(ROOT, "src/main.ts");
const CACHE = join(ROOT, ".cache");

/** A release target: its artifact name, Bun's compile target and libSQL's addon package. */
interface Target {
  name: string;
  bunTarget: string;
  libsqlPackage: string;
  arch: "x64" | "arm64";
  libc: "glibc" | "musl";
}

/**
 * x64 uses Bun's *baseline* build (no AVX2 needed): many x86 gateways run Atom or Celeron CPUs
 * that lack AVX2, where the default ("modern", Haswell+) runtime dies with SIGILL.
 */
export const TARGETS: Record<string, Target> = {
  "linux-x64": {
    name: "linux-x64",
    bunTarget: "bun-linux-x64-baseline",
    libsqlPackage: "@libsql/linux-x64-gnu",
    arch: "x64",
    libc: "glibc",
  },
  "linux-arm64": {
    name: "linux-arm64",
    bunTarget: "bun-linux-arm64",
    libsqlPackage: "@libsql/linux-arm64-gnu",
    arch: "arm64",
    libc: "glibc",
  },
  "linux-x64-musl": {
    name: "linux-x64-musl",
    bunTarget: "bun-linux-x64-musl-baseline",
    libsqlPackage: "@libsql/linux-x64-musl",
    arch: "x64",
    libc: "musl",
  },
  "linux-arm64-musl": {
    name: "linux-arm64-musl",
    bunTarget: "bun-linux-arm64-musl",
    libsqlPackage: "@libsql/linux-arm64-musl",
    arch: "arm64",
    libc: "musl",
  },
};

/**
 * Targets that are not Bun executables: `node` is the JavaScript bundle `dist/outpost.mjs` (Node
 * ≥ 20, libSQL's addon from node_modules or from `libsql/` beside it); `linux-armv7` is the
 * archive `dist/outpost-linux-armv7.tar.gz` (that bundle, the armhf addon and a launcher).
 */
export const BUNDLE_TARGETS = ["node", "linux-armv7"] as const;
type BundleTarget = (typeof BUNDLE_TARGETS)[number];

/** The armhf addon package the armv7 archive carries. */
const ARMV7_ADDON = "@libsql/linux-arm-gnueabihf";

/**
 * `--target all`: the published release set: the two binaries and the armv7 archive (install.sh
 * installs it, self-update swaps it). The Node bundle alone is built on request.
 */
export const RELEASE_TARGETS = ["linux-x64", "linux-arm64", "linux-armv7"];

const USAGE = `Usage: npm run build -- [options]

  --version X     version to stamp (default: package.json's)
  --target T      ${[...Object.keys(TARGETS), ...BUNDLE_TARGETS].join(", ")}, all (= ${
  RELEASE_TARGETS.join(" + ")
}),
                  or a comma-separated list; default: this machine's glibc target
  --outdir DIR    output folder (default: dist)
  --compress      also write each binary's compressed form, outpost-<target>.xz (needs xz)
  --no-bytecode   no precompiled bytecode (8 MB smaller binary, 3 MB smaller .xz; slower start-up)
  --xz-preset P   xz preset for --compress (default ${RELEASE_PRESET}; 0-9 build faster, bigger files)
  --no-smoke      do not run the built binaries' --version
  --deno          use deno compile instead of bun build --compile (opt-in; downloads denort)
  --help          this text`;

interface Options {
  version: string;
  targets: Target[];
  bundles: BundleTarget[];
  outdir: string;
  smoke: boolean;
  deno: boolean;
  compress: boolean;
  xzPreset: string;
  bytecode: boolean;
}

class BuildError extends Error {
  override name = "BuildError";
}

function parseOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      version: { type: "string" },
      target: { type: "string" },
      outdir: { type: "string" },
      "no-smoke": { type: "boolean" },
      deno: { type: "boolean" },
      compress: { type: "boolean" },
      "no-bytecode": { type: "boolean" },
      "xz-preset": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) return undefined;
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
  const version = values.version ?? pkg.version;
  if (!/^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/.test(version)) {
    throw new BuildError(`Version "${version}" is not a semver (e.g. 1.2.3 or 1.2.3-rc.1)`);
  }
  const hostTarget = `linux-${process.arch}`;
  const names = (values.target ?? hostTarget).split(",").flatMap((t) =>
    t === "all" ? RELEASE_TARGETS : [t.trim()]
  );
  const unique = [...new Set(names)];
  const bundles = BUNDLE_TARGETS.filter((b) => unique.includes(b));
  const targets = unique.filter((n) => !(BUNDLE_TARGETS as readonly string[]).includes(n)).map((name) => {
    const target = TARGETS[name];
    if (!target) {
      throw new BuildError(
        `Unknown target "${name}": expected one of ${
          [...Object.keys(TARGETS), ...BUNDLE_TARGETS].join(", ")
        } or all`,
      );
    }
    return target;
  });
  const xzPreset = values["xz-preset"] ?? RELEASE_PRESET;
  if (!/^[0-9]e?$/.test(xzPreset)) throw new BuildError(`--xz-preset "${xzPreset}" is not 0-9 or 0e-9e`);
  if (process.platform !== "linux") {
    throw new BuildError(`Building on "${process.platform}" is not supported: use Linux`);
  }
  return {
    version,
    targets,
    bundles,
    outdir: resolve(values.outdir ?? join(ROOT, "dist")),
    smoke: !values["no-smoke"],
    deno: Boolean(values.deno),
    compress: Boolean(values.compress),
    bytecode: !values["no-bytecode"],
    xzPreset,
  };
}

/** The version of each `@libsql/*` addon package that the installed libsql pins. */
function libsqlAddonVersion(pkgName: string): string {
  const libsql = JSON.parse(readFileSync(join(ROOT, "node_modules/libsql/package.json"), "utf8"));
  const version = libsql.optionalDependencies?.[pkgName];
  if (!version) throw new BuildError(`node_modules/libsql/package.json does not list "${pkgName}"`);
  return version;
}

/**
 * The absolute path of the target's libSQL addon: from node_modules when npm installed it (the
 * host's own), else from `.cache/npm/<pkg>-<version>/`, fetched once with `npm pack`.
 */
function libsqlAddon(target: { libsqlPackage: string }): string {
  const version = libsqlAddonVersion(target.libsqlPackage);
  const installed = join(ROOT, "node_modules", target.libsqlPackage);
  if (existsSync(join(installed, "index.node"))) {
    const v = JSON.parse(readFileSync(join(installed, "package.json"), "utf8")).version;
    if (v === version) return join(installed, "index.node");
  }
  const folder = join(CACHE, "npm", `${target.libsqlPackage.replace("/", "+")}-${version}`);
  const addon = join(folder, "package/index.node");
  if (existsSync(addon)) {
    const tarball = readdirSync(folder).find((f) => f.endsWith(".tgz"));
    if (tarball) verifyLockedIntegrity(target.libsqlPackage, version, join(folder, tarball));
    return addon;
  }
  console.log(`fetching ${target.libsqlPackage}@${version} (npm pack) into ${folder}`);
  const tmp = `${folder}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const pack = spawnSync("npm", [
    "pack",
    `${target.libsqlPackage}@${version}`,
    "--silent",
    "--pack-destination",
    tmp,
  ], {
    encoding: "utf8",
  });
  if (pack.status !== 0) {
    throw new BuildError(
      `npm pack ${target.libsqlPackage}@${version} failed: ${pack.stderr.trim() || pack.error}`,
    );
  }
  const tarball = readdirSync(tmp).find((f) => f.endsWith(".tgz"));
  if (!tarball) throw new BuildError(`npm pack ${target.libsqlPackage}@${version} wrote no tarball`);
  verifyLockedIntegrity(target.libsqlPackage, version, join(tmp, tarball));
  const untar = spawnSync("tar", ["-xzf", join(tmp, tarball), "-C", tmp], { encoding: "utf8" });
  if (untar.status !== 0) throw new BuildError(`Unpacking ${tarball} failed: ${untar.stderr.trim()}`);
  if (!existsSync(join(tmp, "package/index.node"))) {
    throw new BuildError(`${tarball} has no package/index.node`);
  }
  rmSync(folder, { recursive: true, force: true });
  renameSync(tmp, folder);
  return addon;
}

/**
 * Checks a fetched tarball against the integrity package-lock.json records for it (npm locks the
 * optional addon packages of every platform, installed or not), as `npm ci` would.
 */
function verifyLockedIntegrity(pkgName: string, version: string, tarball: string): void {
  const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8"));
  const entry = lock.packages?.[`node_modules/${pkgName}`];
  if (!entry?.integrity || entry.version !== version) {
    throw new BuildError(
      `package-lock.json has no integrity for ${pkgName}@${version}: run npm install to lock it`,
    );
  }
  const [algorithm, expected] = String(entry.integrity).split(" ")[0].split(/-(.*)/s);
  const actual = createHash(algorithm).update(readFileSync(tarball)).digest("base64");
  if (actual !== expected) {
    throw new BuildError(
      `${tarball} does not match package-lock.json's integrity for ${pkgName}@${version} ` +
        `(${algorithm}-${expected}, got ${algorithm}-${actual}): delete ${dirname(tarball)} and build again`,
    );
  }
}

/** The line of node_modules/libsql/index.js that picks the addon at run time. */
const LIBSQL_DYNAMIC_REQUIRE = "return require(`@libsql/${target}`);";

/** A Bun plugin that replaces libSQL's run-time pick of its addon with `replacement`. */
function libsqlPlugin(name: string, replacement: string) {
  return {
    name,
    setup(build: any) {
      build.onLoad({ filter: /[\\/]node_modules[\\/]libsql[\\/]index\.js$/ }, (args: { path: string }) => {
        const source = readFileSync(args.path, "utf8");
        if (!source.includes(LIBSQL_DYNAMIC_REQUIRE)) {
          throw new BuildError(
            `${args.path} no longer contains ${LIBSQL_DYNAMIC_REQUIRE}: update the libsql plugin in scripts/build.ts`,
          );
        }
        return { contents: source.replace(LIBSQL_DYNAMIC_REQUIRE, replacement), loader: "js" };
      });
    },
  };
}

/** A Bun plugin that makes libSQL's addon require static, for the build target. */
function libsqlAddonPlugin(addonPath: string) {
  return libsqlPlugin("libsql-static-addon", `return require(${JSON.stringify(addonPath)});`);
}

/**
 * The Node bundle's libSQL loader: the addon in `libsql/index.node` beside the bundle when there
 * is one (the armv7 archive's layout), else libSQL's own pick from node_modules. The path is
 * computed so that the bundler leaves it to run time; `require` is the bundle's
 * `createRequire(import.meta.url)`, so a relative path is taken from the bundle's folder.
 */
const NODE_ADDON_LOADER = "let beside;" +
  ' try { beside = require.resolve(["./libsql", "index.node"].join("/")); } catch { beside = undefined; }' +
  " if (beside) return require(beside);" +
  " return require(`@libsql/${target}`);";

/**
 * outpost speaks Modbus TCP only: `serialport`, which modbus-serial loads for its optional serial
 * ports (inside a try/catch), becomes a module that throws, so no build carries or loads its
 * native binding (a compiled binary would otherwise map it from the build machine's node_modules).
 */
function noSerialPortPlugin() {
  return {
    name: "no-serialport",
    setup(build: any) {
      build.onResolve(
        { filter: /^serialport$/ },
        () => ({ path: "serialport", namespace: "outpost-no-serialport" }),
      );
      build.onLoad({ filter: /.*/, namespace: "outpost-no-serialport" }, () => ({
        contents: 'throw new Error("Serial ports are not part of outpost (Modbus TCP only)");',
        loader: "js",
      }));
    },
  };
}

/**
 * A Bun plugin that makes the `debug` package (the diagnostics of mqtt-packet, mqtt.js and aedes'
 * dependencies, printed only with a DEBUG variable) a logger that is always off. mqtt-packet calls
 * it several times per packet it parses or writes, each call formatting its arguments' context
 * first: about 2% of the agent's CPU per message. outpost has its own logs.
 */
function noDebugPlugin() {
  return {
    name: "no-debug",
    setup(build: any) {
      build.onResolve({ filter: /^debug$/ }, () => ({ path: "debug", namespace: "outpost-no-debug" }));
      build.onLoad({ filter: /.*/, namespace: "outpost-no-debug" }, () => ({
        contents: [
          "function off() {}",
          "off.enabled = false;",
          "off.extend = () => off;",
          "off.log = off;",
          "off.destroy = off;",
          "function createDebug() { return off; }",
          "createDebug.enable = off;",
          "createDebug.disable = () => '';",
          "createDebug.enabled = () => false;",
          "module.exports = createDebug;",
          "module.exports.default = createDebug;",
        ].join("\n"),
        loader: "js",
      }));
    },
  };
}

/** A Bun plugin that lets the Node bundle take libSQL's addon from beside it. */
function libsqlBesidePlugin() {
  return libsqlPlugin("libsql-addon-beside", NODE_ADDON_LOADER);
}

/**
 * `dist/outpost.mjs`: one ES module for Node ≥ 20 with every dependency in it but libSQL's native
 * addon. Bun's bundler (`target: "node"`) is the one the binaries are built with already.
 * Returns what the smoke run printed.
 */
async function buildNodeBundle(version: string, outfile: string, smokeRun: boolean): Promise<string> {
  const Bun = (globalThis as any).Bun;
  if (!Bun) {
    throw new BuildError("Run the build with Bun: npm run build (package.json runs bun scripts/build.ts)");
  }
  const outdir = mkdtempSync(join(dirname(outfile), ".bundle-"));
  try {
    const result = await Bun.build({
      entrypoints: [ENTRY],
      target: "node",
      format: "esm",
      outdir,
      naming: "outpost.mjs",
      define: { OUTPOST_BUILD_VERSION: JSON.stringify(version) },
      minify: { whitespace: true, syntax: true, identifiers: false },
      plugins: [libsqlBesidePlugin(), noSerialPortPlugin(), noDebugPlugin()],
      throw: false,
    });
    if (!result.success) {
      const logs = result.logs.map((l: unknown) => String(l)).join("\n");
      throw new BuildError(`bun build --target=node failed:\n${logs}`);
    }
    const built = join(outdir, "outpost.mjs");
    const smoked = smokeRun ? smokeNode(built, version) : "smoke skipped";
    renameSync(built, outfile);
    return smoked;
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

/** Runs `node <bundle> version` from an empty folder; throws unless it prints the version. */
function smokeNode(bundle: string, version: string): string {
  const cwd = mkdtempSync(join(tmpdir(), "outpost-smoke-"));
  try {
    // The host's addon from this checkout's node_modules, wherever the output folder is.
    const env = { ...process.env, NODE_PATH: join(ROOT, "node_modules") };
    const run = spawnSync("node", [bundle, "version"], { cwd, env, encoding: "utf8", timeout: 60_000 });
    if (run.error && (run.error as NodeJS.ErrnoException).code === "ENOENT") return "node not found: not run";
    const first = run.stdout?.split("\n")[0];
    if (run.status !== 0 || first !== `outpost ${version}`) {
      throw new BuildError(
        `Smoke test of node ${bundle} failed (exit ${run.status}): expected "outpost ${version}", got:\n` +
          `${run.stdout}${run.stderr}${run.error ?? ""}`,
      );
    }
    return `node version: ${run.stdout.trim().split("\n").join(" / ")}`;
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
}

/** The armv7 archive's launcher: runs the bundle beside it (through symlinks) with node ≥ 20. */
export const LAUNCHER = `#!/bin/sh
# outpost: runs the agent's JavaScript bundle (outpost.mjs, beside this script) with Node >= 20.
# OUTPOST_NODE names the node executable (default: node on PATH).
set -eu
self=$0
while [ -L "$self" ]; do
  link=$(readlink "$self")
  case $link in
    /*) self=$link ;;
    *) self=$(dirname "$self")/$link ;;
  esac
done
dir=$(CDPATH='' cd -- "$(dirname -- "$self")" && pwd)
node=\${OUTPOST_NODE:-node}
if ! command -v "$node" >/dev/null 2>&1; then
  echo "outpost: $node not found: install Node.js 20 or newer (https://nodejs.org/en/download, or" >&2
  echo "  your distribution's nodejs package if it is >= 20) or set OUTPOST_NODE" >&2
  exit 127
fi
major=$("$node" -e 'process.stdout.write(process.versions.node.split(".")[0])' 2>/dev/null || echo 0)
if [ "$major" -lt 20 ] 2>/dev/null; then
  echo "outpost: $node is Node.js $("$node" --version 2>/dev/null || echo "of unknown version"): outpost needs 20 or newer" >&2
  exit 1
fi
# The path this was run as (install.sh makes it a link to this launcher): what a self-update replaces.
case $0 in
  /*) OUTPOST_EXE=$0 ;;
  *) OUTPOST_EXE=$(pwd)/$0 ;;
esac
export OUTPOST_EXE
exec "$node" "$dir/outpost.mjs" "$@"
`;

/**
 * `dist/outpost-linux-armv7.tar.gz`: a folder `outpost-<version>-linux-armv7/` holding
 * `outpost.mjs`, `libsql/index.node` (the armhf addon libsql pins, integrity-checked against
 * package-lock.json) and the `outpost` launcher. Written to a temporary name and renamed.
 */
async function buildArmv7Archive(version: string, outfile: string, smokeRun: boolean): Promise<string> {
  const addon = libsqlAddon({ libsqlPackage: ARMV7_ADDON });
  const stage = mkdtempSync(join(dirname(outfile), ".armv7-"));
  try {
    const top = `outpost-${version}-linux-armv7`;
    const folder = join(stage, top);
    mkdirSync(join(folder, "libsql"), { recursive: true });
    const bundle = join(folder, "outpost.mjs");
    await buildNodeBundle(version, bundle, false);
    // This host's node cannot load the armhf addon: the bundle is run here before it goes in.
    const smoked = smokeRun ? `${smokeNode(bundle, version)} (host addon)` : "smoke skipped";
    writeFileSync(join(folder, "libsql/index.node"), readFileSync(addon));
    writeFileSync(join(folder, "outpost"), LAUNCHER, { mode: 0o755 });
    chmodSync(join(folder, "outpost"), 0o755);
    const elf = readFileSync(join(folder, "libsql/index.node")).subarray(0, 20);
    // ELF magic, 32-bit class (1), little-endian (1), e_machine 40 = ARM.
    if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 1 || elf[5] !== 1 || elf.readUInt16LE(18) !== 40) {
      throw new BuildError(`${addon} is not a 32-bit ARM ELF file`);
    }
    const tmp = join(stage, "archive.tar.gz");
    const tar = spawnSync("tar", ["--owner=0", "--group=0", "-czf", tmp, "-C", stage, top], {
      encoding: "utf8",
    });
    if (tar.status !== 0) throw new BuildError(`tar for ${outfile} failed: ${tar.stderr.trim()}`);
    renameSync(tmp, outfile);
    return `${ARMV7_ADDON}@${libsqlAddonVersion(ARMV7_ADDON)} (ARM ELF); ${smoked}`;
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

async function buildWithBun(
  target: Target,
  version: string,
  outfile: string,
  bytecode: boolean,
): Promise<void> {
  const Bun = (globalThis as any).Bun;
  if (!Bun) {
    throw new BuildError("Run the build with Bun: npm run build (package.json runs bun scripts/build.ts)");
  }
  const addon = libsqlAddon(target);
  const result = await Bun.build({
    entrypoints: [ENTRY],
    compile: { target: target.bunTarget, outfile },
    define: {
      OUTPOST_BUILD_VERSION: JSON.stringify(version),
      OUTPOST_BUILD_TARGET: JSON.stringify(target.name),
    },
    minify: { whitespace: true, syntax: true, identifiers: false },
    format: "esm",
    // Precompiled bytecode unless told not to: about 8 MB more binary and 3 MB more compressed
    // download, for a start about twice as fast and 4 MiB less heap (docs/performance.md).
    bytecode,
    plugins: [libsqlAddonPlugin(addon), noSerialPortPlugin(), noDebugPlugin()],
    throw: false,
  });
  if (!result.success) {
    const logs = result.logs.map((l: unknown) => String(l)).join("\n");
    throw new BuildError(`bun build --compile for ${target.name} failed:\n${logs}`);
  }
}

/**
 * deno compile (opt-in). Deno has no compile-time define, so a small generated entry sets the
 * two globals `src/version.ts` and `src/runtime/mod.ts` read, then runs the CLI.
 */
function buildWithDeno(target: Target, version: string, outfile: string): void {
  if (target.libc === "musl") throw new BuildError(`deno compile has no musl target (${target.name})`);
  const denoTarget = target.arch === "x64" ? "x86_64-unknown-linux-gnu" : "aarch64-unknown-linux-gnu";
  mkdirSync(CACHE, { recursive: true });
  const entry = join(CACHE, `deno-entry-${target.name}.ts`);
  writeFileSync(
    entry,
    `(globalThis as any).OUTPOST_BUILD_VERSION = ${JSON.stringify(version)};\n` +
      `(globalThis as any).OUTPOST_BUILD_TARGET = ${JSON.stringify(target.name)};\n` +
      `const { main } = await import(${JSON.stringify(ENTRY)});\n` +
      `const { args, exit } = await import(${JSON.stringify(join(ROOT, "src/runtime/mod.ts"))});\n` +
      `exit(await main(args()));\n`,
  );
  const deno = join(ROOT, "node_modules/.bin/deno");
  const run = spawnSync(deno, ["compile", "-A", "--target", denoTarget, "--output", outfile, entry], {
    stdio: "inherit",
    cwd: ROOT,
  });
  if (run.status !== 0) throw new BuildError(`deno compile for ${target.name} failed (exit ${run.status})`);
}

/** How to run a binary of this target here, if at all: [] natively, qemu prefix, or undefined. */
function runnerFor(target: Target): string[] | undefined {
  if (target.libc === "musl") return undefined;
  if (target.arch === process.arch) return [];
  if (target.arch === "arm64") {
    const sysroot = join(CACHE, "arm64-sysroot");
    const qemu = spawnSync("sh", ["-c", "command -v qemu-aarch64-static"], { encoding: "utf8" }).stdout
      .trim();
    if (qemu && existsSync(join(sysroot, "lib/ld-linux-aarch64.so.1"))) return [qemu, "-L", sysroot];
  }
  return undefined;
}

/** Runs `<binary> --version` from an empty folder; throws unless it prints the version. */
function smoke(target: Target, binary: string, version: string): string {
  const runner = runnerFor(target);
  if (!runner) return "not run here";
  const cwd = mkdtempSync(join(tmpdir(), "outpost-smoke-"));
  try {
    const cmd = [...runner, binary, "--version"];
    const gc = gcEnvironment();
    const env = { ...process.env, ...gc };
    const run = spawnSync(cmd[0], cmd.slice(1), { cwd, env, encoding: "utf8", timeout: 60_000 });
    const first = run.stdout?.split("\n")[0];
    if (run.status !== 0 || first !== `outpost ${version}`) {
      const set = Object.keys(gc).join(" ");
      throw new BuildError(
        `Smoke test of ${binary} failed (exit ${run.status}; run with ${set} set, as src/runtime/gc.ts ` +
          `sets them): expected "outpost ${version}", got:\n${run.stdout}${run.stderr}${run.error ?? ""}`,
      );
    }
    return run.stdout.trim().split("\n").join(" / ");
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
}

function sha256File(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

interface BuildInfo {
  version: string;
  targets: Record<
    string,
    {
      sha256: string;
      size: number;
      builder: string;
      /** The compressed form (`--compress`): its file name, hash and size. */
      compressed?: { file: string; sha256: string; size: number; format: "xz" };
    }
  >;
}

function readBuildInfo(outdir: string): BuildInfo | undefined {
  try {
    return JSON.parse(readFileSync(join(outdir, "build.json"), "utf8"));
  } catch {
    return undefined;
  }
}

/**
 * The release artifacts in `outdir`: binaries `outpost-<target>`, their compressed forms
 * `outpost-<target>.xz`, the bundle `outpost.mjs` and archives `outpost-<target>.tar.gz` (no
 * temporary files).
 */
function binariesIn(outdir: string): string[] {
  return readdirSync(outdir).filter((f) =>
    (/^outpost-[a-z0-9-]+(?:\.tar\.gz|\.xz)?$/.test(f) || f === "outpost.mjs") &&
    statSync(join(outdir, f)).isFile()
  ).sort();
}

/** The file a target's build writes in the output folder. */
function artifactName(target: string): string {
  if (target === "node") return "outpost.mjs";
  if (target === "linux-armv7") return "outpost-linux-armv7.tar.gz";
  return `outpost-${target}`;
}

/** Writes SHA256SUMS (the `sha256sum` format: hash, two spaces, file name) atomically. */
function writeSums(outdir: string): string {
  const lines = binariesIn(outdir).map((f) => `${sha256File(join(outdir, f))}  ${f}\n`);
  const path = join(outdir, "SHA256SUMS");
  writeFileSync(`${path}.tmp`, lines.join(""));
  renameSync(`${path}.tmp`, path);
  return lines.join("");
}

/**
 * Writes `<binary>.xz` and checks that it decompresses to the binary (hash `sha256`): what
 * build.json records about it.
 */
function compress(target: string, binary: string, sha256: string, preset: string) {
  const started = performance.now();
  const out = `${binary}.xz`;
  try {
    compressBinary(binary, out, target, preset);
    const back = decompressedSha256(out);
    if (back !== sha256) throw new Error(`it decompresses to sha256 ${back}, not the binary's ${sha256}`);
  } catch (error) {
    rmSync(out, { force: true });
    throw new BuildError(`Compressing ${binary}: ${(error as Error).message}`);
  }
  const size = statSync(out).size;
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(`compressed ${out} (${(size / 1e6).toFixed(2)} MB, xz -${preset}, ${seconds}s)`);
  return { file: basename(out), sha256: sha256File(out), size, format: "xz" as const };
}

export async function build(options: Options): Promise<void> {
  mkdirSync(options.outdir, { recursive: true });
  let info = readBuildInfo(options.outdir);
  if (!info || info.version !== options.version) {
    // Binaries of another version must not end up in this release's SHA256SUMS.
    for (const f of binariesIn(options.outdir)) {
      console.log(`removing ${f} (${info ? `version ${info.version}` : "unknown version"})`);
      rmSync(join(options.outdir, f));
    }
    info = { version: options.version, targets: {} };
  }
  const builder = options.deno ? "deno compile" : "bun build --compile";
  for (const target of options.targets) {
    const started = performance.now();
    const outfile = join(options.outdir, `outpost-${target.name}`);
    const tmp = join(options.outdir, `.outpost-${target.name}.tmp`);
    rmSync(tmp, { force: true });
    // A compressed form left from an earlier build of this version is not this binary's.
    rmSync(`${outfile}.xz`, { force: true });
    if (options.deno) buildWithDeno(target, options.version, tmp);
    else await buildWithBun(target, options.version, tmp, options.bytecode);
    chmodSync(tmp, 0o755);
    const smoked = options.smoke ? smoke(target, tmp, options.version) : "skipped";
    renameSync(tmp, outfile);
    const size = statSync(outfile).size;
    const sha256 = sha256File(outfile);
    info.targets[target.name] = { sha256, size, builder };
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    console.log(
      `built ${outfile} (${(size / 1048576).toFixed(1)} MiB, ${seconds}s, ${builder} ${
        options.deno ? "" : target.bunTarget
      }); --version: ${smoked}`,
    );
    if (options.compress) {
      info.targets[target.name].compressed = compress(target.name, outfile, sha256, options.xzPreset);
    }
  }
  for (const bundle of options.bundles) {
    const started = performance.now();
    const outfile = join(options.outdir, artifactName(bundle));
    const smoked = bundle === "node"
      ? await buildNodeBundle(options.version, outfile, options.smoke)
      : await buildArmv7Archive(options.version, outfile, options.smoke);
    const size = statSync(outfile).size;
    info.targets[bundle] = { sha256: sha256File(outfile), size, builder: "bun build --target=node" };
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    console.log(`built ${outfile} (${(size / 1048576).toFixed(1)} MiB, ${seconds}s); ${smoked}`);
  }
  // Forget targets whose binary is gone (removed by hand), and compressed forms that are gone.
  for (const [name, built] of Object.entries(info.targets)) {
    if (!existsSync(join(options.outdir, artifactName(name)))) delete info.targets[name];
    else if (built.compressed && !existsSync(join(options.outdir, built.compressed.file))) {
      delete built.compressed;
    }
  }
  writeFileSync(join(options.outdir, "build.json"), JSON.stringify(info, null, 2) + "\n");
  const sums = writeSums(options.outdir);
  console.log(`wrote ${join(options.outdir, "SHA256SUMS")}:\n${sums.trimEnd()}`);
}

async function cli(argv: string[]): Promise<number> {
  let options: Options | undefined;
  try {
    options = parseOptions(argv);
  } catch (error) {
    console.error(`error: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (!options) {
    console.log(USAGE);
    return 0;
  }
  try {
    await build(options);
    return 0;
  } catch (error) {
    console.error(`error: ${error instanceof BuildError ? error.message : (error as Error).stack ?? error}`);
    return 1;
  }
}

if (import.meta.main) process.exit(await cli(process.argv.slice(2)));
