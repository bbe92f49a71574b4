/**
 * The commands table in the agent's database (migrations/0004_commands.sql). Every SQL text is a
 * constant, so the statement cache holds a small fixed set; values are always bound. Each write
 * is one statement (its own transaction), committed before the caller acts on it: a command is
 * stored before it is delivered, a result before it is sent or acknowledged to the device.
 */
import type { LocalDatabase } from "../db/mod.ts";
import type { CommandStatus } from "./parse.ts";

export type CommandState = "pending" | "delivered" | "done";

export interface CommandRow {
  /** The row's insertion order (a cursor for paging). */
  n: number;
  id: string;
  device: string;
  method: string;
  /** JSON text, null for a command refused before its params were read. */
  params: string | null;
  timeoutMs: number;
  receivedAt: number;
  deadline: number;
  state: CommandState;
  deliveredVia: string | null;
  deliveredAt: number | null;
  status: CommandStatus | null;
  /** JSON text. */
  payload: string | null;
  completedAt: number | null;
  resultSentAt: number | null;
  resultAcked: boolean;
}

const COLUMNS =
  "rowid AS n, id, device, method, params, timeout_ms, received_at, deadline, state, delivered_via, " +
  "delivered_at, status, payload, completed_at, result_sent_at, result_acked";

const SQL = {
  insert: "INSERT INTO commands (id, device, method, params, timeout_ms, received_at, deadline, state, " +
    "status, payload, completed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
  get: `SELECT ${COLUMNS} FROM commands WHERE id = ?`,
  deliver: "UPDATE commands SET state = 'delivered', delivered_via = ?, delivered_at = ? " +
    "WHERE id = ? AND state = 'pending'",
  finish: "UPDATE commands SET state = 'done', status = ?, payload = ?, completed_at = ? " +
    "WHERE id = ? AND state != 'done'",
  sent: "UPDATE commands SET result_sent_at = ? WHERE id = ?",
  acked: "UPDATE commands SET result_acked = 1 WHERE id = ? AND state = 'done'",
  pendingFor:
    `SELECT ${COLUMNS} FROM commands WHERE device = ? AND state = 'pending' ORDER BY received_at LIMIT ?`,
  pendingAll: `SELECT ${COLUMNS} FROM commands WHERE state = 'pending' ORDER BY received_at LIMIT ?`,
  expired: `SELECT ${COLUMNS} FROM commands WHERE state IN ('pending', 'delivered') AND deadline <= ? ` +
    "ORDER BY deadline LIMIT ?",
  nextDeadline: "SELECT MIN(deadline) AS deadline FROM commands WHERE state IN ('pending', 'delivered')",
  open: "SELECT COUNT(*) AS n FROM commands WHERE state IN ('pending', 'delivered')",
  unacked: `SELECT ${COLUMNS} FROM commands WHERE result_acked = 0 AND state = 'done' ` +
    "AND (result_sent_at IS NULL OR result_sent_at < ?) AND rowid > ? ORDER BY rowid LIMIT ?",
  counts: "SELECT state, result_acked, COUNT(*) AS n FROM commands GROUP BY state, result_acked",
  recent: `SELECT ${COLUMNS} FROM commands ORDER BY received_at DESC LIMIT ?`,
  recentFor: `SELECT ${COLUMNS} FROM commands WHERE device = ? ORDER BY received_at DESC LIMIT ?`,
  hasDevice: "SELECT 1 AS x FROM commands WHERE device = ? LIMIT 1",
  pruneAcked: "DELETE FROM commands WHERE state = 'done' AND result_acked = 1 AND completed_at < ?",
  pruneUnacked: "DELETE FROM commands WHERE state = 'done' AND result_acked = 0 AND completed_at < ?",
  knownDevices: "SELECT device FROM command_devices",
  addDevice: "INSERT INTO command_devices (device, seen_at) VALUES (?, ?) " +
    "ON CONFLICT (device) DO UPDATE SET seen_at = excluded.seen_at",
  countDevices: "SELECT COUNT(*) AS n FROM command_devices",
  trimDevices: "DELETE FROM command_devices WHERE device NOT IN " +
    "(SELECT device FROM command_devices ORDER BY seen_at DESC LIMIT ?)",
} as const;

/** Devices remembered as command targets across restarts (the most recently seen). */
export const MAX_COMMAND_DEVICES = 10_000;

function toRow(r: any): CommandRow {
  return {
    n: r.n,
    id: r.id,
    device: r.device,
    method: r.method,
    params: r.params ?? null,
    timeoutMs: r.timeout_ms,
    receivedAt: r.received_at,
    deadline: r.deadline,
    state: r.state,
    deliveredVia: r.delivered_via ?? null,
    deliveredAt: r.delivered_at ?? null,
    status: r.status ?? null,
    payload: r.payload ?? null,
    completedAt: r.completed_at ?? null,
    resultSentAt: r.result_sent_at ?? null,
    resultAcked: r.result_acked === 1,
  };
}

