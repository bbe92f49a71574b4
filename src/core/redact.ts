/**
 * URLs as they may be shown: in logs, status answers and reports to the hub (SPEC §14). Update
 * manifests and artifacts, brokers and hubs may be addressed with credentials in the URL or with
 * presigned query strings; both are secrets. The credentials and the query are masked, the rest
 * (scheme, host, port, path) stays, so an operator still sees where it points.
 */

const MASK = "***";

/** `url` with userinfo and query masked (`https://***@host/path?***`); unparsable text is masked whole. */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return MASK;
  }
  const user = u.username || u.password ? `${MASK}@` : "";
  const query = u.search ? `?${MASK}` : "";
  const path = u.pathname === "/" && !/^[a-z][a-z0-9+.-]*:\/\/[^/]*\/$/i.test(url.split(/[?#]/)[0])
    ? ""
    : u.pathname;
  return `${u.protocol}//${user}${u.host}${path}${query}`;
}

const URL_IN_TEXT = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>`]+/gi;

/** Every URL in a text (an error message, a reason) redacted as `redactUrl` does. */
export function redactUrlsIn(text: string): string {
  return text.replace(URL_IN_TEXT, (m) => {
    // Trailing punctuation belongs to the sentence, not the URL.
    const tail = /[.,;:)\]]+$/.exec(m)?.[0] ?? "";
    return redactUrl(m.slice(0, m.length - tail.length)) + tail;
  });
}

/** Any logging method, whatever event names it takes. */
type LogFn = (event: never, fields?: Record<string, unknown>) => void;

/** A logger whose string fields have their URLs redacted (for parts that handle secret URLs). */
export function redactingLogger<L extends Record<"debug" | "info" | "warn" | "error", LogFn>>(log: L): L {
  const wrap = <F extends LogFn>(fn: F): F =>
    ((event: never, fields?: Record<string, unknown>) => fn(event, fields && redactFields(fields))) as F;
  return {
    ...log,
    debug: wrap(log.debug.bind(log)),
    info: wrap(log.info.bind(log)),
    warn: wrap(log.warn.bind(log)),
    error: wrap(log.error.bind(log)),
  };
}

function redactFields(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) out[k] = typeof v === "string" ? redactUrlsIn(v) : v;
  return out;
}

const SECRET_KEY = /secret|token|password|passphrase|privateKey/i;
const URL_KEY = /url$/i;

/**
 * A JSON value (a config, a request) as it may be shown or stored for showing: every value
 * under a key that names a secret (`secret`, `token`, `password`, …) is `"***"`, and URLs under
 * `…url` keys lose their credentials and query (`redactUrl`).
 */
export function maskSecrets(value: unknown, key = ""): unknown {
  // Whatever a secret's key holds (a string, or a number or object by mistake) is not shown.
  if (value !== null && value !== undefined && SECRET_KEY.test(key)) return MASK;
  if (Array.isArray(value)) return value.map((v) => maskSecrets(v, key));
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = maskSecrets(v, k);
    return out;
  }
  if (typeof value === "string" && URL_KEY.test(key)) return redactUrl(value);
  return value;
}

/** True when a JSON Pointer ends at a key that names a secret (its value must not be quoted). */
export function isSecretPath(path: string): boolean {
  const last = path.split("/").pop() ?? "";
  return SECRET_KEY.test(last) || URL_KEY.test(last);
}
