/**
 * A real PostgreSQL for tests: a cluster made with initdb in a temporary folder, served on a free
 * port on 127.0.0.1 (its unix socket in the same folder), stopped by pid. PostgreSQL refuses to
 * run as root, so as root the folder is given to the `postgres` user and both programs run
 * through `runuser -u postgres --`. Needs Debian's `postgresql` package (scripts/setup.sh).
 */
import { chownSync, existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, type Proc, removeDir, startProcess, tempDir, waitFor } from "./procs.ts";

const PASSWORD = "pg-test-password-4f9a";

function binDir(): string {
  const base = "/usr/lib/postgresql";
  const versions = existsSync(base) ? readdirSync(base).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) if (existsSync(join(base, v, "bin/postgres"))) return join(base, v, "bin");
  throw new Error("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/postgres): run scripts/setup.sh");
}

const isRoot = () => Deno.uid() === 0;

function pgUid(): { uid: number; gid: number } {
  const line = Deno.readTextFileSync("/etc/passwd").split("\n").find((l) => l.startsWith("postgres:"));
  if (!line) throw new Error("no postgres user (install Debian's postgresql package)");
  const f = line.split(":");
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

function asPostgres(cmd: string[]): string[] {
  return isRoot() ? ["runuser", "-u", "postgres", "--", ...cmd] : cmd;
}

function chownTree(path: string, uid: number, gid: number): void {
  chownSync(path, uid, gid);
  for (const e of Deno.readDirSync(path)) {
    const p = join(path, e.name);
    if (e.isDirectory) chownTree(p, uid, gid);
    else chownSync(p, uid, gid);
  }
}

export interface Postgres {
  port: number;
  /** `postgres://outpost:<password>@127.0.0.1:<port>/outpost` */
  url: string;
  password: string;
  proc: Proc;
  /** Stops the server: SIGTERM (fast shutdown) or SIGKILL. */
  stop(signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
  /** Starts it again on the same port and data. */
  start(): Promise<void>;
  /** Kills it and removes its folder. */
  remove(): Promise<void>;
  /** CPU seconds the server and its processes have used so far (Linux /proc). */
  cpuSeconds(): number;
}

/**
 * `durable: false` (the tests' default) turns fsync and full-page writes off: a killed server
 * keeps every commit (they reach the operating system), only a power cut could lose them.
 * Benchmarks use `durable: true`, PostgreSQL's own defaults.
 */
export async function startPostgres(options: { durable?: boolean } = {}): Promise<Postgres> {
  const bin = binDir();
  const dir = tempDir("outpost-pg-");
  const data = join(dir, "data");
  const pwfile = join(dir, "pw");
  writeFileSync(pwfile, PASSWORD + "\n");
  if (isRoot()) {
    const { uid, gid } = pgUid();
    chownTree(dir, uid, gid);
  }
  const init = await new Deno.Command(asPostgres([join(bin, "initdb")])[0], {
    args: [
      ...asPostgres([join(bin, "initdb")]).slice(1),
      "-D",
      data,
      "-U",
      "outpost",
      "--auth=scram-sha-256",
      `--pwfile=${pwfile}`,
      "-E",
      "UTF8",
      "--no-sync",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (init.code !== 0) throw new Error(`initdb failed: ${new TextDecoder().decode(init.stderr)}`);
  const port = await freePort();
  let proc: Proc | undefined;
  const launch = async (): Promise<boolean> => {
    proc = startProcess(asPostgres([
      join(bin, "postgres"),
      "-D",
      data,
      "-p",
      String(port),
      "-h",
      "127.0.0.1",
      "-k",
      dir,
      ...(options.durable ? [] : ["-c", "fsync=off", "-c", "full_page_writes=off"]),
      "-c",
      "max_connections=100",
      "-c",
      "shared_buffers=64MB",
    ]));
    const p = proc;
    let exited = false;
    p.exited.then(() => exited = true);
    await waitFor(
      () => exited || p.lines.some((l) => l.includes("ready to accept connections")),
      30_000,
      "PostgreSQL to accept connections",
    );
    return !exited;
  };
  const pg: Postgres = {
    port,
    password: PASSWORD,
    url: `postgres://outpost:${PASSWORD}@127.0.0.1:${port}/postgres`,
    get proc() {
      return proc!;
    },
    async start() {
      // After a SIGKILL the old backends may hold the shared memory for a moment: retry.
      for (let attempt = 0;; attempt++) {
        if (await launch()) return;
        if (attempt >= 40) throw new Error(`PostgreSQL did not start:\n${proc!.lines.slice(-10).join("\n")}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    },
    async stop(signal = "SIGTERM") {
      if (!proc) return;
      // The postmaster's own pid (under runuser, proc.pid is runuser's).
      let pid = proc.pid;
      try {
        pid = Number(Deno.readTextFileSync(join(data, "postmaster.pid")).split("\n")[0]);
      } catch { /* not written yet: signal what we started */ }
      try {
        Deno.kill(pid, signal);
      } catch { /* already gone */ }
      await proc.exited;
    },
    cpuSeconds() {
      const ticks = (pid: number, children: boolean) => {
        const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
        const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        return Number(f[11]) + Number(f[12]) + (children ? Number(f[13]) + Number(f[14]) : 0);
      };
      const postmaster = Number(Deno.readTextFileSync(join(data, "postmaster.pid")).split("\n")[0]);
      let total = ticks(postmaster, true);
      for (const e of Deno.readDirSync("/proc")) {
        if (!/^\d+$/.test(e.name)) continue;
        try {
          const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
          const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
          if (ppid === postmaster) total += ticks(Number(e.name), false);
        } catch { /* gone meanwhile */ }
      }
      return total / 100;
    },
    async remove() {
      await pg.stop("SIGKILL").catch(() => {});
      removeDir(dir);
    },
  };
  await pg.start();
  return pg;
}
