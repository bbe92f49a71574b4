/** The hub link's frames as plain objects: what the edge sends, what the hub sends back. */
export interface WireRecord {
  id: string;
  device: string;
  kind: string;
  /** Milliseconds since the Unix epoch. */
  ts: number;
  /** UTF-8 JSON bytes. */
  payload: Uint8Array;
  topic: string;
}
export interface Batch {
  seq: number;
  records: WireRecord[];
}
export interface CommandFrame {
  id: string;
  device: string;
  method: string;
  params: Uint8Array;
  timeoutMs: number;
}
export interface CommandResultFrame {
  id: string;
  status: string;
  payload: Uint8Array;
}
export interface RulesFrame {
  version: string;
  document: Uint8Array;
}
export interface UpdateOfferFrame {
  version: string;
  url: string;
  sha256: string;
  signature: string;
  size: number;
}
/** A management operation from the hub (config, logs, restart); `body` is UTF-8 JSON or empty. */
export interface OperationFrame {
  id: string;
  kind: string;
  body: Uint8Array;
}
export interface ReportFrame {
  type: string;
  body: Uint8Array;
}

/** One frame from the edge; exactly one field is set, named by `frame`. */
export type EdgeFrame =
  | { frame: "batch"; batch: Batch }
  | { frame: "commandResult"; commandResult: CommandResultFrame }
  | { frame: "heartbeat"; heartbeat: { ts: number } }
  | { frame: "report"; report: ReportFrame };

/** One frame from the hub; exactly one field is set, named by `frame`. */
export type HubFrame =
  | { frame: "ack"; ack: { seq: number } }
  | { frame: "command"; command: CommandFrame }
  | { frame: "rules"; rules: RulesFrame }
  | { frame: "updateOffer"; updateOffer: UpdateOfferFrame }
  | { frame: "heartbeat"; heartbeat: { ts: number } }
  | { frame: "commandResultAck"; commandResultAck: { id: string } }
  | { frame: "operation"; operation: OperationFrame };
