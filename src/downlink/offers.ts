/**
 * Update offers from the hub (issue: the downlink). An offer names a signed manifest (`url`);
 * with `update.auto` the agent starts the same self-update as `POST /api/v1/update`, otherwise
 * it records the offer and shows it in `GET /api/v1/status`. Either way the hub hears back: the
 * start or the refusal (and why) at once, and the outcome (committed, rolled back, failed) when
 * it is reached, also across the restart into the new version, since each connect reports the
 * last final state.
 */
import { redactUrl } from "../core/redact.ts";
import type { EdgeFrame, UpdateOfferFrame } from "../proto/mod.ts";
import type { Logger } from "../telemetry/mod.ts";
import type { Updater, UpdateStatus } from "../update/mod.ts";
import { report as reportFrame } from "./report.ts";

const FINAL = new Set(["committed", "rolled-back", "failed"]);

export interface OfferDeps {
  auto: boolean;
  updater: Updater;
  log: Logger;
  send: (frame: EdgeFrame) => boolean;
}

export interface OfferHandling {
  offer(offer: UpdateOfferFrame): void;
  /** After each connect: report the last final outcome, if any. */
  connected(): void;
  /** For `GET /api/v1/status`. */
  status(): { state: string; version?: string; reason?: string; offered: Record<string, unknown> | null };
}

export function createOfferHandling(deps: OfferDeps): OfferHandling {
  let offered: { version: string; url: string; receivedAt: string; applied: boolean } | null = null;
  const report = (body: Record<string, unknown>) => deps.send(reportFrame("update", body));
  const outcome = (s: UpdateStatus) => ({
    status: s.state,
    version: s.version ?? s.current,
    current: s.current,
    ...(s.reason ? { reason: s.reason } : {}),
    at: s.at,
  });

  deps.updater.onChange((s) => {
    if (FINAL.has(s.state)) report(outcome(s));
  });

  return {
    offer(o) {
      offered = {
        version: o.version,
        url: redactUrl(o.url),
        receivedAt: new Date().toISOString(),
        applied: false,
      };
      deps.log.info("update.offered", { version: o.version, url: redactUrl(o.url), auto: deps.auto });
      if (!deps.auto) {
        report({
          status: "recorded",
          version: o.version,
          reason: "update.auto is off: apply with POST /api/v1/update",
        });
        return;
      }
      const started = deps.updater.start({ manifestUrl: o.url });
      if (started.ok) {
        offered.applied = true;
        report({ status: "started", version: o.version });
      } else {
        report({ status: "refused", version: o.version, reason: started.reason });
      }
    },
    connected() {
      const s = deps.updater.status();
      if (FINAL.has(s.state)) report(outcome(s));
    },
    status() {
      const s = deps.updater.status();
      return { state: s.state, version: s.version, reason: s.reason, offered };
    },
  };
}
