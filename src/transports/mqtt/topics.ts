/**
 * Which MQTT topics carry device data, and for which device (SPEC §4). Pure functions, no I/O:
 * - the embedded broker's own topics `devices/{device}/telemetry|attributes|events`;
 * - the ThingsBoard device API `v1/devices/me/telemetry|attributes` (the device is the one the
 *   connection authenticated as);
 * - an external broker's topics, mapped by a `devicePattern` with a `{device}` segment.
 */
import type { IngestKind } from "../../core/message.ts";
import { checkDevicePattern } from "../../core/device_pattern.ts";
import { DEVICE_ID } from "../../ingest/mod.ts";

export { checkDevicePattern, DEFAULT_DEVICE_PATTERN } from "../../core/device_pattern.ts";

/** Where a publish goes: a device's data, refused device data (dead-lettered), or the local bus. */
export type TopicRoute =
  | { type: "device"; device: string; kind: IngestKind }
  | { type: "invalid"; device?: string; reason: string; message: string }
  | { type: "bus" };

const KIND_SEGMENTS: Record<string, IngestKind> = {
  telemetry: "telemetry",
  attributes: "attributes",
  events: "event",
  event: "event",
};

/** The ThingsBoard device API prefix; `me` is whoever the connection authenticated as. */
export const THINGSBOARD_PREFIX = "v1/devices/me/";
/** The ThingsBoard gateway API prefix (gateway.ts). */
export const GATEWAY_PREFIX = "v1/gateway/";

/** `devices/{device}/telemetry|attributes|events` on the embedded broker. */
export function routeDeviceTopic(topic: string): TopicRoute {
  if (!topic.startsWith("devices/")) return { type: "bus" };
  const levels = topic.split("/");
  if (levels.length !== 3) return { type: "bus" };
  const kindSegment = levels[2];
  if (kindSegment === "event" || !(kindSegment in KIND_SEGMENTS)) return { type: "bus" };
  const device = levels[1];
  if (!DEVICE_ID.test(device)) {
    return {
      type: "invalid",
      reason: "invalid-device",
      message: `Device id "${device.slice(0, 64)}" in the topic is not 1-128 of A-Z a-z 0-9 . _ : -`,
    };
  }
  return { type: "device", device, kind: KIND_SEGMENTS[kindSegment] };
}

/** `v1/devices/me/telemetry|attributes`: the kind, or undefined for any other topic. */
export function thingsBoardKind(topic: string): IngestKind | undefined {
  if (topic === "v1/devices/me/telemetry") return "telemetry";
  if (topic === "v1/devices/me/attributes") return "attributes";
  return undefined;
}

/** A compiled `devicePattern`: maps a topic to its device and kind, or says why it cannot. */
export type TopicMapper = (topic: string) => TopicRoute;

/**
 * Compiles a `devicePattern` (checked by `checkDevicePattern`). Without a `{kind}` level every
 * matching message has `defaultKind`; with one, the level must be telemetry, attributes or events.
 */
export function compileDevicePattern(pattern: string, defaultKind: IngestKind = "telemetry"): TopicMapper {
  const problem = checkDevicePattern(pattern);
  if (problem) throw new Error(problem);
  const levels = pattern.split("/");
  const rest = levels[levels.length - 1] === "#";
  const fixed = rest ? levels.length - 1 : levels.length;
  return (topic) => {
    const parts = topic.split("/");
    if (rest ? parts.length < fixed : parts.length !== fixed) {
      return {
        type: "invalid",
        reason: "unmapped-topic",
        message: `Topic does not match the pattern "${pattern}"`,
      };
    }
    let device: string | undefined;
    let kind: IngestKind = defaultKind;
    for (let i = 0; i < fixed; i++) {
      const want = levels[i];
      const got = parts[i];
      if (want === "{device}") device = got;
      else if (want === "{kind}") {
        const k = KIND_SEGMENTS[got];
        if (k === undefined) {
          return {
            type: "invalid",
            reason: "unmapped-topic",
            message: `Topic level "${got.slice(0, 64)}" is not telemetry, attributes or events`,
          };
        }
        kind = k;
      } else if (want !== "+" && want !== got) {
        return {
          type: "invalid",
          reason: "unmapped-topic",
          message: `Topic does not match the pattern "${pattern}"`,
        };
      }
    }
    if (device === undefined || !DEVICE_ID.test(device)) {
      return {
        type: "invalid",
        reason: "invalid-device",
        message: `Device id "${
          (device ?? "").slice(0, 64)
        }" in the topic is not 1-128 of A-Z a-z 0-9 . _ : -`,
      };
    }
    return { type: "device", device, kind };
  };
}
