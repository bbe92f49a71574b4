/**
 * The shared vocabulary of the data path: what a device sent, after a transport has parsed it.
 * Every component speaks in `Message`s; none of them imports another's code to do so.
 */

export const MESSAGE_KINDS = ["telemetry", "attributes", "event"] as const;
/** The kinds a device can send; rules can also create `alarm` messages. */
export type IngestKind = typeof MESSAGE_KINDS[number];
export type MessageKind = IngestKind | "alarm";

export type JsonObject = { [key: string]: unknown };

export interface Message {
  device: string;
  kind: MessageKind;
  /** Milliseconds since the Unix epoch: the sample's own time, or the arrival time. */
  ts: number;
  payload: JsonObject;
  /**
   * Where it came from: `http`, `mqtt`, `mqtt:<broker>`, `gateway:<gateway id>` (a ThingsBoard
   * gateway's child), `rules`, `agent` (connectivity events).
   */
  source: string;
  /** The MQTT topic it arrived on, if any. */
  topic?: string;
}

/** A message leaving the rules, with where it goes. `route` absent means the hub. */
export interface RoutedMessage extends Message {
  /** Destinations: `hub`, or `mqtt:<topic>`. */
  route?: string[];
}
