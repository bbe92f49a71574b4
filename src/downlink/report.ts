import { Buffer } from "node:buffer";
import type { EdgeFrame } from "../proto/mod.ts";

/** A `report` frame: an outcome the edge tells the hub about (rules applied, update progress). */
export function report(type: string, body: unknown): EdgeFrame {
  return { frame: "report", report: { type, body: Buffer.from(JSON.stringify(body)) } };
}
