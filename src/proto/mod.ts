/**
 * The hub link's wire types and gRPC service definition, shared by the edge's uplink and the
 * reference hub. The descriptor is generated from proto/outpost/v1/hub.proto and embedded, so a
 * compiled binary needs no .proto file beside it.
 */
import * as grpc from "@grpc/grpc-js";
import { fromJSON } from "@grpc/proto-loader";
import { withBatchCodec } from "./batch_codec.ts";
import { hubDescriptor } from "./hub_descriptor.gen.ts";

export type * from "./frames.ts";
export * from "./records_codec.ts";

/** Metadata keys the edge authenticates with. */
export const AUTH_METADATA = { edgeId: "edge-id", routingKey: "routing-key", secret: "secret" } as const;

let cached: grpc.ServiceDefinition | undefined;

/** The `outpost.v1.Hub` service definition (messages as plain objects, int64 as numbers). */
export function hubService(): grpc.ServiceDefinition {
  if (cached) return cached;
  const pkg = fromJSON(hubDescriptor as any, {
    keepCase: false,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const loaded = grpc.loadPackageDefinition(pkg) as any;
  const service = loaded.outpost.v1.Hub.service as grpc.ServiceDefinition;
  // Batches, the bulk of the edge's frames, go through a hand-written codec (same bytes, same
  // objects); every other message keeps proto-loader's.
  cached = { ...service, Connect: withBatchCodec(service.Connect) };
  return cached;
}

/** A client constructor for the Hub service. */
export function hubClientConstructor(): grpc.ServiceClientConstructor {
  return grpc.makeGenericClientConstructor(hubService(), "outpost.v1.Hub");
}
