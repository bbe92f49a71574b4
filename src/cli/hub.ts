/** `outpost hub --config FILE`: the reference hub, loaded only when asked for. */
import { UsageError } from "../core/errors.ts";

export async function hubCommand(o: { config?: string }): Promise<number> {
  if (!o.config) throw new UsageError("outpost hub needs --config FILE");
  const { runHub } = await import("../hub/mod.ts");
  return await runHub(o.config);
}
