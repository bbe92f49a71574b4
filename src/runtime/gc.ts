/**
 * Garbage-collector settings for the compiled agent (docs/memory.md).
 *
 * Under a steady message load the JavaScript heap, not native memory, is what grows: with its
 * default growth policy JavaScriptCore lets the heap reach about three times what survived the
 * last full collection before it collects the young generation, and lets the old generation grow
 * several times over before the next full collection, so the agent's RSS swings between ~100 and
 * ~220 MB. Two engine options tighten that: the heap may grow to twice the live size
 * (`heapGrowthMaxIncrease`) and a full collection starts once the old generation is as large as
 * the young one (`minEdenToOldGenerationRatio`). Under a sustained load the peak RSS drops by
 * about 80 MB, for 7–10 % more CPU time per message; nothing changes at idle.
 *
 * JavaScriptCore reads its options from `BUN_JSC_<name>` environment variables when the runtime
 * starts, before any of our code runs, and a compiled binary has no other way to set them. So
 * `outpost run` from the compiled binary starts itself again at once with them in its
 * environment (`execve`: same process id, same arguments, before any other module is loaded;
 * start-up takes ~30 ms longer), unless `OUTPOST_GC_TUNING=0`. Options the environment already sets are left as they are. The
 * restarted process removes what it added from its environment, so that processes it starts
 * (the new binary after a self-update) decide for themselves. Whatever fails, the agent runs with
 * the engine's defaults.
 *
 * Option names belong to the Bun release the binary embeds, and Bun refuses to start with an
 * unknown one: the build's smoke test runs each binary with these variables set (scripts/build.ts).
 */
import { readFileSync } from "node:fs";
import process from "node:process";

/** The engine options (`BUN_JSC_<name>=<value>`) the compiled agent runs with. */
export const GC_OPTIONS: Readonly<Record<string, string>> = {
  heapGrowthMaxIncrease: "1",
  minEdenToOldGenerationRatio: "1",
};

/** `OUTPOST_GC_TUNING=0` keeps the engine's defaults. */
export const GC_TUNING_ENV = "OUTPOST_GC_TUNING";

/** Set in the restarted process: the names of the options it was given (removed at start). */
const GIVEN_ENV = "OUTPOST_GC_OPTIONS_GIVEN";

/** The `BUN_JSC_*` variables that carry GC_OPTIONS. */
export function gcEnvironment(): Record<string, string> {
  return Object.fromEntries(Object.entries(GC_OPTIONS).map(([k, v]) => [`BUN_JSC_${k}`, v]));
}

export interface Restart {
  file: string;
  args: string[];
  env: Record<string, string>;
}

export interface Situation {
  env: Record<string, string | undefined>;
  /** The command line arguments after the executable. */
  args: string[];
  /** What the process was started as (argv[0]). */
  argv0: string;
  execPath: string;
  compiled: boolean;
  platform: string;
  /** `x64`, `arm64`. */
  arch: string;
  /** The running kernel's architecture (/proc/sys/kernel/arch), when known. */
  kernelArch?: string;
}

/**
 * How to start again with the GC options, or undefined to go on as is: only the compiled binary,
 * only on Linux, only for `outpost run`, only once, and not when the binary runs under an
 * emulator (qemu-user: the kernel's architecture is not the binary's, and the kernel could not
 * execute the binary itself).
 */
export function gcRestart(s: Situation): Restart | undefined {
  if (!s.compiled || s.platform !== "linux" || s.args[0] !== "run") return undefined;
  if (s.env[GC_TUNING_ENV] === "0" || s.env[GIVEN_ENV] !== undefined) return undefined;
  const native = ({ x64: "x86_64", arm64: "aarch64" } as Record<string, string>)[s.arch];
  if (!native || (s.kernelArch !== undefined && s.kernelArch !== native)) return undefined;
  const added = Object.entries(gcEnvironment()).filter(([k]) => s.env[k] === undefined);
  if (added.length === 0) return undefined;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(s.env)) if (v !== undefined) env[k] = v;
  for (const [k, v] of added) env[k] = v;
  env[GIVEN_ENV] = added.map(([k]) => k).join(",");
  return { file: s.execPath, args: [s.argv0, ...s.args], env };
}

/** In the restarted process: removes the variables it was given, and says which those were. */
export function forgetGivenOptions(env: Record<string, string | undefined>): string[] {
  const given = env[GIVEN_ENV];
  if (given === undefined) return [];
  const names = given.split(",").filter((k) => k.startsWith("BUN_JSC_"));
  for (const k of names) delete env[k];
  delete env[GIVEN_ENV];
  return names;
}

function kernelArch(): string | undefined {
  try {
    return readFileSync("/proc/sys/kernel/arch", "utf8").trim() || undefined;
  } catch {
    return undefined; // kernels before 6.1
  }
}

let inForce: string[] = [];

/** The `BUN_JSC_*` variables this process was started with by applyGcOptions (for the log). */
export function gcOptionsInForce(): string[] {
  return [...inForce];
}

/**
 * Starts the compiled agent again with the GC options (see the top of this file), or records
 * that it has them. Call first thing, before the program's modules are loaded. Never throws;
 * returns only when the process goes on as it is.
 */
export function applyGcOptions(compiled: boolean): void {
  if (!compiled) return;
  try {
    const p = process as any;
    const given = forgetGivenOptions(process.env);
    if (given.length > 0) {
      inForce = given;
      return;
    }
    if (typeof p.execve !== "function") return;
    const restart = gcRestart({
      env: process.env,
      args: process.argv.slice(2),
      argv0: process.argv0,
      execPath: process.execPath,
      compiled,
      platform: process.platform,
      arch: process.arch,
      kernelArch: process.platform === "linux" ? kernelArch() : undefined,
    });
    if (!restart) return;
    // The runtime warns that execve is experimental, but only when the call fails (a success
    // replaces the process): keep that warning out of the log, then listen again.
    const listeners = process.listeners("warning");
    process.removeAllListeners("warning");
    try {
      p.execve(restart.file, restart.args, restart.env);
    } catch {
      setImmediate(() => {
        for (const listener of listeners) process.on("warning", listener);
      });
    }
  } catch {
    // Run with the engine's defaults.
  }
}
