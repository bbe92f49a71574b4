/**
 * The edge's record of the hub's operations (`<dataDir>/operations.json`, 0600, written
 * atomically): which ids it has taken (an operation the hub sends again after a reconnect is
 * answered with its state, never run twice) and how each ended. Bounded: the newest
 * `JOURNAL_MAX` entries are kept.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic } from "../update/mod.ts";

export const JOURNAL_MAX = 64;

export type OperationStatus = "executing" | "successful" | "failed";

export interface JournalEntry {
  id: string;
  kind: string;
  status: OperationStatus;
  reason?: string;
  /** Unix ms of the last change. */
  at: number;
}

export class Journal {
  readonly #path: string;
  #entries: JournalEntry[];

  constructor(dataDir: string) {
    this.#path = join(dataDir, "operations.json");
    this.#entries = read(this.#path);
  }

  get(id: string): JournalEntry | undefined {
    return this.#entries.find((e) => e.id === id);
  }

  entries(): JournalEntry[] {
    return [...this.#entries];
  }

  /** Adds or replaces the entry of `entry.id`, newest last, and writes the file. */
  put(entry: JournalEntry): void {
    this.#entries = this.#entries.filter((e) => e.id !== entry.id);
    this.#entries.push(entry);
    if (this.#entries.length > JOURNAL_MAX) this.#entries = this.#entries.slice(-JOURNAL_MAX);
    writeFileAtomic(this.#path, JSON.stringify(this.#entries) + "\n", 0o600);
  }
}

function read(path: string): JournalEntry[] {
  try {
    const parsed = JSON.parse(readFileSync(path, "utf8"));
    return Array.isArray(parsed)
      ? parsed.filter((e) => typeof e?.id === "string" && typeof e.status === "string").slice(-JOURNAL_MAX)
      : [];
  } catch {
    return [];
  }
}
