/**
 * What the hub sends down the link besides acks: rules (validated and applied through the same
 * path as `PUT /api/v1/rules`, the outcome reported back), commands and the hub's acks of their
 * results (handed to src/commands), update offers (handed to the update owner). Every frame is
 * handled without ever throwing into the link: bad input from the hub is reported back to it,
 * like bad input from a device is dead-lettered.
 */
import { Buffer } from "node:buffer";
import type { EdgeFrame, HubFrame, UpdateOfferFrame } from "../proto/mod.ts";
import type { Commands } from "../commands/mod.ts";
import type { Telemetry } from "../telemetry/mod.ts";
import type { RulesHost } from "./rules_host.ts";

export interface DownlinkDeps {
  rules: RulesHost;
  /** An update offer from the hub (`url` is the signed manifest's URL). */
  onUpdateOffer?: (offer: UpdateOfferFrame) => void;
  telemetry: Telemetry;
  /** Sends a frame to the hub; false when the link is down (the hub resends pushes on connect). */
  send: (frame: EdgeFrame) => boolean;
  /** Device commands (src/commands): `command` frames and the hub's acks of their results. */
  commands?: Pick<Commands, "receive" | "acknowledged">;
}

export function report(type: string, body: unknown): EdgeFrame {
  return { frame: "report", report: { type, body: Buffer.from(JSON.stringify(body)) } };
}

export function createDownlink(deps: DownlinkDeps): (frame: HubFrame) => void {
  const { telemetry } = deps;
  return (frame) => {
    switch (frame.frame) {
      case "rules": {
        const offered = frame.rules.version;
        let document: unknown;
        try {
          document = JSON.parse(Buffer.from(frame.rules.document).toString("utf8"));
        } catch (error) {
          deps.send(report("rules", {
            version: offered,
            status: "refused",
            errors: [{ path: "", message: `Rules document is not valid JSON: ${(error as Error).message}` }],
          }));
          return;
        }
        const result = deps.rules.apply(document, "hub");
        deps.send(report(
          "rules",
          result.ok
            ? { version: offered, status: "applied", rulesVersion: result.version, count: result.count }
            : { version: offered, status: "refused", errors: result.issues },
        ));
        return;
      }
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
      default:
        telemetry.log.warn("hub.frame_unhandled", { frame: frame.frame });
    }
  };
}
