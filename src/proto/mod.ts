/**
 * The hub link's wire types and gRPC service definition, shared by the edge's uplink and the
 * reference hub. The messages of proto/outpost/v1/hub.proto are encoded and decoded by hand
 * (./codec.ts, batches by ./batch_codec.ts first), so a compiled binary needs no .proto file
 * beside it and loads no protobuf library.
 */
import * as grpc from "@grpc/grpc-js";
import { decodeBatchFrame, encodeBatchFrame } from "./batch_codec.ts";
import { decodeMessage, EDGE_FRAME, encodeMessage, HUB_FRAME } from "./codec.ts";
import type { EdgeFrame, HubFrame } from "./frames.ts";

export type * from "./frames.ts";
export * from "./records_codec.ts";

/** Metadata keys the edge authenticates with. */
export const AUTH_METADATA = { edgeId: "edge-id", routingKey: "routing-key", secret: "secret" } as const;

/** `outpost.v1.Hub/Connect`: a stream of EdgeFrame up, a stream of HubFrame down. */
const connect: grpc.MethodDefinition<EdgeFrame, HubFrame> = {
  path: "/outpost.v1.Hub/Connect",
  requestStream: true,
  responseStream: true,
  requestSerialize: (frame) => encodeBatchFrame(frame) ?? encodeMessage(EDGE_FRAME, frame),
  requestDeserialize: (bytes) => decodeBatchFrame(bytes) ?? decodeMessage(EDGE_FRAME, bytes),
  responseSerialize: (frame) => encodeMessage(HUB_FRAME, frame),
  responseDeserialize: (bytes) => decodeMessage(HUB_FRAME, bytes),
  // The implementation's and the client method's name, as proto-loader named it.
  originalName: "connect",
};

/** The `outpost.v1.Hub` service definition (messages as plain objects, int64 as numbers). */
export function hubService(): grpc.ServiceDefinition {
  return { Connect: connect };
}

let clientConstructor: grpc.ServiceClientConstructor | undefined;

/** A client constructor for the Hub service (made once: the uplink makes a client per attempt). */
export function hubClientConstructor(): grpc.ServiceClientConstructor {
  return clientConstructor ??= grpc.makeGenericClientConstructor(hubService(), "outpost.v1.Hub");
}
