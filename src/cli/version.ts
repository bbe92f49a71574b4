/** `outpost version`: `outpost <semver>`, then runtime and target on the next line. */
import { runtimeVersion, target } from "../runtime/mod.ts";
import { VERSION } from "../version.ts";
import type { Io } from "./io.ts";

export function versionText(): string {
  return `outpost ${VERSION}\n${runtimeVersion()} ${target()}`;
}

export function versionCommand(io: Io): number {
  io.out(versionText());
  return 0;
}
