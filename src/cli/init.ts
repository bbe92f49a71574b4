/** `outpost init`: writes a valid config (mode 0600) with a fresh API token; never overwrites without --force. */
import { chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import process from "node:process";
import { parseConfig } from "../config/mod.ts";
import { UsageError } from "../core/errors.ts";
import { randomToken } from "../core/secret.ts";
import type { Io } from "./io.ts";

export interface InitOptions {
  config?: string;
  hub?: string;
  routingKey?: string;
  secret?: string;
  edgeId?: string;
  dataDir?: string;
  force?: boolean;
}

export function initCommand(options: InitOptions, io: Io): number {
  const path = resolve(options.config ?? process.env.OUTPOST_CONFIG ?? "./outpost.json");
  const hubFlags = [options.hub, options.routingKey, options.secret].filter((x) => x !== undefined).length;
  if (hubFlags !== 0 && hubFlags !== 3) {
    throw new UsageError("--hub, --routing-key and --secret go together: give all three or none");
  }
  if (existsSync(path) && !options.force) {
    throw new UsageError(`${path} already exists: not overwriting it (use --force to replace it)`);
  }
  const doc: Record<string, unknown> = {
    ...(options.edgeId ? { edgeId: options.edgeId } : {}),
    dataDir: options.dataDir ?? "./.outpost",
    api: { listen: "127.0.0.1:8080", token: randomToken() },
    mqtt: { broker: { listen: "127.0.0.1:1883", auth: "none" } },
    outbox: { maxBytes: 1073741824, onFull: "drop-oldest" },
  };
  if (options.hub) {
    doc.hub = { url: options.hub, routingKey: String(options.routingKey), secret: String(options.secret) };
  }
  const check = parseConfig(doc, dirname(path), path);
  if (!check.ok) throw new UsageError("The options make an invalid config", { issues: check.issues });
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(doc, null, 2) + "\n", { mode: 0o600 });
  chmodSync(path, 0o600);
  io.out(`Wrote ${path} (mode 0600) with a new API token.`);
  io.out(`Start the agent with: outpost run --config ${path}`);
  return 0;
}
