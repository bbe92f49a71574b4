/**
 * The signed update manifest (SPEC §8) and its canonical bytes.
 *
 * A manifest is a JSON object `{version, artifacts: {<target>: {url, sha256, size}}, keyId,
 * signature}`. The signature is ed25519 over the manifest's canonical bytes: the manifest without
 * its `signature` member, serialised with object keys sorted by UTF-16 code units, no whitespace,
 * strings escaped as JSON.stringify does, and encoded as UTF-8. For the values a manifest holds
 * (strings, non-negative integers, objects) this is exactly RFC 8785 (JCS). Every other member,
 * known or not, is covered by the signature, so fields can be added without a format change.
 *
 * The signature is checked against the raw JSON value before anything else reads it: nothing in
 * an unverified manifest is trusted, not even its version.
 */
import { Buffer } from "node:buffer";
import { sign, verify } from "node:crypto";
import * as v from "valibot";
import { validate } from "../core/validate.ts";
import { formatIssues } from "../core/errors.ts";
import { keyIdOf, parsePrivateKey, parsePublicKey, publicKeyOf } from "./keys.ts";
import { parseSemver } from "./semver.ts";

export interface Artifact {
  /** Absolute, or relative to the manifest's own URL. */
  url: string;
  /** Lower-case hex SHA-256 of the file. */
  sha256: string;
  /** Bytes. */
  size: number;
}

/** A binary's compressed form (the manifest's `compressed` member): `xz` only, for now. */
export interface CompressedArtifact extends Artifact {
  format: "xz";
}

export interface Manifest {
  version: string;
  artifacts: Record<string, Artifact>;
  /** Compressed forms of some artifacts, by target: optional, a download can always do without. */
  compressed?: Record<string, unknown>;
  keyId?: string;
  signature?: string;
  [member: string]: unknown;
}

const ArtifactSchema = v.strictObject({
  url: v.pipe(v.string(), v.minLength(1, "must not be empty")),
  sha256: v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/, "must be 64 lower-case hex digits")),
  size: v.pipe(v.number(), v.integer("must be an integer"), v.minValue(1, "must be at least 1")),
});

const CompressedSchema = v.strictObject({
  ...ArtifactSchema.entries,
  format: v.literal("xz"),
});

/**
 * The compressed form the (verified) manifest offers for `target`, or undefined when there is
 * none or it is not one this version can use: the plain artifact is downloaded then.
 */
export function compressedArtifact(manifest: Manifest, target: string): CompressedArtifact | undefined {
  const entry = manifest.compressed?.[target];
  if (entry === undefined) return undefined;
  return v.is(CompressedSchema, entry) ? entry : undefined;
}

const ManifestSchema = v.looseObject({
  version: v.pipe(v.string(), v.check((s) => parseSemver(s) !== undefined, "must be a semver, e.g. 1.2.3")),
  artifacts: v.record(v.string(), ArtifactSchema),
  keyId: v.optional(v.string()),
  signature: v.optional(v.string()),
});

/** Canonical JSON text of a value (sorted keys, no whitespace); throws on non-JSON values. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === "boolean") return JSON.stringify(value);
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error(`Cannot serialise the number ${value} canonically`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (typeof value === "object") {
    const keys = Object.keys(value as object).sort();
    const members = keys
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
    return `{${members.join(",")}}`;
  }
  throw new Error(`Cannot serialise a ${typeof value} as JSON`);
}

/** The bytes a manifest's signature covers: the manifest without `signature`, canonical, UTF-8. */
export function canonicalBytes(manifest: Record<string, unknown>): Uint8Array {
  const { signature: _signature, ...rest } = manifest;
  return new TextEncoder().encode(canonicalJson(rest));
}

/** Signs a manifest with a PKCS8 PEM ed25519 key: adds `keyId` and `signature` (base64). */
export function signManifest(
  unsigned: { version: string; artifacts: Record<string, Artifact>; [member: string]: unknown },
  privateKeyPem: string,
): Manifest {
  const key = parsePrivateKey(privateKeyPem);
  const withKey = { ...unsigned, keyId: keyIdOf(publicKeyOf(key)) };
  const signature = sign(null, canonicalBytes(withKey), key).toString("base64");
  return { ...withKey, signature };
}

/** Why a manifest is refused: a stable code for programs, a sentence for people. */
export type ManifestRefusal = {
  ok: false;
  code: "not-json" | "unsigned" | "bad-signature" | "wrong-key" | "invalid" | "bad-key";
  reason: string;
};

/**
 * Verifies a manifest (the parsed JSON of the file) against the configured public key, then
 * checks its shape. The signature is checked first: a manifest that does not verify is refused
 * without reading anything else from it.
 */
export function verifyManifest(
  raw: unknown,
  publicKeyBase64: string,
): { ok: true; manifest: Manifest } | ManifestRefusal {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    return { ok: false, code: "not-json", reason: "The manifest is not a JSON object" };
  }
  const record = raw as Record<string, unknown>;
  const publicKey = parsePublicKey(publicKeyBase64);
  if (!publicKey) {
    return {
      ok: false,
      code: "bad-key",
      reason: "update.publicKey is not an ed25519 public key (base64 of 32 bytes): see outpost update keygen",
    };
  }
  if (record.signature === undefined || record.signature === "") {
    return { ok: false, code: "unsigned", reason: 'The manifest is unsigned: it has no "signature"' };
  }
  const signature = typeof record.signature === "string"
    ? Buffer.from(record.signature, "base64")
    : undefined;
  if (!signature || signature.length !== 64) {
    return {
      ok: false,
      code: "bad-signature",
      reason: 'The manifest\'s "signature" is not a base64 ed25519 signature (64 bytes)',
    };
  }
  const expectedKeyId = keyIdOf(publicKeyBase64);
  if (typeof record.keyId === "string" && record.keyId !== expectedKeyId) {
    // keyId is itself signed: if it was altered, the signature check below would fail too. Saying
    // "another key" first gives the more useful reason for the common mistake.
    const valid = safeVerify(canonicalBytes(record), publicKey, signature);
    if (!valid) {
      return {
        ok: false,
        code: "wrong-key",
        reason:
          `The manifest is signed with key ${JSON.stringify(record.keyId)}, not with update.publicKey ` +
          `(key ${expectedKeyId}): it comes from another publisher, or the key was rotated`,
      };
    }
  }
  if (!safeVerify(canonicalBytes(record), publicKey, signature)) {
    return {
      ok: false,
      code: "bad-signature",
      reason: "The manifest's signature does not verify against update.publicKey: " +
        "the manifest was changed after it was signed",
    };
  }
  const shape = validate(ManifestSchema, raw);
  if (!shape.ok) {
    return { ok: false, code: "invalid", reason: `The manifest is invalid:\n${formatIssues(shape.issues)}` };
  }
  return { ok: true, manifest: raw as Manifest };
}

function safeVerify(
  data: Uint8Array,
  key: ReturnType<typeof parsePublicKey>,
  signature: Uint8Array,
): boolean {
  try {
    return verify(null, data, key!, signature);
  } catch {
    return false;
  }
}
