/** Tokens and secrets: generated with the system CSPRNG, compared in constant time, stored hashed. */
import { Buffer } from "node:buffer";
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** A fresh random token (32 bytes, base64url). */
export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString("base64url");
}

export function sha256Hex(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/** Compares two secrets in constant time (over their SHA-256 digests, so lengths do not leak). */
export function secretEquals(a: string, b: string): boolean {
  const da = createHash("sha256").update(a).digest();
  const db = createHash("sha256").update(b).digest();
  return timingSafeEqual(da, db);
}

/** Compares a candidate with a stored SHA-256 hex digest in constant time. */
export function matchesHash(candidate: string, hashHex: string): boolean {
  const d = createHash("sha256").update(candidate).digest();
  const stored = Buffer.from(hashHex, "hex");
  return stored.length === d.length && timingSafeEqual(d, stored);
}

/** The token in an `Authorization: Bearer …` header, or undefined. */
export function parseBearer(header: string | undefined | null): string | undefined {
  if (!header) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header.trim());
  return m ? m[1] : undefined;
}
