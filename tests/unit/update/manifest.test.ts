/** Manifest signing and verification: canonical bytes, ed25519 through node:crypto, every refusal. */
import { Buffer } from "node:buffer";
import assert from "node:assert/strict";
import {
  canonicalBytes,
  canonicalJson,
  compareSemver,
  generateSigningKey,
  keyIdOf,
  parsePublicKey,
  signManifest,
  verifyManifest,
} from "../../../src/update/mod.ts";

const key = generateSigningKey();
const unsigned = {
  version: "1.2.3",
  artifacts: {
    "linux-x64": { url: "https://r.example/1.2.3/outpost-linux-x64", sha256: "a".repeat(64), size: 100 },
    "linux-arm64": { url: "outpost-linux-arm64", sha256: "b".repeat(64), size: 200 },
  },
};

Deno.test("canonical JSON sorts keys at every depth, has no whitespace and escapes like JSON.stringify", () => {
  assert.equal(
    canonicalJson({ b: 1, a: { d: [3, { y: 1, x: 'é\n"' }], c: null } }),
    '{"a":{"c":null,"d":[3,{"x":"é\\n\\"","y":1}]},"b":1}',
  );
  assert.throws(() => canonicalJson({ n: Infinity }), /canonically/);
});

Deno.test("the signed bytes are the manifest without its signature, canonical, UTF-8", () => {
  const signed = signManifest(unsigned, key.privateKeyPem);
  const bytes = new TextDecoder().decode(canonicalBytes(signed));
  assert.ok(!bytes.includes("signature"));
  assert.ok(bytes.startsWith('{"artifacts":{"linux-arm64":'));
  assert.ok(bytes.endsWith(`"keyId":"${keyIdOf(key.publicKey)}","version":"1.2.3"}`));
});

Deno.test("a signed manifest verifies, whatever the key order and whitespace of the file", () => {
  const signed = signManifest(unsigned, key.privateKeyPem);
  assert.equal(signed.keyId, keyIdOf(key.publicKey));
  assert.equal(Buffer.from(signed.signature!, "base64").length, 64);
  const reordered = JSON.parse(JSON.stringify({ signature: signed.signature, ...signed }, null, 4));
  const result = verifyManifest(reordered, key.publicKey);
  assert.ok(result.ok, JSON.stringify(result));
  assert.equal(result.manifest.version, "1.2.3");
});

Deno.test("refusals: unsigned, tampered, another key, malformed signature, bad shape, bad key", () => {
  const signed = signManifest(unsigned, key.privateKeyPem);
  const code = (m: unknown, k = key.publicKey) => {
    const r = verifyManifest(m, k);
    return r.ok ? "ok" : r.code;
  };
  assert.equal(code({ ...signed, signature: undefined }), "unsigned");
  assert.equal(code({ ...signed, signature: "" }), "unsigned");
  assert.equal(code({ ...signed, version: "1.2.4" }), "bad-signature");
  const artifacts = structuredClone(signed.artifacts);
  artifacts["linux-x64"].size = 101;
  assert.equal(code({ ...signed, artifacts }), "bad-signature");
  assert.equal(code({ ...signed, extra: "added" }), "bad-signature", "every member is signed, known or not");
  const other = generateSigningKey();
  assert.equal(code(signed, other.publicKey), "wrong-key");
  const { keyId: _keyId, ...noKeyId } = signManifest(unsigned, other.privateKeyPem);
  assert.equal(
    code(noKeyId),
    "bad-signature",
    "without keyId, another key is a signature that does not verify",
  );
  assert.equal(code({ ...signed, signature: "AAAA" }), "bad-signature");
  assert.equal(code([signed]), "not-json");
  assert.equal(code(signed, "dG9vIHNob3J0"), "bad-key");
  const badShape = signManifest({ ...unsigned, version: "v1" }, key.privateKeyPem);
  const r = verifyManifest(badShape, key.publicKey);
  assert.ok(
    !r.ok && r.code === "invalid" && r.reason.includes("/version: must be a semver"),
    JSON.stringify(r),
  );
  const badSha = signManifest(
    { version: "1.0.0", artifacts: { "linux-x64": { url: "x", sha256: "A".repeat(64), size: 1 } } },
    key.privateKeyPem,
  );
  const r2 = verifyManifest(badSha, key.publicKey);
  assert.ok(!r2.ok && r2.reason.includes("/artifacts/linux-x64/sha256"), JSON.stringify(r2));
});

Deno.test("public keys: base64 of 32 raw bytes, anything else is refused", () => {
  assert.ok(parsePublicKey(key.publicKey));
  assert.equal(parsePublicKey(Buffer.alloc(31).toString("base64")), undefined);
  assert.equal(parsePublicKey("not base64 at all!"), undefined);
});

Deno.test("semver precedence (semver.org §11)", () => {
  const ordered = [
    "0.0.1",
    "0.0.2",
    "0.1.0",
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.10",
    "2.0.0",
  ];
  for (let i = 0; i < ordered.length; i++) {
    for (let j = 0; j < ordered.length; j++) {
      assert.equal(compareSemver(ordered[i], ordered[j]), Math.sign(i - j), `${ordered[i]} vs ${ordered[j]}`);
    }
  }
  assert.equal(compareSemver("1.0.0+build.1", "1.0.0+build.2"), 0, "build metadata does not count");
  assert.throws(() => compareSemver("1.0", "1.0.0"), /not a semver/);
});
