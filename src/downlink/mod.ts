/**
 * What the hub sends down the link besides acks, each frame to its owner:
 * - `rules`: validated and applied through the same path as `PUT /api/v1/rules`, the outcome
 *   reported back (rules.ts);
 * - `command` and `commandResultAck`: to the device command host (src/device_commands/);
 * - `updateOffer`: to the offer handling (offers.ts), which hands it to the updater;
 * - `operation` (config, logs, restart): to the agent's management (src/management/).
 * Every frame is handled without ever throwing into the link: bad input from the hub is
 * reported back to it, like bad input from a device is dead-lettered.
 */
import { Buffer } from "node:buffer";
import type { EdgeFrame, HubFrame, OperationFrame, UpdateOfferFrame } from "../proto/mod.ts";
import type { Commands } from "../device_commands/mod.ts";
import type { Telemetry } from "../telemetry/mod.ts";
import { applyRulesPush, type RulesTarget } from "./rules.ts";

export { createOfferHandling, type OfferDeps, type OfferHandling } from "./offers.ts";
export { report } from "./report.ts";
export type { RulesTarget } from "./rules.ts";

export interface DownlinkDeps {
  rules: RulesTarget;
  /** An update offer from the hub (`url` is the signed manifest's URL). */
  onUpdateOffer?: (offer: UpdateOfferFrame) => void;
  /** A management operation from the hub (config, logs, restart). */
  onOperation?: (operation: OperationFrame) => void;
  telemetry: Telemetry;
  /** Sends a frame to the hub; false when the link is down (the hub resends pushes on connect). */
  send: (frame: EdgeFrame) => boolean;
  /** Device commands (src/device_commands): `command` frames and the hub's acks of their results. */
  commands?: Pick<Commands, "receive" | "acknowledged">;
}

export function createDownlink(deps: DownlinkDeps): (frame: HubFrame) => void {
  const { telemetry } = deps;
  return (frame) => {
    switch (frame.frame) {
      case "rules":
        deps.send(applyRulesPush(deps.rules, frame.rules));
        return;
      case "command":
        if (deps.commands) deps.commands.receive(frame.command);
        else {
          deps.send({
            frame: "commandResult",
            commandResult: {
              id: frame.command.id,
              status: "error",
              payload: Buffer.from(JSON.stringify({ error: "This edge does not take commands" })),
            },
          });
        }
        return;
      case "commandResultAck":
        deps.commands?.acknowledged(frame.commandResultAck.id);
        return;
      case "updateOffer":
        if (deps.onUpdateOffer) deps.onUpdateOffer(frame.updateOffer);
        else telemetry.log.warn("hub.frame_unhandled", { frame: frame.frame });
        return;
      case "operation":
        if (deps.onOperation) deps.onOperation(frame.operation);
        else telemetry.log.warn("hub.frame_unhandled", { frame: frame.frame });
        return;
      default:
        telemetry.log.warn("hub.frame_unhandled", { frame: (frame as HubFrame).frame });
    }
  };
}
