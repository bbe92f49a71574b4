/**
 * Update signing keys: ed25519 through node:crypto (the same in Deno, Bun and Node), never a
 * hand-written implementation. A private key is kept as PKCS8 PEM; a public key travels as the
 * base64 of its raw 32 bytes (the form `update.publicKey` takes); a key id is the first 16 hex
 * digits of the SHA-256 of those 32 bytes, so that a manifest can say which key signed it.
 */
import { Buffer } from "node:buffer";
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
} from "node:crypto";
import { errorMessage } from "../core/errors.ts";

export interface SigningKey {
  /** PKCS8 PEM: keep it secret. */
  privateKeyPem: string;
  /** Base64 of the raw 32-byte public key. */
  publicKey: string;
}

/** A fresh ed25519 key pair. */
export function generateSigningKey(): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return {
    privateKeyPem: String(privateKey.export({ type: "pkcs8", format: "pem" })),
    publicKey: rawPublicKey(publicKey),
  };
}

/** Parses a PKCS8 PEM ed25519 private key; throws with a clear message on anything else. */
export function parsePrivateKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (error) {
    throw new Error(`Not a PEM private key: ${errorMessage(error)}`);
  }
  if (key.asymmetricKeyType !== "ed25519") {
    throw new Error(`Expected an ed25519 private key, got "${key.asymmetricKeyType}"`);
  }
  return key;
}

/** The public key (base64 of its raw 32 bytes) that belongs to a private key. */
export function publicKeyOf(privateKey: KeyObject): string {
  return rawPublicKey(createPublicKey(privateKey));
}

function rawPublicKey(key: KeyObject): string {
  const jwk = key.export({ format: "jwk" }) as { x?: string };
  if (!jwk.x) throw new Error("The key has no ed25519 public part");
  return Buffer.from(jwk.x, "base64url").toString("base64");
}

/** Parses `update.publicKey` (base64 of 32 raw bytes); undefined when it is not one. */
export function parsePublicKey(base64: string): KeyObject | undefined {
  const raw = Buffer.from(base64.trim(), "base64");
  if (raw.length !== 32) return undefined;
  try {
    return createPublicKey({
      key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") },
      format: "jwk",
    });
  } catch {
    return undefined;
  }
}

/** The id of a public key: the first 16 hex digits of SHA-256 over its raw 32 bytes. */
export function keyIdOf(publicKeyBase64: string): string {
  return createHash("sha256").update(Buffer.from(publicKeyBase64.trim(), "base64")).digest("hex").slice(
    0,
    16,
  );
}
