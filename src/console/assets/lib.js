// The console's small toolkit, shared by the agent's and the hub's pages: DOM building (text
// only, never HTML from data), JSON calls to the API with the session cookie, a client-side
// router over /ui/ deep links, an SVG time-series chart, and formatting.

/** Builds an element: h("p", {class: "x", onclick: fn}, "text", child…). Strings become text. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** An API error with the response's status and its `errors` (path + message) when present. */
export class ApiError extends Error {
  constructor(status, body) {
    super(
      body?.error ?? body?.errors?.map((e) => `${e.path || "/"}: ${e.message}`).join("; ") ??
        `HTTP ${status}`,
    );
    this.status = status;
    this.body = body;
  }
}

/** Calls the API (same origin, the session cookie); JSON in and out. 401 goes to the sign-in page. */
export async function api(path, options = {}) {
  const init = { method: options.method ?? "GET", headers: {}, credentials: "same-origin" };
  if (options.body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = typeof options.body === "string" ? options.body : JSON.stringify(options.body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) {
    location.assign(`/ui/login?next=${encodeURIComponent(location.pathname)}`);
    throw new ApiError(401, { error: "Signed out" });
  }
  const text = await res.text();
  let body;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = { error: text.slice(0, 200) };
  }
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

/** The pages: [pattern, title, render(main, params)]; links under /ui/ are followed without a reload. */
export function startRouter(root, nav, pages, brand) {
  const readOnly = root.dataset.readOnly === "true";
  const main = h("main", { id: "main", tabindex: "-1" });
  const links = nav.map(([href, label]) => h("a", { href }, label));
  const header = h(
    "header",
    {},
    h("a", { class: "skip", href: "#main" }, "Skip to content"),
    h("span", { class: "brand" }, brand),
    h("nav", { "aria-label": "Console" }, links),
    readOnly ? h("span", { class: "badge warn" }, "read-only: no API token set") : h(
      "form",
      { method: "post", action: "/ui/logout", class: "logout" },
      h("button", { type: "submit", class: "link" }, "Sign out"),
    ),
  );
  fill(root, header, main);
  let cleanup;

  function render() {
    const path = location.pathname.replace(/\/+$/, "") || "/ui";
    for (const [pattern, title, draw] of pages) {
      const m = pattern.exec(path);
      if (!m) continue;
      if (typeof cleanup === "function") cleanup();
      cleanup = undefined;
      document.title = `${title} · ${brand}`;
      for (const a of links) {
        const here = a.getAttribute("href");
        const on = here === "/ui/" ? path === "/ui" : path.startsWith(here.replace(/\/$/, ""));
        if (on) a.setAttribute("aria-current", "page");
        else a.removeAttribute("aria-current");
      }
      fill(main, h("h1", {}, title));
      try {
        cleanup = draw(main, m.slice(1).map(decodeURIComponent), { readOnly });
      } catch (error) {
        main.append(h("p", { class: "error", role: "alert" }, String(error.message ?? error)));
      }
      return;
    }
    fill(main, h("h1", {}, "Not found"), h("p", {}, "No page at ", path, "."));
  }

  document.addEventListener("click", (event) => {
    const a = event.target.closest?.("a[href^='/ui/']");
    if (!a || event.ctrlKey || event.metaKey || event.shiftKey || a.target) return;
    event.preventDefault();
    go(a.getAttribute("href"));
  });
  addEventListener("popstate", render);
  render();
  return { go };

  function go(href) {
    history.pushState(null, "", href);
    render();
    main.focus({ preventScroll: true });
  }
}

/** One shared EventSource: subscribers by event name; reconnects (with Last-Event-ID) by itself. */
export function liveEvents(query = "") {
  const source = new EventSource(`/api/v1/events${query}`);
  const subs = new Map();
  const names = ["message", "device", "hub", "alarm", "rules", "update", "outbox", "log", "dropped"];
  for (const name of names) {
    source.addEventListener(name, (e) => {
      let data;
      try {
        data = JSON.parse(e.data);
      } catch {
        return;
      }
      for (const fn of subs.get(name) ?? []) fn(data);
    });
  }
  return {
    source,
    /** Subscribes; returns the unsubscribe function. */
    on(name, fn) {
      if (!subs.has(name)) subs.set(name, new Set());
      subs.get(name).add(fn);
      return () => subs.get(name).delete(fn);
    },
  };
}

/**
 * A small SVG line chart of time series: `update(series)` with series = [{label, points: [[t, v]…]}].
 * The data is also given as a text summary for screen readers.
 */
export function chart(label, options = {}) {
  const W = 600, H = options.height ?? 140, P = 28;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  svg.setAttribute("class", "chart");
  const summary = h("p", { class: "sr-only", "aria-live": "off" });
  const legend = h("p", { class: "legend" });
  const wrap = h("figure", { class: "chart-wrap" }, svg, legend, summary);
  wrap.update = (series) => {
    svg.replaceChildren();
    const all = series.flatMap((s) => s.points);
    if (all.length === 0) {
      const t = document.createElementNS(ns, "text");
      t.setAttribute("x", W / 2);
      t.setAttribute("y", H / 2);
      t.setAttribute("text-anchor", "middle");
      t.textContent = "No data yet";
      svg.append(t);
      legend.textContent = "";
      return;
    }
    const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]), t0 + 1);
    const v0 = Math.min(0, ...all.map((p) => p[1]));
    let v1 = Math.max(...all.map((p) => p[1]));
    if (v1 === v0) v1 = v0 + 1;
    const x = (t) => P + (t - t0) / (t1 - t0) * (W - P - 4);
    const y = (v) => H - 16 - (v - v0) / (v1 - v0) * (H - 24);
    for (const [v, yy] of [[v1, y(v1)], [v0, y(v0)]]) {
      const t = document.createElementNS(ns, "text");
      t.setAttribute("x", 2);
      t.setAttribute("y", yy + 4);
      t.setAttribute("class", "axis");
      t.textContent = fmtNum(v);
      svg.append(t);
    }
    series.forEach((s, i) => {
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute(
        "points",
        s.points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" "),
      );
      line.setAttribute("class", `series s${i % 4}`);
      svg.append(line);
    });
    fill(
      legend,
      series.map((s, i) => h("span", { class: `key s${i % 4}` }, s.label)),
    );
    summary.textContent = series.map((s) => `${s.label}: latest ${fmtNum(s.points.at(-1)?.[1])}`).join("; ");
  };
  wrap.update([]);
  return wrap;
}

