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

const HEAD_BYTES = 256;
const decoder = new TextDecoder("utf-8", { fatal: false });

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
      ? p.slice(0, HEAD_BYTES)
      : decoder.decode(p.subarray(0, HEAD_BYTES));
    this.items.push({
      time: new Date().toISOString(),
      device: entry.device ?? null,
      topic: entry.topic ?? null,
      reason: entry.reason,
      message: entry.message,
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
