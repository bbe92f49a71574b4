/**
 * The syntax of a `devicePattern` (SPEC §4): how an external broker's topics name their device
 * and kind. Checked here, where the config schema can reach it; compiled in transports/mqtt.
 */

/** The default pattern for external brokers, matching the embedded broker's topics. */
export const DEFAULT_DEVICE_PATTERN = "devices/{device}/{kind}";

/**
 * Checks a `devicePattern`: `/`-separated levels, exactly one `{device}`, at most one `{kind}`,
 * `+` for any one level, `#` only as the last level. Returns the problem, or undefined.
 */
export function checkDevicePattern(pattern: string): string | undefined {
  const levels = pattern.split("/");
  let devices = 0;
  let kinds = 0;
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i];
    if (level === "{device}") devices++;
    else if (level === "{kind}") kinds++;
    else if (level === "#") {
      if (i !== levels.length - 1) return `"#" must be the last level, in "${pattern}"`;
    } else if (level.includes("{") || level.includes("}")) {
      return `Unknown placeholder "${level}" in "${pattern}": use {device} or {kind} as a whole level`;
    } else if (level !== "+" && (level.includes("+") || level.includes("#"))) {
      return `Wildcards must be a whole level, in "${pattern}"`;
    }
  }
  if (devices !== 1) return `Pattern "${pattern}" must have exactly one {device} level`;
  if (kinds > 1) return `Pattern "${pattern}" may have at most one {kind} level`;
  return undefined;
}
