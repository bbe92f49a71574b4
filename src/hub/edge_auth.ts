/**
 * Who an edge is: its id, routing key and secret in the call's metadata, checked against the
 * configured edges in constant time. The hub keeps only SHA-256 digests of the keys and secrets
 * after start; an unknown id is compared against random digests, so that it costs the same time
 * as a known one, and both comparisons always run (no early exit tells which part was wrong).
 */
import type * as grpc from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import { matchesHash, sha256Hex } from "../core/secret.ts";
import { AUTH_METADATA } from "../proto/mod.ts";
import type { HubEdgeConfig } from "./config.ts";

interface Credentials {
  routingKey: string;
  secret: string;
}

/** Returns the edge id the metadata proves, or undefined. */
export function edgeAuthenticator(
  edges: readonly HubEdgeConfig[],
): (metadata: grpc.Metadata) => string | undefined {
  const credentials = new Map<string, Credentials>();
  for (const e of edges) {
    credentials.set(e.id, { routingKey: sha256Hex(e.routingKey), secret: sha256Hex(e.secret) });
  }
  const nobody: Credentials = {
    routingKey: randomBytes(32).toString("hex"),
    secret: randomBytes(32).toString("hex"),
  };
  return (metadata) => {
    const one = (key: string) => {
      const values = metadata.get(key);
      return values.length === 1 && typeof values[0] === "string" ? values[0] : undefined;
    };
    const id = one(AUTH_METADATA.edgeId);
    const routingKey = one(AUTH_METADATA.routingKey);
    const secret = one(AUTH_METADATA.secret);
    const known = id === undefined ? undefined : credentials.get(id);
    const expected = known ?? nobody;
    const keyOk = matchesHash(routingKey ?? "", expected.routingKey);
    const secretOk = matchesHash(secret ?? "", expected.secret);
    return known !== undefined && routingKey !== undefined && secret !== undefined && keyOk && secretOk
      ? id
      : undefined;
  };
}
