/** How a stored command is shown (`GET /api/v1/commands`) and handed to a device. */
import type { CommandStatus, DeviceCommand } from "./parse.ts";
import type { CommandRow } from "./store.ts";

/** A command as `GET /api/v1/commands` shows it. */
export interface CommandView {
  id: string;
  device: string;
  method: string;
  params: unknown;
  timeoutMs: number;
  state: "pending" | "delivered" | "done";
  receivedAt: string;
  deadline: string;
  deliveredVia: string | null;
  deliveredAt: string | null;
  status: CommandStatus | null;
  payload: unknown;
  completedAt: string | null;
  resultAcked: boolean;
}

export function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

function parseJson(text: string | null): unknown {
  if (text === null) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export function view(row: CommandRow): CommandView {
  return {
    id: row.id,
    device: row.device,
    method: row.method,
    params: parseJson(row.params),
    timeoutMs: row.timeoutMs,
    state: row.state,
    receivedAt: iso(row.receivedAt)!,
    deadline: iso(row.deadline)!,
    deliveredVia: row.deliveredVia,
    deliveredAt: iso(row.deliveredAt),
    status: row.status,
    payload: parseJson(row.payload),
    completedAt: iso(row.completedAt),
    resultAcked: row.resultAcked,
  };
}

export function toCommand(row: CommandRow): DeviceCommand {
  return { id: row.id, device: row.device, method: row.method, params: parseJson(row.params) };
}
