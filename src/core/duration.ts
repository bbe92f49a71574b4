/** Durations in rules documents and the config: a whole number and a unit, `500ms`, `10s`, `5m`, `1h`, `1d`. */

export const DURATION_PATTERN = /^[1-9][0-9]{0,14}(ms|s|m|h|d)$/;

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds of a duration matching `DURATION_PATTERN`, else `undefined`. */
export function parseDuration(text: string): number | undefined {
  const m = DURATION_PATTERN.exec(text);
  if (m === null) return undefined;
  const ms = Number(text.slice(0, text.length - m[1].length)) * UNIT_MS[m[1]];
  return Number.isSafeInteger(ms) ? ms : undefined;
}
