/**
 * The web console's own routes (SPEC §9), for the agent and the hub alike: `GET /` → `/ui/`,
 * the sign-in page and form, sign-out, the embedded assets, and the page shell for every deep
 * link under `/ui/`. Every answer carries a strict Content-Security-Policy: the console's own
 * origin only, no inline script or style.
 *
 * The API token is taken only by the sign-in form and never written into a page, an asset or a
 * cookie: the cookie holds a random session id.
 */
import type { Context, Hono } from "hono";
import { ASSETS } from "./assets.gen.ts";
import { sessionCookie, sessionFromCookie, type SessionTable } from "./sessions.ts";

/** Only the console's own origin; no inline script or style; no framing. */
export const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
  "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

export interface ConsoleOptions {
  /** `agent` or `hub`: which client script the shell loads. */
  app: "agent" | "hub";
  title: string;
  sessions: SessionTable;
  /** Constant-time check of a candidate API token; undefined when no token is configured. */
  verify?: (token: string) => boolean;
  /** Failed-authentication limit shared with the API (SPEC §14). */
  limiter: { blocked(address: string): boolean; fail(address: string): void };
  /** Called after a successful sign-in and after a wrong token, for logs and counters. */
  onSignIn?: (address: string) => void;
  onWrongToken?: (address: string) => void;
}

/** The caller's address, as the runtime adapter passes it. */
export function remoteAddress(c: Context): string {
  return (c.env as { remoteAddress?: string } | undefined)?.remoteAddress ?? "unknown";
}

/** True when the request carries an `Origin` equal to the one it was sent to. */
export function sameOrigin(c: Context): boolean {
  const origin = c.req.header("origin");
  if (origin === undefined) return false;
  const host = c.req.header("host");
  if (host === undefined) return false;
  const scheme = new URL(c.req.url).protocol;
  return origin === `${scheme}//${host}`;
}

/** True for a method that may change state. */
export function changesState(method: string): boolean {
  return method !== "GET" && method !== "HEAD" && method !== "OPTIONS";
}

/** Paths the console answers itself, before the API's authentication. */
export function isConsolePath(path: string): boolean {
  return path === "/" || path === "/ui" || path.startsWith("/ui/");
}

function secureHeaders(c: Context): void {
  c.header("Content-Security-Policy", CSP);
  c.header("X-Content-Type-Options", "nosniff");
  // Not `no-referrer`: with it a browser sends `Origin: null` on its own form posts.
  c.header("Referrer-Policy", "same-origin");
  c.header("X-Frame-Options", "DENY");
}

const escapeHtml = (s: string) =>
  s.replace(
    /[&<>"']/g,
    (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[ch]!,
  );

/** Where to go after signing in: a path under `/ui/` only (never another site). */
function safeNext(next: string | undefined): string {
  if (next === undefined || !/^\/ui\/[A-Za-z0-9/_.:%-]*$/.test(next) || next.includes("//")) return "/ui/";
  return next;
}

function page(title: string, body: string, script?: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/assets/style.css">
${script ? `<script type="module" src="/ui/assets/${script}"></script>\n` : ""}</head>
<body>
${body}
</body>
</html>
`;
}

function loginPage(title: string, next: string, error?: string): string {
  return page(
    `Sign in · ${title}`,
    `<main id="main" class="login">
<h1>${escapeHtml(title)}</h1>
<form method="post" action="/ui/login">
<input type="hidden" name="next" value="${escapeHtml(next)}">
<label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
${
      error
        ? `<p class="error" role="alert" id="login-error">${escapeHtml(error)}</p>\n`
        : ""
    }<button type="submit">Sign in</button>
</form>
</main>`,
  );
}

/** Mounts the console on `app`; call before the API's authentication middleware runs for `/ui/`. */
export function mountConsole(app: Hono, options: ConsoleOptions): void {
  const { sessions } = options;
  const signedIn = (c: Context) =>
    options.verify === undefined || sessions.valid(sessionFromCookie(c.req.header("cookie")));

  app.use("/ui/*", async (c, next) => {
    await next();
    secureHeaders(c);
  });

  app.get("/", (c) => {
    secureHeaders(c);
    return c.redirect("/ui/", 302);
  });
  app.get("/ui", (c) => c.redirect("/ui/", 302));

  app.get("/ui/assets/:name", (c) => {
    const asset = ASSETS[c.req.param("name")];
    if (asset === undefined) return c.text("Not found", 404);
    c.header("Cache-Control", "no-cache");
    return c.body(asset.body, 200, { "Content-Type": asset.type });
  });

  app.get("/ui/login", (c) => {
    if (options.verify === undefined) return c.redirect("/ui/", 302);
    return c.html(loginPage(options.title, safeNext(c.req.query("next"))));
  });

  app.post("/ui/login", async (c) => {
    if (options.verify === undefined) return c.redirect("/ui/", 303);
    const address = remoteAddress(c);
    // A sign-in from another site (login CSRF) is refused like any cross-origin change.
    if (c.req.header("origin") !== undefined && !sameOrigin(c)) {
      return c.html(loginPage(options.title, "/ui/", "This form was sent from another site."), 403);
    }
    if (options.limiter.blocked(address)) {
      c.header("Retry-After", "60");
      return c.html(
        loginPage(options.title, "/ui/", "Too many wrong tokens from this address; try again in a minute."),
        429,
      );
    }
    let token = "";
    let next = "/ui/";
    try {
      const form = await c.req.parseBody();
      token = typeof form.token === "string" ? form.token : "";
      next = safeNext(typeof form.next === "string" ? form.next : undefined);
    } catch { /* an unreadable form is a wrong token */ }
    if (token === "" || token.length > 1024 || !options.verify(token)) {
      options.limiter.fail(address);
      options.onWrongToken?.(address);
      return c.html(loginPage(options.title, next, "Wrong token."), 401);
    }
    const id = sessions.create();
    const secure = new URL(c.req.url).protocol === "https:";
    c.header("Set-Cookie", sessionCookie(id, Math.floor(sessions.ttlMs / 1000), secure));
    options.onSignIn?.(address);
    return c.redirect(next, 303);
  });

  app.post("/ui/logout", (c) => {
    if (!sameOrigin(c)) return c.json({ error: "Cross-origin request refused" }, 403);
    sessions.end(sessionFromCookie(c.req.header("cookie")));
    const secure = new URL(c.req.url).protocol === "https:";
    c.header("Set-Cookie", sessionCookie("", 0, secure));
    return c.redirect("/ui/login", 303);
  });

  // Every deep link loads the same shell; the client script draws the page for the path.
  app.get("/ui/*", (c) => {
    if (!signedIn(c)) return c.redirect(`/ui/login?next=${encodeURIComponent(c.req.path)}`, 302);
    c.header("Cache-Control", "no-store");
    const readOnly = options.verify === undefined ? ` data-read-only="true"` : "";
    return c.html(
      page(
        options.title,
        `<div id="app" data-app="${options.app}"${readOnly}><p class="loading">Loading…</p></div>`,
        `${options.app}.js`,
      ),
    );
  });
}
