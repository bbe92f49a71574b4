/** Durations in rules documents: the one parser in src/core/duration.ts. */
export { DURATION_PATTERN, parseDuration } from "../core/duration.ts";