export function fmtNum(v) {
  if (typeof v !== "number" || !Number.isFinite(v)) return String(v ?? "—");
  return Math.abs(v) >= 100 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(2);
}

export function fmtBytes(n) {
  if (typeof n !== "number") return "—";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function fmtAgo(iso) {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

export function fmtDuration(seconds) {
  if (typeof seconds !== "number") return "—";
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor(seconds % 3600 / 60)} min`;
}

/** A labelled definition list from [[term, value]…]. */
export function facts(pairs, attrs = {}) {
  return h("dl", { class: "facts", ...attrs }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

/** A table with a caption, headers and rows of cells (strings or nodes). */
export function table(caption, headers, rows, attrs = {}) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      attrs,
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((cell) => h("td", {}, cell))))),
    ),
  );
}

/** A status line announced to screen readers. */
export function status() {
  return h("p", { class: "status", role: "status", "aria-live": "polite" });
}

/** Runs `fn` now and every `ms`; returns the stop function. */
export function every(ms, fn) {
  fn();
  const t = setInterval(fn, ms);
  return () => clearInterval(t);
}

/** Pretty JSON, cut for display. */
export function json(v, max = 2000) {
  const s = JSON.stringify(v, null, 2) ?? "undefined";
  return s.length > max ? s.slice(0, max) + "…" : s;
}
