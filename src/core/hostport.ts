/**
 * `host:port` in one place: the config schema's check, and splitting and joining (IPv6 in
 * brackets), for the agent, the hub and the CLI alike.
 */
import * as v from "valibot";

/** `host:port` with a port in 0..65535 (0: any free port). */
export const hostPort = v.pipe(
  v.string(),
  v.regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):(\d{1,5})$/, 'must be "host:port", e.g. "127.0.0.1:8080"'),
  v.check((s) => Number(s.slice(s.lastIndexOf(":") + 1)) <= 65535, "port must be 0 to 65535"),
);

/** Splits `host:port` (`[::1]:7443` too) into a hostname without brackets and a port. */
export function splitHostPort(address: string): { hostname: string; port: number } {
  const at = address.lastIndexOf(":");
  return { hostname: address.slice(0, at).replace(/^\[(.*)\]$/, "$1"), port: Number(address.slice(at + 1)) };
}

/** Joins a hostname and port, bracketing IPv6 addresses. */
export function joinHostPort(hostname: string, port: number): string {
  return `${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
}

/** An `http://` URL on this machine for a listen address (a wildcard address is reached on loopback). */
export function localUrl(listen: string, path: string): string {
  const { hostname, port } = splitHostPort(listen);
  const local = hostname === "0.0.0.0" || hostname === "::" ? "127.0.0.1" : hostname;
  return `http://${joinHostPort(local, port)}${path}`;
}
