/**
 * The CLI entry (`deno run -A src/main.ts <command>`, `bun src/main.ts <command>`, the compiled
 * binary). The only place that sets the exit code: 0 success, 1 runtime failure, 2 bad usage,
 * bad config or failed validation (with the offending key or path, never a stack trace).
 */
// First, before the rest of the program is loaded (see the module).
import "./runtime/boot.ts";
import { cac } from "cac";
import { configCommand } from "./cli/config.ts";
import { hubCommand } from "./cli/hub.ts";
import { errorMessage, formatIssues, UsageError } from "./core/errors.ts";
import { initCommand } from "./cli/init.ts";
import { logsCommand } from "./cli/logs.ts";
import { type Io, stdio } from "./cli/io.ts";
import { runCommand } from "./cli/run.ts";
import { statusCommand } from "./cli/status.ts";
import { versionCommand, versionText } from "./cli/version.ts";
import { args as runtimeArgs, exit } from "./runtime/mod.ts";

export async function main(argv: string[], io: Io = stdio): Promise<number> {
  const cli = cac("outpost");
  let result: Promise<number> | number = 0;
  const set = (fn: () => Promise<number> | number) => () => {
    result = fn();
  };

  cli.command("run", "Run the agent in the foreground until SIGINT/SIGTERM")
    .option("--config <file>", "Config file (else $OUTPOST_CONFIG, ./outpost.json, /etc/outpost/config.json)")
    .example("outpost run --config /etc/outpost/config.json")
    .action((o) => set(() => runCommand(o))());

  cli.command("init", "Write a config file with a fresh random API token")
    .option("--config <file>", "Where to write it (default: $OUTPOST_CONFIG or ./outpost.json)")
    .option("--hub <url>", "Hub URL, e.g. grpc://hub.example:7443")
    .option("--routing-key <key>", "Routing key the hub knows this edge by")
    .option("--secret <secret>", "Secret shared with the hub")
    .option("--edge-id <id>", "This edge's id (default: the host name)")
    .option("--data-dir <dir>", "Data folder (default: ./.outpost beside the config)")
    .option("--force", "Overwrite an existing file")
    .action((o) => set(() => initCommand(o, io))());

  cli.command("status", "Ask the running agent for its status")
    .option("--config <file>", "Config file of the agent to ask")
    .option("--json", "Print the raw JSON status")
    .action((o) => set(() => statusCommand(o, io))());

  cli.command("logs", "Print the agent's log lines from its on-disk ring (works while it is stopped)")
    .option("--config <file>", "Config file of the agent (its data folder holds the ring)")
    .option("--since <time>", 'Only lines since an ISO time or a duration back from now ("15m", "2h")')
    .option("--level <level>", "Only lines at this level or above: debug, info, warn, error")
    .option("--lines <n>", "At most this many lines, the newest (default and maximum 10000)")
    .option("--json", "One JSON object per line, as the agent wrote them")
    .example("outpost logs --since 1h --level warn")
    .action((o) => set(() => logsCommand(o, io))());

  cli.command("config <action>", "Config tools: `outpost config schema` prints the JSON Schema")
    .action((action: string) => set(() => configCommand(action, io))());

  cli.command(
    "rules <action> [file]",
    "Rules tools: `rules check FILE`, `rules test FILE --message JSON`, `rules schema`",
  )
    .option(
      "--message <json>",
      'With `rules test`: the message, e.g. \'{"device":"d1","kind":"telemetry","payload":{"t":20}}\'',
    )
    .example("outpost rules check rules.json")
    .example(
      `outpost rules test rules.json --message '{"device":"boiler-1","kind":"telemetry","payload":{"temperature":95}}'`,
    )
    .action((action: string, file: string | undefined, o: { message?: string }) =>
      set(async () => (await import("./cli/rules.ts")).rulesCommand(action, file, o, io))()
    );

  cli.command("hub", "Run the reference hub (gRPC server, store and HTTP API)")
    .option("--config <file>", "Hub config file (required)")
    .action((o) => set(() => hubCommand(o))());

  cli.command(
    "update [action]",
    "Check for or apply a signed update; `update keygen --out FILE` makes a key pair",
  )
    .option("--check", "Only fetch and verify the manifest; print the current and offered versions")
    .option("--manifest <url>", "Manifest URL (default: update.manifestUrl)")
    .option("--allow-downgrade", "Install the offered version even if it is not newer")
    .option("--config <file>", "Config file of the agent to update")
    .option("--out <file>", "With `update keygen`: where to write the private key (mode 0600)")
    .option("--force", "With `update keygen`: overwrite an existing key file")
    .example("outpost update --check")
    .example("outpost update keygen --out release-key.pem")
    .action((action: string | undefined, o) =>
      set(async () => {
        const { updateCommand } = await import("./cli/update.ts");
        return await updateCommand(action, o, io);
      })()
    );

  cli.command("version", "Print the version, runtime and target").action(set(() => versionCommand(io)));

  cli.help();
  cli.option("-v, --version", "Print the version, runtime and target");

  try {
    const parsed = cli.parse(["outpost", "outpost", ...argv], { run: false });
    if (parsed.options.version && !cli.matchedCommand) return versionCommand(io);
    if (parsed.options.help || parsed.options.h) return 0;
    if (!cli.matchedCommand) {
      if (argv.length === 0) {
        cli.outputHelp();
        return 2;
      }
      throw new UsageError(`Unknown command "${argv[0]}": see outpost --help`);
    }
    await cli.runMatchedCommand();
    return await result;
  } catch (error) {
    return report(error, io);
  }
}

function report(error: unknown, io: Io): number {
  if (error instanceof UsageError) {
    io.err(`error: ${error.message}`);
    if (error.issues.length > 0) io.err(formatIssues(error.issues));
    return 2;
  }
  if (error instanceof Error && error.name === "CACError") {
    io.err(`error: ${error.message} (see outpost --help)`);
    return 2;
  }
  io.err(`error: ${errorMessage(error)}`);
  return 1;
}

if (import.meta.main) {
  const code = await main(runtimeArgs());
  exit(code);
}

export { versionText };
