/**
 * Counts what is refused or dropped and says when to log it: at most once a minute, with the
 * count since the last line (never a line per message or request; SPEC §14).
 */
export class RefusalLog {
  private count = 0;
  private loggedAt = -Infinity;
  constructor(private readonly now: () => number = Date.now, private readonly everyMs = 60_000) {}

  /** Counts `n` (default 1); returns the count to log when a line is due, else undefined. */
  note(n = 1): number | undefined {
    this.count += n;
    const t = this.now();
    if (t - this.loggedAt < this.everyMs) return undefined;
    this.loggedAt = t;
    const due = this.count;
    this.count = 0;
    return due;
  }
}
