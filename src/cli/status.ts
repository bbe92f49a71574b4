/** `outpost status`: asks the running agent's control API and prints a summary (or JSON). */
import { agentEndpoint } from "./agent_api.ts";
import { loadConfig } from "../config/mod.ts";
import type { Io } from "./io.ts";

export async function statusCommand(options: { config?: string; json?: boolean }, io: Io): Promise<number> {
  const config = loadConfig(options.config);
  const { url, token } = agentEndpoint(config, "/api/v1/status");
  let response: Response;
  try {
    response = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  } catch {
    io.err(`No agent answers at ${url}: is it running? (start it with: outpost run)`);
    return 1;
  }
  if (!response.ok) {
    io.err(`The agent at ${url} answered ${response.status}: ${(await response.text()).slice(0, 200)}`);
    return 1;
  }
  const s = await response.json();
  if (options.json) {
    io.out(JSON.stringify(s, null, 2));
    return 0;
  }
  const hub = s.hub.configured
    ? `${s.hub.connected ? "connected" : "disconnected"} (${s.hub.url})${
      s.hub.error ? `: ${s.hub.error}` : ""
    }${s.hub.waitingFor ? `; waiting for ${s.hub.waitingFor}` : ""}` +
      (s.hub.lastAckAt ? `, last ack ${s.hub.lastAckAt}` : "")
    : "not configured (keeping everything in the outbox)";
  io.out(
    [
      `outpost ${s.version} on ${s.edgeId}, up ${s.uptimeSeconds}s`,
      `hub:    ${hub}`,
      `outbox: ${s.outbox.depth} records, ${s.outbox.bytes} bytes, oldest ${s.outbox.oldestAgeSeconds}s, dropped ${s.outbox.dropped}`,
      `ingest: ${s.ingest.accepted} accepted, ${s.ingest.rejected} rejected`,
      `rules:  ${s.rules.count} rules${s.rules.version ? ` (version ${s.rules.version})` : ""}`,
    ].join("\n"),
  );
  return 0;
}
