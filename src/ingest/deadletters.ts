/**
 * The bounded dead-letter list: input that was acknowledged (so a device does not resend it
 * forever) but not forwarded. Newest last; the oldest entries fall off past the bound.
 */

export interface DeadLetter {
  time: string;
  device: string | null;
  topic: string | null;
  reason: string;
  message: string;
  /** The first bytes of the payload, as text (invalid UTF-8 replaced). */
  head: string;
}

/** Bytes kept of each dead letter's topic and payload. */
export const HEAD_BYTES = 256;
const decoder = new TextDecoder("utf-8", { fatal: false });
const encoder = new TextEncoder();

export class DeadLetters {
  private readonly items: DeadLetter[] = [];
  private readonly bound: number;
  constructor(bound = 1000) {
    this.bound = bound;
  }

  add(
    entry: {
      device?: string;
      topic?: string;
      reason: string;
      message: string;
      payload?: Uint8Array | string;
    },
  ): void {
    const p = entry.payload;
    const head = p === undefined
      ? ""
      : typeof p === "string"
      ? clip(p)
      : decoder.decode(p.subarray(0, HEAD_BYTES));
    const topic = entry.topic === undefined ? null : clip(entry.topic);
    this.items.push({
      time: new Date().toISOString(),
      device: entry.device === undefined ? null : clip(entry.device),
      topic,
      reason: entry.reason,
      message: clip(entry.message, 1024),
      head,
    });
    if (this.items.length > this.bound) this.items.splice(0, this.items.length - this.bound);
  }

  list(limit = this.bound): DeadLetter[] {
    return this.items.slice(-limit);
  }

  get size(): number {
    return this.items.length;
  }
}

/**
 * The first `max` bytes of `s` as UTF-8 (a cut character dropped), as a fresh string: a slice
 * of a long string may keep the whole original alive.
 */
function clip(s: string, max = HEAD_BYTES): string {
  if (s.length <= max / 3) return s;
  const bytes = encoder.encode(s.length > max ? s.slice(0, max) : s);
  if (bytes.length <= max) return decoder.decode(bytes);
  return decoder.decode(bytes.subarray(0, max)).replace(/\uFFFD$/, "");
}
