/**
 * Command topics on MQTT (SPEC §4, docs/commands.md). Pure functions, no I/O:
 * - to a device: `devices/{device}/commands/{id}` with `{"id", "method", "params"}`, and for
 *   ThingsBoard-style devices `v1/devices/me/rpc/request/{id}` with `{"method", "params"}`;
 * - the answer: `devices/{device}/commands/{id}/response`, or `v1/devices/me/rpc/response/{id}`.
 * A device counts as listening when one of its connection's filters names it literally
 * (`devices/{device}/commands/+`, `devices/{device}/#`, …): a wildcard in the device level (a
 * monitor on `devices/#`, say) is not the device, and commands wait for the device itself.
 */
import { DEVICE_ID } from "../../ingest/mod.ts";
import { THINGSBOARD_PREFIX } from "./topics.ts";

/** A command as the MQTT side sends it (the same shape as the commands module's). */
export interface OutgoingCommand {
  id: string;
  device: string;
  method: string;
  params: unknown;
}

/** What the MQTT side does with commands: the commands module, wired by the agent. */
export interface CommandHooks {
  /** A device's answer; stored before this returns (throws when it cannot be stored). */
  answer(device: string, id: string, payload: Uint8Array, via: string): void;
  /** Something may now listen for `device`'s commands (undefined: for any device). */
  listening(device?: string): void;
}

/** The filter an external broker client subscribes to for answers. */
export const COMMAND_RESPONSE_FILTER = "devices/+/commands/+/response";
export const RPC_REQUEST_PREFIX = `${THINGSBOARD_PREFIX}rpc/request/`;
const RPC_RESPONSE_PREFIX = `${THINGSBOARD_PREFIX}rpc/response/`;
const COMMAND_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function commandTopic(device: string, id: string): string {
  return `devices/${device}/commands/${id}`;
}

export function commandPayload(command: OutgoingCommand): string {
  return JSON.stringify({ id: command.id, method: command.method, params: command.params ?? null });
}

export function rpcRequestPayload(command: OutgoingCommand): string {
  return JSON.stringify({ method: command.method, params: command.params ?? null });
}

/** `devices/{device}/commands/{id}/response` → its device and command id. */
export function parseResponseTopic(topic: string): { device: string; id: string } | undefined {
  if (!topic.startsWith("devices/") || !topic.endsWith("/response")) return undefined;
  const levels = topic.split("/");
  if (levels.length !== 5 || levels[2] !== "commands") return undefined;
  const [, device, , id] = levels;
  if (!DEVICE_ID.test(device) || !COMMAND_ID.test(id)) return undefined;
  return { device, id };
}

/** `v1/devices/me/rpc/response/{id}` → the command id. */
export function parseRpcResponseTopic(topic: string): string | undefined {
  if (!topic.startsWith(RPC_RESPONSE_PREFIX)) return undefined;
  const id = topic.slice(RPC_RESPONSE_PREFIX.length);
  return COMMAND_ID.test(id) ? id : undefined;
}

/** MQTT topic matching: `+` one level, `#` the rest (and the parent level). */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split("/");
  const t = topic.split("/");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return i === f.length - 1;
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/** The device a commands filter names literally (`devices/{device}/…`), if any. */
export function filterDevice(filter: string): string | undefined {
  if (!filter.startsWith("devices/")) return undefined;
  const device = filter.split("/")[1];
  return DEVICE_ID.test(device) ? device : undefined;
}

/** True when a filter takes the device's command `id` and names the device itself. */
export function listensForCommand(filter: string, device: string, id: string): boolean {
  return filterDevice(filter) === device && topicMatches(filter, commandTopic(device, id));
}

/** True when a filter takes ThingsBoard RPC request `id` (by default: any request). */
export function listensForRpc(filter: string, id = "any"): boolean {
  return topicMatches(filter, RPC_REQUEST_PREFIX + id);
}
