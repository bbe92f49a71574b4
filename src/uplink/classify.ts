/**
 * One table maps gRPC status codes to what the uplink does next: retry soon (the hub is down or
 * busy), or retry slowly because an operator must act (credentials, protocol mismatch).
 */
import { status } from "@grpc/grpc-js";

export type FailureClass = "retryable" | "permanent";

const PERMANENT = new Set<number>([
  status.UNAUTHENTICATED,
  status.PERMISSION_DENIED,
  status.UNIMPLEMENTED,
  status.INVALID_ARGUMENT,
  status.FAILED_PRECONDITION,
]);

export function classify(code: number | undefined): FailureClass {
  return code !== undefined && PERMANENT.has(code) ? "permanent" : "retryable";
}

/** `UNAUTHENTICATED`, `UNAVAILABLE`, … for a numeric code. */
export function codeName(code: number | undefined): string {
  if (code === undefined) return "UNKNOWN";
  return (status as unknown as Record<number, string>)[code] ?? String(code);
}
