/**
 * The Node bundle's update (the armv7 archive): the downloaded archive is unpacked into the
 * releases folder beside the running release, and the download's name becomes a link to the new
 * launcher, so that the swap is the same one rename as for a binary, and so is the rollback.
 *
 *   <lib>/releases/<hash>/outpost                  a release's launcher (runs outpost.mjs beside it)
 *   <bin>/outpost -> <lib>/releases/<hash>/outpost what install.sh installs and the swap replaces
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readlinkSync, renameSync, rmSync, symlinkSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fsyncDir, type UpdatePaths } from "./_files.ts";

/** What a release folder holds. */
const RELEASE_FILES = ["outpost", "outpost.mjs", "libsql/index.node"];

/**
 * Unpacks the verified archive at `paths.part` into `<releases>/<sha256 prefix>` and replaces
 * `paths.part` with a link to its launcher. Keeps only the running release and the new one.
 * Throws with a reason when the running bundle is not installed as a link, or the archive is not
 * a release.
 */
export async function unpackBundle(paths: UpdatePaths, sha256: string): Promise<void> {
  let running: string;
  try {
    running = dirname(resolve(dirname(paths.exe), readlinkSync(paths.exe)));
  } catch {
    throw new Error(
      `${paths.exe} is not a link to a release's launcher: the bundle updates itself only as install.sh installs it`,
    );
  }
  const releases = dirname(running);
  const release = join(releases, sha256.slice(0, 16));
  const tmp = `${release}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true, mode: 0o755 });
  try {
    await tar(["-xzf", paths.part, "-C", tmp]);
    const top = readdirSync(tmp).find((name) =>
      /^outpost-.+-linux-armv7$/.test(name) && RELEASE_FILES.every((f) => existsSync(join(tmp, name, f)))
    );
    if (!top) {
      throw new Error(
        `The archive does not hold outpost-<version>-linux-armv7/ with ${RELEASE_FILES.join(", ")}`,
      );
    }
    if (release !== running) {
      rmSync(release, { recursive: true, force: true });
      renameSync(join(tmp, top), release);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  for (const name of readdirSync(releases)) {
    const dir = join(releases, name);
    if (dir !== release && dir !== running) rmSync(dir, { recursive: true, force: true });
  }
  fsyncDir(releases);
  rmSync(paths.part, { force: true });
  symlinkSync(join(release, "outpost"), paths.part);
}

function tar(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile("tar", args, { timeout: 120_000, encoding: "utf8" }, (error, _stdout, stderr) => {
      if (error) {
        reject(new Error(`tar could not unpack the archive: ${String(stderr || error.message).trim()}`));
      } else resolve();
    });
  });
}
