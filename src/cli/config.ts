/** `outpost config schema`: the config file's JSON Schema. */
import { configJsonSchema } from "../config/mod.ts";
import { UsageError } from "../core/errors.ts";
import type { Io } from "./io.ts";

export function configCommand(action: string, io: Io): number {
  if (action !== "schema") throw new UsageError(`Unknown config action "${action}": expected "schema"`);
  io.out(JSON.stringify(configJsonSchema(), null, 2));
  return 0;
}
