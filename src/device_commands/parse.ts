/**
 * Pure checks for commands: a `command` frame from the hub turned into a command or the list of
 * what is wrong with it, and a device's answer turned into a result. No I/O, no clock.
 *
 * A device answers with JSON (docs/commands.md):
 * - `{"status": "ok"|"error", "payload"?: …}` (no other keys): that status and payload;
 * - any other object with an `"error"` key: status `error`, the object as payload;
 * - any other JSON value: status `ok`, the value as payload;
 * - an empty body: status `ok`, payload `null`.
 */
import { DEVICE_ID } from "../ingest/mod.ts";
import { errorMessage } from "../core/errors.ts";

/** Command ids stand in an MQTT topic level and a URL path segment, like device ids. */
export const COMMAND_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export const COMMAND_LIMITS = {
  /** Bytes of a command's params (JSON text). */
  maxParamsBytes: 64 * 1024,
  /** Characters of a method name. */
  maxMethodLength: 256,
  minTimeoutMs: 1,
  maxTimeoutMs: 3_600_000,
} as const;

/** Statuses of a command's result, as the hub knows them. */
export type CommandStatus = "ok" | "error" | "timeout" | "device-offline";

/** A command as a device receives it. */
export interface DeviceCommand {
  id: string;
  device: string;
  method: string;
  /** The parsed params (any JSON value). */
  params: unknown;
}

export interface ParsedCommand extends DeviceCommand {
  /** The params as JSON text, as stored. */
  paramsText: string;
  timeoutMs: number;
}

/** The wire form of a `command` frame (see src/proto/mod.ts). */
export interface CommandInput {
  id: string;
  device: string;
  method: string;
  params: Uint8Array;
  timeoutMs: number;
}

export type ParseCommandResult =
  | { ok: true; command: ParsedCommand }
  | { ok: false; problems: string[] };

const utf8 = new TextDecoder("utf-8", { fatal: true });
// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

function quote(value: string, max = 64): string {
  return JSON.stringify(value.length > max ? `${value.slice(0, max)}…` : value);
}

/** Checks every field of a command frame; every problem is named, in field order. */
export function parseCommand(
  input: CommandInput,
  maxParamsBytes: number = COMMAND_LIMITS.maxParamsBytes,
): ParseCommandResult {
  const problems: string[] = [];
  const id = String(input.id ?? "");
  const device = String(input.device ?? "");
  const method = String(input.method ?? "");
  if (!COMMAND_ID.test(id)) problems.push(`Command id ${quote(id)} is not 1-128 of A-Z a-z 0-9 . _ : -`);
  if (!DEVICE_ID.test(device)) {
    problems.push(`Device id ${quote(device)} is not 1-128 of A-Z a-z 0-9 . _ : -`);
  }
  if (method.length === 0) problems.push("Method is empty");
  else if (method.length > COMMAND_LIMITS.maxMethodLength) {
    problems.push(
      `Method of ${method.length} characters is over the ${COMMAND_LIMITS.maxMethodLength}-character limit`,
    );
  } else if (CONTROL.test(method)) problems.push(`Method ${quote(method)} contains control characters`);
  const timeoutMs = Number(input.timeoutMs);
  if (
    !Number.isInteger(timeoutMs) || timeoutMs < COMMAND_LIMITS.minTimeoutMs ||
    timeoutMs > COMMAND_LIMITS.maxTimeoutMs
  ) {
    problems.push(
      `timeoutMs ${input.timeoutMs} is not a whole number from ${COMMAND_LIMITS.minTimeoutMs} to ${COMMAND_LIMITS.maxTimeoutMs}`,
    );
  }
  const bytes = input.params ?? new Uint8Array(0);
  let params: unknown = null;
  let paramsText = "null";
  if (bytes.byteLength > maxParamsBytes) {
    problems.push(`Params of ${bytes.byteLength} bytes are over the ${maxParamsBytes}-byte limit`);
  } else if (bytes.byteLength > 0) {
    try {
      paramsText = utf8.decode(bytes);
      params = JSON.parse(paramsText);
    } catch (error) {
      const why = error instanceof SyntaxError ? error.message : "not valid UTF-8";
      problems.push(`Params are not valid JSON: ${why}`);
    }
  }
  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, command: { id, device, method, params, paramsText, timeoutMs } };
}

export type AnswerResult =
  | { ok: true; status: "ok" | "error"; payload: unknown }
  | { ok: false; problem: string };

function isEnvelope(value: unknown): value is { status: "ok" | "error"; payload?: unknown } {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const v = value as Record<string, unknown>;
  if (v.status !== "ok" && v.status !== "error") return false;
  return Object.keys(v).every((k) => k === "status" || k === "payload");
}

/** A device's answer (MQTT payload or HTTP body) as a result, or why it cannot be read. */
export function parseAnswer(raw: Uint8Array | string, maxBytes: number): AnswerResult {
  const size = typeof raw === "string" ? raw.length : raw.byteLength;
  if (size > maxBytes) {
    return { ok: false, problem: `Answer of ${size} bytes is over the ${maxBytes}-byte limit` };
  }
  let text: string;
  try {
    text = typeof raw === "string" ? raw : utf8.decode(raw);
  } catch {
    return { ok: false, problem: "Answer is not valid UTF-8" };
  }
  if (text.trim() === "") return { ok: true, status: "ok", payload: null };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { ok: false, problem: `Answer is not valid JSON: ${errorMessage(error)}` };
  }
  if (isEnvelope(value)) return { ok: true, status: value.status, payload: value.payload ?? null };
  if (typeof value === "object" && value !== null && !Array.isArray(value) && "error" in value) {
    return { ok: true, status: "error", payload: value };
  }
  return { ok: true, status: "ok", payload: value };
}
