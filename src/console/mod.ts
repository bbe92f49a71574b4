/**
 * The web console (SPEC §9), shared by the agent and the hub: sign-in with the API token into a
 * bounded table of sessions (cookie `HttpOnly`, `SameSite=Strict`, `Secure` over TLS, 12 h), the
 * `Origin` check for cookie-authenticated changes, and the pages and assets, all embedded in the
 * program (src/console/assets/ → assets.gen.ts by scripts/gen.ts) and served under a strict CSP.
 */
export {
  changesState,
  type ConsoleOptions,
  CSP,
  isConsolePath,
  mountConsole,
  remoteAddress,
  sameOrigin,
} from "./routes.ts";
export {
  SESSION_COOKIE,
  sessionCookie,
  sessionFromCookie,
  type SessionOptions,
  SessionTable,
} from "./sessions.ts";
export { ASSETS } from "./assets.gen.ts";
