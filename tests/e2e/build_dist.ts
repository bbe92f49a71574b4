/**
 * Helpers for the tests of the release binaries and the installer: building them with the real
 * build script, and running the arm64 one under qemu with the sysroot that
 * scripts/sysroot.sh makes. Not a test file itself.
 *
 * Each test file builds fresh into its own temporary folder (what CI does). For speed while
 * developing, `OUTPOST_TEST_REUSE_DIST=1` uses `dist/` as it is (building only what is missing).
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../helpers/procs.ts";

export const BUN = join(ROOT, "node_modules/.bin/bun");
export const SYSROOT = join(ROOT, ".cache/arm64-sysroot");

export interface Dist {
  dir: string;
  version: string;
  /** target name → absolute path of its binary */
  binaries: Record<string, string>;
}

export interface BuildResult {
  code: number;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Runs the build script (`viaNpm`: as `npm run build -- …`, the documented way). */
export async function runBuild(args: string[], options: { viaNpm?: boolean } = {}): Promise<BuildResult> {
  const [cmd, ...pre] = options.viaNpm
    ? ["npm", "run", "--silent", "build", "--"]
    : [BUN, "scripts/build.ts"];
  const started = performance.now();
  const out = await new Deno.Command(cmd, {
    args: [...pre, ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
    seconds: (performance.now() - started) / 1000,
  };
}

/** Builds `targets` at `version` into `outdir`; throws with the build's output on failure. */
export async function buildDist(
  options: { outdir: string; targets?: string; version?: string; viaNpm?: boolean },
): Promise<Dist & { seconds: number; output: string }> {
  const args = ["--target", options.targets ?? "all", "--outdir", options.outdir];
  if (options.version) args.push("--version", options.version);
  const result = await runBuild(args, { viaNpm: options.viaNpm });
  if (result.code !== 0) {
    throw new Error(`Build failed (exit ${result.code}):\n${result.stdout}${result.stderr}`);
  }
  return { ...readDist(options.outdir), seconds: result.seconds, output: result.stdout + result.stderr };
}

/** The file a target's build writes: `outpost-<target>`, the bundle or the armv7 archive. */
export function artifactFile(target: string): string {
  if (target === "node") return "outpost.mjs";
  if (target === "linux-armv7") return "outpost-linux-armv7.tar.gz";
  return `outpost-${target}`;
}

/** What `dist/build.json` says is in a build folder. */
export function readDist(dir: string): Dist {
  const info = JSON.parse(readFileSync(join(dir, "build.json"), "utf8"));
  const binaries: Record<string, string> = {};
  for (const name of Object.keys(info.targets)) binaries[name] = join(dir, artifactFile(name));
  return { dir, version: info.version, binaries };
}

/** `OUTPOST_TEST_REUSE_DIST=1`: use dist/ when it already has both release binaries. */
export function reuseDist(): Dist | undefined {
  if (Deno.env.get("OUTPOST_TEST_REUSE_DIST") !== "1") return undefined;
  const dir = join(ROOT, "dist");
  if (!existsSync(join(dir, "build.json"))) return undefined;
  const dist = readDist(dir);
  if (!dist.binaries["linux-x64"] || !dist.binaries["linux-arm64"]) return undefined;
  if (!existsSync(dist.binaries["linux-x64"]) || !existsSync(dist.binaries["linux-arm64"])) return undefined;
  return dist;
}

function which(name: string): string | undefined {
  const out = new Deno.Command("sh", { args: ["-c", `command -v ${name}`], stdout: "piped", stderr: "null" })
    .outputSync();
  const path = new TextDecoder().decode(out.stdout).trim();
  return out.code === 0 && path ? path : undefined;
}

/** The path of a tool the tests cannot do without; throws (the test fails) when it is missing. */
export function requireTool(name: string, hint: string): string {
  const path = which(name);
  if (!path) throw new Error(`${name} is missing: ${hint}`);
  return path;
}

/** `qemu-aarch64-static -L <sysroot>`; throws with what to run when either is missing. */
export function qemuPrefix(): string[] {
  const qemu = requireTool(
    "qemu-aarch64-static",
    "install qemu-user-static (sh scripts/setup.sh does) to run the arm64 binary",
  );
  if (!existsSync(join(SYSROOT, "lib/ld-linux-aarch64.so.1"))) {
    throw new Error(
      `The arm64 sysroot ${SYSROOT} is missing: run sh scripts/sysroot.sh arm64 (as root, once)`,
    );
  }
  return [qemu, "-L", SYSROOT];
}

/**
 * Writes an executable shell script that runs the arm64 `binary` under qemu, so that it can be
 * used wherever a binary path is expected (the tests' `runner`).
 */
export function writeQemuRunner(dir: string, binary: string): string {
  const prefix = qemuPrefix();
  const path = join(dir, "outpost-arm64-under-qemu");
  const quote = (s: string) => `'${s.replaceAll("'", `'"'"'`)}'`;
  writeFileSync(path, `#!/bin/sh\nexec ${[...prefix, binary].map(quote).join(" ")} "$@"\n`, { mode: 0o755 });
  return path;
}

/** The ELF machine of a file: `x86-64`, `aarch64` or the raw number. */
export function elfMachine(path: string): string {
  const head = new Uint8Array(20);
  const file = Deno.openSync(path);
  try {
    file.readSync(head);
  } finally {
    file.close();
  }
  if (head[0] !== 0x7f || head[1] !== 0x45 || head[2] !== 0x4c || head[3] !== 0x46) return "not ELF";
  const machine = head[18] | (head[19] << 8);
  return machine === 62 ? "x86-64" : machine === 183 ? "aarch64" : machine === 40 ? "arm" : String(machine);
}

export async function sha256Hex(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

export const ARMHF_SYSROOT = join(ROOT, ".cache/armhf-sysroot");

/**
 * Writes `<dir>/node-armv7l`: a `node` that is the armv7l Node.js 20 of the armhf sysroot run
 * under `qemu-arm-static` (for the armv7 archive's launcher, as OUTPOST_NODE). Throws with what
 * to run when either is missing.
 */
export function armhfNode(dir: string): string {
  const qemu = requireTool(
    "qemu-arm-static",
    "install qemu-user-static (sh scripts/setup.sh does) to run the armv7 archive",
  );
  const node = join(ARMHF_SYSROOT, "opt/node/bin/node");
  if (!existsSync(join(ARMHF_SYSROOT, "lib/ld-linux-armhf.so.3")) || !existsSync(node)) {
    throw new Error(
      `The armhf sysroot ${ARMHF_SYSROOT} with its Node.js is missing: run sh scripts/sysroot.sh armhf (as root, once)`,
    );
  }
  const wrapper = join(dir, "node-armv7l");
  writeFileSync(wrapper, `#!/bin/sh\nexec ${qemu} -L ${ARMHF_SYSROOT} ${node} "$@"\n`, { mode: 0o755 });
  return wrapper;
}