export interface NewCommand {
  id: string;
  device: string;
  method: string;
  params: string | null;
  timeoutMs: number;
  receivedAt: number;
  deadline: number;
}

export class CommandStore {
  private readonly db: LocalDatabase;

  constructor(db: LocalDatabase) {
    this.db = db;
  }

  private q(sql: string) {
    return this.db.prepare(sql);
  }

  get(id: string): CommandRow | undefined {
    const r = this.q(SQL.get).get(id);
    return r === undefined ? undefined : toRow(r);
  }

  /** Stores a command waiting for its device. */
  insertPending(c: NewCommand): void {
    this.q(SQL.insert).run(
      c.id,
      c.device,
      c.method,
      c.params,
      c.timeoutMs,
      c.receivedAt,
      c.deadline,
      "pending",
      null,
      null,
      null,
    );
  }

  /** Stores a command that is finished on arrival (refused). */
  insertDone(c: NewCommand, status: CommandStatus, payload: string): void {
    this.q(SQL.insert).run(
      c.id,
      c.device,
      c.method,
      c.params,
      c.timeoutMs,
      c.receivedAt,
      c.deadline,
      "done",
      status,
      payload,
      c.receivedAt,
    );
  }

  /** pending → delivered; false when it was not pending any more. */
  markDelivered(id: string, via: string, now: number): boolean {
    return this.q(SQL.deliver).run(via, now, id).changes > 0;
  }

  /** pending|delivered → done; false when it was already done. */
  finish(id: string, status: CommandStatus, payload: string, now: number): boolean {
    return this.q(SQL.finish).run(status, payload, now, id).changes > 0;
  }

  markSent(id: string, now: number): void {
    this.q(SQL.sent).run(now, id);
  }

  markAcked(id: string): boolean {
    return this.q(SQL.acked).run(id).changes > 0;
  }

  pending(device: string | undefined, limit: number): CommandRow[] {
    const rows = device === undefined
      ? this.q(SQL.pendingAll).all(limit)
      : this.q(SQL.pendingFor).all(device, limit);
    return rows.map(toRow);
  }

  expired(now: number, limit: number): CommandRow[] {
    return this.q(SQL.expired).all(now, limit).map(toRow);
  }

  nextDeadline(): number | undefined {
    const r = this.q(SQL.nextDeadline).get() as { deadline: number | null } | undefined;
    return r?.deadline ?? undefined;
  }

  openCount(): number {
    return (this.q(SQL.open).get() as { n: number }).n;
  }

  /** Finished results the hub has not acknowledged, last sent before `sentBefore`, after row `after`. */
  unacked(sentBefore: number, after: number, limit: number): CommandRow[] {
    return this.q(SQL.unacked).all(sentBefore, after, limit).map(toRow);
  }

  counts(): { pending: number; delivered: number; unacked: number } {
    const out = { pending: 0, delivered: 0, unacked: 0 };
    for (const r of this.q(SQL.counts).all() as { state: CommandState; result_acked: number; n: number }[]) {
      if (r.state === "pending") out.pending += r.n;
      else if (r.state === "delivered") out.delivered += r.n;
      else if (r.result_acked === 0) out.unacked += r.n;
    }
    return out;
  }

  recent(device: string | undefined, limit: number): CommandRow[] {
    const rows = device === undefined
      ? this.q(SQL.recent).all(limit)
      : this.q(SQL.recentFor).all(device, limit);
    return rows.map(toRow);
  }

  hasDevice(device: string): boolean {
    return this.q(SQL.hasDevice).get(device) !== undefined;
  }

  /** Deletes finished commands: acknowledged ones completed before `acked`, the rest before `unacked`. */
  prune(acked: number, unacked: number): { acked: number; unacked: number } {
    return {
      acked: this.q(SQL.pruneAcked).run(acked).changes,
      unacked: this.q(SQL.pruneUnacked).run(unacked).changes,
    };
  }

  knownDevices(): string[] {
    return (this.q(SQL.knownDevices).all() as { device: string }[]).map((r) => r.device);
  }

  /**
   * Remembers devices commands may go to; the table keeps the `max` most recently seen (ids are
   * chosen by clients: a SUBSCRIBE may name any).
   */
  addDevices(devices: readonly string[], now: number, max = MAX_COMMAND_DEVICES): void {
    if (devices.length === 0) return;
    this.db.transaction(() => {
      for (const d of devices) this.q(SQL.addDevice).run(d, now);
      const { n } = this.q(SQL.countDevices).get() as { n: number };
      if (n > max) this.q(SQL.trimDevices).run(max);
    });
  }
}
