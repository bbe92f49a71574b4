/**
 * The program's version: stamped by `npm run build -- --version X` (a compile-time define), else
 * package.json's.
 */
import pkg from "../package.json" with { type: "json" };

declare const OUTPOST_BUILD_VERSION: string | undefined;

export const VERSION: string = typeof OUTPOST_BUILD_VERSION === "string"
  ? OUTPOST_BUILD_VERSION
  : pkg.version;
