/**
 * `outpost logs [--since T] [--level L] [--lines N] [--json]`: the agent's log lines from its
 * on-disk ring (`<dataDir>/logs/`), the same lines the hub's `POST /api/v1/edges/{edge}/logs`
 * returns. Reads the files directly, so it works while the agent is stopped too.
 */
import { loadConfig } from "../config/mod.ts";
import { UsageError } from "../core/errors.ts";
import { type LogLine, parseLogQuery, readLogRing } from "../telemetry/mod.ts";
import type { Io } from "./io.ts";

export interface LogsOptions {
  config?: string;
  since?: string | number;
  level?: string;
  lines?: string | number;
  json?: boolean;
}

export function logsCommand(options: LogsOptions, io: Io): number {
  const config = loadConfig(options.config);
  const input: Record<string, unknown> = {};
  if (options.since !== undefined) input.since = String(options.since);
  if (options.level !== undefined) input.level = String(options.level);
  if (options.lines !== undefined) {
    const n = String(options.lines);
    input.lines = /^\d{1,6}$/.test(n) ? Number(n) : n;
  }
  const query = parseLogQuery(input, Date.now());
  if (!query.ok) {
    throw new UsageError("Bad logs options", {
      issues: query.issues.map((i) => ({ ...i, path: `--${i.path.slice(1)}` })),
    });
  }
  const { lines, truncated } = readLogRing(config.dataDir, query.value);
  if (truncated && !options.json) {
    io.err(`(older lines left out; ask for fewer with --lines or a later --since)`);
  }
  for (const line of lines) io.out(options.json ? JSON.stringify(line) : formatLine(line));
  return 0;
}

function formatLine(line: LogLine): string {
  const { ts, level, event, ...fields } = line;
  const rest = Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : "";
  return `${ts} ${level.padEnd(5)} ${event}${rest}`;
}
