// The agent's console: Overview, Devices (and one device), Live, Rules, Outbox, Commands,
// Update, Logs. One live event stream feeds every page; what a page shows over time (rates,
// device values, outbox depth) is kept here, bounded, while the console is open.
import {
  api,
  chart,
  every,
  facts,
  fill,
  fmtAgo,
  fmtBytes,
  fmtDuration,
  h,
  json,
  liveEvents,
  startRouter,
  status,
  table,
} from "./lib.js";
import { jsonPositions, validateSchema } from "./schema.js";

const root = document.getElementById("app");
// A fresh load replays what the server's ring holds, so charts start with the last minutes.
const live = liveEvents("?replay=1");
const WINDOW_MS = 5 * 60_000;

// --- what the console remembers while open (all bounded) -------------------------------------
const state = {
  /** [t, accepted/s, delivered/s] per outbox event (once a second). */
  rates: [],
  /** [t, depth] */
  depth: [],
  lastOutbox: undefined,
  hub: undefined,
  /** Recent message events, newest last (at most 500). */
  messages: [],
  /** device → field → [[t, v]…] (at most 100 devices, 16 fields, 300 points each). */
  series: new Map(),
  /** device → {transport, lastAt} learnt from message events. */
  seen: new Map(),
  logs: [],
  dropped: 0,
};

const trim = (arr, max) => {
  if (arr.length > max) arr.splice(0, arr.length - max);
};

live.on("outbox", (o) => {
  const t = o.at ?? Date.now();
  const prev = state.lastOutbox;
  if (prev && typeof o.accepted === "number") {
    const dt = Math.max(0.001, (t - prev.t) / 1000);
    state.rates.push([t, (o.accepted - prev.accepted) / dt, (o.delivered - prev.delivered) / dt]);
  }
  state.lastOutbox = { ...o, t };
  state.depth.push([t, o.depth]);
  trim(state.rates, 300);
  trim(state.depth, 300);
});
live.on("hub", (hub) => state.hub = hub);
live.on("dropped", (d) => state.dropped += d.count);
live.on("message", (m) => {
  state.messages.push(m);
  trim(state.messages, 500);
  if (!state.seen.has(m.device) && state.seen.size >= 1000) return;
  state.seen.set(m.device, { transport: m.source, lastAt: Date.now() });
  let fields = state.series.get(m.device);
  if (!fields) {
    if (state.series.size >= 100) return;
    state.series.set(m.device, fields = new Map());
  }
  for (const [k, v] of Object.entries(m.payload ?? {})) {
    if (typeof v !== "number") continue;
    let pts = fields.get(k);
    if (!pts) {
      if (fields.size >= 16) continue;
      fields.set(k, pts = []);
    }
    pts.push([m.ts, v]);
    trim(pts, 300);
  }
});
live.on("log", (l) => {
  state.logs.push(l);
  trim(state.logs, 500);
});

const recent = (points) => points.filter((p) => p[0] >= Date.now() - WINDOW_MS);

// --- pages -----------------------------------------------------------------------------------

function overview(main) {
  const info = h("section", { "aria-labelledby": "ov-agent" }, h("h2", { id: "ov-agent" }, "Agent"));
  const hub = h(
    "section",
    { "aria-labelledby": "ov-hub", id: "hub-link" },
    h("h2", { id: "ov-hub" }, "Hub link"),
  );
  const outbox = h(
    "section",
    { "aria-labelledby": "ov-outbox", id: "outbox-now" },
    h("h2", { id: "ov-outbox" }, "Outbox"),
  );
  const rates = chart("Messages per second in and out over the last minutes");
  const depth = chart("Outbox depth over the last minutes", { height: 100 });
  main.append(
    h("div", { class: "grid" }, info, hub, outbox),
    h("section", { "aria-labelledby": "ov-rates" }, h("h2", { id: "ov-rates" }, "Rates"), rates),
    h("section", { "aria-labelledby": "ov-depth" }, h("h2", { id: "ov-depth" }, "Outbox depth"), depth),
  );
  let s;
  let dead = 0;
  const drawHub = () => {
    const l = state.hub ?? s?.hub;
    if (!l) return;
    fill(
      hub,
      h("h2", { id: "ov-hub" }, "Hub link"),
      !l.configured ? h("p", {}, "No hub configured.") : h(
        "p",
        { class: l.connected ? "ok" : "bad", id: "hub-state" },
        l.connected ? "Up" : "Down",
        !l.connected && l.error ? `: ${l.error}` : "",
      ),
      facts([["Last acknowledgement", l.lastAckAt ? `${fmtAgo(l.lastAckAt)} (${l.lastAckAt})` : "never"]]),
    );
  };
  const drawOutbox = () => {
    const o = state.lastOutbox ?? s?.outbox;
    if (!o) return;
    fill(
      outbox,
      h("h2", { id: "ov-outbox" }, "Outbox"),
      facts([
        ["Depth", h("span", { id: "outbox-depth" }, String(o.depth))],
        ["Bytes", fmtBytes(o.bytes)],
        ["Oldest", o.oldestAgeSeconds == null ? "—" : fmtDuration(o.oldestAgeSeconds)],
        ["Dropped", String(o.dropped ?? 0)],
        ["Dead letters", String(dead)],
      ]),
    );
  };
  const drawInfo = () => {
    if (!s) return;
    fill(
      info,
      h("h2", { id: "ov-agent" }, "Agent"),
      facts([
        ["Edge", s.edgeId],
        ["Version", s.version],
        ["Uptime", fmtDuration(s.uptimeSeconds)],
        ["Accepted", String(s.ingest.accepted)],
        ["Rejected", String(s.ingest.rejected)],
        ["Rules", `${s.rules.count} (version ${s.rules.version ?? "none"})`],
        ["Update", s.update?.state ?? "—"],
      ]),
    );
  };
  const drawCharts = () => {
    const r = recent(state.rates);
    rates.update([
      { label: "in /s", points: r.map(([t, a]) => [t, a]) },
      { label: "to hub /s", points: r.map(([t, , d]) => [t, d]) },
    ]);
    depth.update([{ label: "depth", points: recent(state.depth) }]);
  };
  const offs = [
    live.on("hub", drawHub),
    live.on("outbox", () => {
      drawOutbox();
      drawCharts();
    }),
  ];
  const stop = every(5000, async () => {
    try {
      s = await api("/api/v1/status");
      dead = (await api("/api/v1/deadletters?limit=1")).total;
      if (!state.hub) drawHub();
      if (!state.lastOutbox) drawOutbox();
      drawInfo();
    } catch { /* the next round tries again */ }
  });
  drawCharts();
  return () => {
    stop();
    offs.forEach((off) => off());
  };
}

function devices(main) {
  const filter = h("input", { id: "device-filter", type: "search", placeholder: "id contains…" });
  const out = h("div", { id: "devices" });
  const st = status();
  main.append(
    h("p", { class: "row" }, h("label", { for: "device-filter" }, "Filter"), filter),
    st,
    out,
  );
  let list = [];
  const draw = () => {
    const q = filter.value.trim().toLowerCase();
    const rows = list.filter((d) => d.id.toLowerCase().includes(q)).map((d) => {
      const seen = state.seen.get(d.id);
      const last = d.lastActivityAt ?? d.lastSeenAt;
      const online = d.state ?? (last && Date.now() - Date.parse(last) < 10 * 60_000 ? "online" : "offline");
      return [
        h("a", { href: `/ui/devices/${encodeURIComponent(d.id)}` }, d.id),
        h("span", { class: online === "online" ? "ok" : "muted" }, online),
        d.transport ?? seen?.transport ?? "—",
        fmtAgo(last),
        h("code", {}, json(d.lastValues, 160)),
      ];
    });
    fill(
      out,
      table(`${rows.length} of ${list.length} devices`, [
        "Device",
        "State",
        "Transport",
        "Last activity",
        "Last values",
      ], rows),
    );
  };
  filter.addEventListener("input", draw);
  const refresh = async () => {
    try {
      list = (await api("/api/v1/devices?limit=1000")).devices;
      draw();
    } catch (e) {
      st.textContent = e.message;
    }
  };
  const stop = every(5000, refresh);
  // A device's first message shows at once (at most one extra refresh a second), not at the next round.
  let soon;
  const off = live.on("message", (m) => {
    if (soon || list.some((d) => d.id === m.device)) return;
    refresh();
    soon = setTimeout(() => soon = undefined, 1000);
  });
  // A device going online or offline (SPEC §10) shows at once.
  const offDevice = live.on("device", (c) => {
    const d = list.find((x) => x.id === c.device);
    if (!d) return;
    d.state = c.state;
    d.transport = c.transport;
    draw();
  });
  return () => {
    stop();
    off();
    offDevice();
  };
}

function device(main, [id]) {
  fill(main, h("h1", {}, `Device ${id}`));
  const values = h(
    "section",
    { "aria-labelledby": "dv-values" },
    h("h2", { id: "dv-values" }, "Latest values"),
  );
  const charts = h(
    "section",
    { "aria-labelledby": "dv-charts" },
    h("h2", { id: "dv-charts" }, "Numeric fields"),
  );
  const plot = chart(`Numeric fields of ${id} over the last minutes`);
  charts.append(plot);
  const method = h("input", { id: "cmd-method", required: true, value: "ping", autocomplete: "off" });
  const params = h("textarea", { id: "cmd-params", rows: 3 }, "{}");
  const timeout = h("input", { id: "cmd-timeout", type: "number", min: 1, value: 10000 });
  const result = h("output", { id: "cmd-result", for: "cmd-method cmd-params", "aria-live": "polite" });
  const form = h(
    "form",
    { id: "cmd-form" },
    h("label", { for: "cmd-method" }, "Method"),
    method,
    h("label", { for: "cmd-params" }, "Params (JSON)"),
    params,
    h("label", { for: "cmd-timeout" }, "Timeout (ms)"),
    timeout,
    h("button", { type: "submit" }, "Send command"),
    result,
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    sendCommand(id, method.value, params.value, Number(timeout.value), result);
  });
  main.append(
    values,
    charts,
    h("section", { "aria-labelledby": "dv-cmd" }, h("h2", { id: "dv-cmd" }, "Send a command"), form),
  );
  let current;
  const drawValues = () =>
    fill(
      values,
      h("h2", { id: "dv-values" }, "Latest values"),
      current
        ? [
          facts([
            ["Last activity", fmtAgo(current.lastActivityAt ?? current.lastSeenAt)],
            ["Messages", String(current.messages ?? "—")],
          ]),
          h("pre", { id: "device-values" }, json(current.lastValues)),
        ]
        : h("p", {}, "This device has not been seen."),
    );
  const drawChart = () => {
    const fields = state.series.get(id) ?? new Map();
    plot.update([...fields].map(([k, pts]) => ({ label: k, points: recent(pts) })));
  };
  const refresh = async () => {
    try {
      const all = (await api("/api/v1/devices?limit=10000")).devices;
      current = all.find((d) => d.id === id);
      drawValues();
    } catch { /* next round */ }
  };
  const stop = every(10_000, refresh);
  // Between refreshes, the device's messages update the page (redrawn at most 4 times a second).
  let pending = false;
  const off = live.on("message", (m) => {
    if (m.device !== id) return;
    current = {
      ...current,
      id,
      lastSeenAt: new Date().toISOString(),
      messages: (current?.messages ?? 0) + 1,
      lastValues: { ...current?.lastValues, ...m.payload },
    };
    if (pending) return;
    pending = true;
    setTimeout(() => {
      pending = false;
      drawValues();
      drawChart();
    }, 250);
  });
  drawChart();
  return () => {
    stop();
    off();
  };
}

async function sendCommand(device, method, paramsText, timeoutMs, out) {
  let params;
  try {
    params = JSON.parse(paramsText || "{}");
  } catch (e) {
    fill(out, h("span", { class: "error" }, `Params are not valid JSON: ${e.message}`));
    return;
  }
  fill(out, "Sending…");
  try {
    const sent = await api(`/api/v1/devices/${encodeURIComponent(device)}/commands`, {
      method: "POST",
      body: { method, params, timeoutMs },
    });
    fill(out, `Waiting for ${device} to answer (${sent.id})…`);
    for (;;) {
      const c = await api(`/api/v1/commands/${encodeURIComponent(sent.id)}`);
      if (c.state === "done") {
        fill(
          out,
          h("span", { class: c.status === "ok" ? "ok" : "bad", id: "cmd-status" }, c.status),
          " ",
          h("code", { id: "cmd-payload" }, JSON.stringify(c.payload ?? c.result ?? null)),
        );
        return;
      }
      await new Promise((r) => setTimeout(r, 300));
    }
  } catch (e) {
    fill(out, h("span", { class: "error" }, e.message));
  }
}

function livePage(main) {
  const device = h("input", { id: "live-device", type: "search", placeholder: "glob, e.g. pump-*" });
  const kind = h(
    "select",
    { id: "live-kind" },
    ["", "telemetry", "attributes", "event", "alarm"].map((k) => h("option", { value: k }, k || "all kinds")),
  );
  const pause = h("button", { type: "button", "aria-pressed": "false", id: "live-pause" }, "Pause");
  const list = h("ol", { id: "live-list", class: "stream", "aria-live": "off" });
  const note = status();
  main.append(
    h(
      "p",
      { class: "row" },
      h("label", { for: "live-device" }, "Device"),
      device,
      h("label", { for: "live-kind" }, "Kind"),
      kind,
      pause,
    ),
    note,
    list,
  );
  let paused = false;
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
  });
  const glob = (g) =>
    new RegExp(`^${g.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`);
  const shows = (m) => {
    const d = device.value.trim();
    return (!d || glob(d).test(m.device)) && (!kind.value || m.kind === kind.value);
  };
  const item = (m) =>
    h(
      "li",
      {},
      h("time", {}, new Date(m.ts).toLocaleTimeString()),
      " ",
      h("strong", {}, m.device),
      " ",
      h("span", { class: "muted" }, m.kind),
      " ",
      h("code", {}, JSON.stringify(m.payload)),
    );
  const redraw = () => fill(list, state.messages.filter(shows).slice(-200).reverse().map(item));
  device.addEventListener("input", redraw);
  kind.addEventListener("change", redraw);
  redraw();
  const offs = [
    live.on("message", (m) => {
      if (paused || !shows(m)) return;
      list.prepend(item(m));
      while (list.children.length > 200) list.lastChild.remove();
    }),
    live.on(
      "dropped",
      (d) => note.textContent = `${d.count} events were dropped because the page fell behind.`,
    ),
  ];
  return () => offs.forEach((off) => off());
}

function rules(main, _params, { readOnly }) {
  const editor = h("textarea", {
    id: "rules-doc",
    rows: 18,
    spellcheck: "false",
    "aria-describedby": "rules-errors",
    "aria-label": "Rules document (JSON)",
  });
  const errors = h("ul", { id: "rules-errors", class: "errors", "aria-live": "polite" });
  const sample = h("textarea", { id: "rules-sample", rows: 5, spellcheck: "false" });
  sample.value = JSON.stringify(
    { device: "boiler-1", kind: "telemetry", payload: { temperature: 95 } },
    null,
    2,
  );
  const result = h("div", { id: "rules-result", "aria-live": "polite" });
  const info = status();
  const testBtn = h("button", { type: "button", id: "rules-test" }, "Dry run");
  const applyBtn = h("button", { type: "button", id: "rules-apply", disabled: readOnly }, "Apply");
  main.append(
    info,
    h("label", { for: "rules-doc" }, "Rules document (JSON, checked against the rules schema as you type)"),
    editor,
    errors,
    h("p", { class: "row" }, applyBtn),
    h(
      "section",
      { "aria-labelledby": "rules-dry" },
      h("h2", { id: "rules-dry" }, "Dry run"),
      h("label", { for: "rules-sample" }, "Sample message"),
      sample,
      h("p", { class: "row" }, testBtn),
      result,
    ),
  );
  let schema;
  const showErrors = (list) => {
    let positions;
    try {
      positions = jsonPositions(editor.value);
    } catch { /* positions are a help, not a need */ }
    fill(
      errors,
      list.map((e) => {
        const at = positions?.get(e.path);
        return h(
          "li",
          { "data-path": e.path },
          at === undefined ? h("code", {}, e.path || "/") : h("button", {
            type: "button",
            class: "link",
            onclick: () => {
              editor.focus();
              editor.setSelectionRange(at, at + 1);
            },
          }, h("code", {}, e.path || "/")),
          `: ${e.message}`,
        );
      }),
    );
    applyBtn.disabled = readOnly || list.length > 0;
  };
  const check = () => {
    let doc;
    try {
      jsonPositions(editor.value);
      doc = JSON.parse(editor.value);
    } catch (e) {
      showErrors([{ path: "", message: `Not valid JSON: ${e.message}` }]);
      return undefined;
    }
    showErrors(schema ? validateSchema(schema, doc) : []);
    return doc;
  };
  let timer;
  editor.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(check, 150);
  });
  testBtn.addEventListener("click", async () => {
    const doc = check();
    let message;
    try {
      message = JSON.parse(sample.value);
    } catch (e) {
      fill(result, h("p", { class: "error" }, `The sample is not valid JSON: ${e.message}`));
      return;
    }
    try {
      const r = await api("/api/v1/rules/test", {
        method: "POST",
        body: doc === undefined ? { message } : { rules: doc, message },
      });
      fill(
        result,
        h("h3", {}, "Outputs"),
        h("pre", { id: "dry-outputs" }, json(r.outputs, 4000)),
        h("h3", {}, "Trace"),
        table(
          "One row per rule",
          ["Rule", "Matched", "Details"],
          r.trace.map((
            t,
          ) => [
            t.rule ?? "—",
            t.matched ? "yes" : "no",
            h(
              "code",
              {},
              json(
                Object.fromEntries(Object.entries(t).filter(([k]) => k !== "rule" && k !== "matched")),
                400,
              ),
            ),
          ]),
          { id: "dry-trace" },
        ),
      );
    } catch (e) {
      if (e.body?.errors) {
        showErrors(e.body.errors.map((x) => ({ ...x, path: x.path.replace(/^\/rules(?=\/|$)/, "") })));
      }
      fill(result, h("p", { class: "error" }, e.message));
    }
  });
  applyBtn.addEventListener("click", async () => {
    const doc = check();
    if (doc === undefined || errors.children.length > 0) return;
    try {
      const r = await api("/api/v1/rules", { method: "PUT", body: doc });
      info.textContent = `Applied: version ${r.version}, ${r.count} rules.`;
    } catch (e) {
      if (e.body?.errors) showErrors(e.body.errors);
      info.textContent = `Not applied: ${e.message}`;
    }
  });
  (async () => {
    try {
      schema = await api("/api/v1/rules/schema");
      const current = await api("/api/v1/rules");
      info.textContent = `In force: version ${current.version ?? "none"}, ${current.count} rules.`;
      editor.value = JSON.stringify(current.document ?? { version: 1, rules: [] }, null, 2);
      check();
    } catch (e) {
      info.textContent = e.message;
    }
  })();
}

function outboxPage(main) {
  const depth = chart("Outbox depth over the last minutes", { height: 100 });
  const records = h("div", { id: "outbox-records" });
  const dead = h("div", { id: "deadletters" });
  main.append(
    h("section", { "aria-labelledby": "ob-depth" }, h("h2", { id: "ob-depth" }, "Depth"), depth),
    h("section", { "aria-labelledby": "ob-old" }, h("h2", { id: "ob-old" }, "Oldest records"), records),
    h("section", { "aria-labelledby": "ob-dead" }, h("h2", { id: "ob-dead" }, "Dead letters"), dead),
  );
  const draw = () => depth.update([{ label: "depth", points: recent(state.depth) }]);
  const off = live.on("outbox", draw);
  draw();
  const stop = every(3000, async () => {
    try {
      const o = await api("/api/v1/outbox?limit=20");
      fill(
        records,
        table(
          `${o.depth} records waiting; the oldest ${o.records.length}`,
          ["Seq", "Device", "Kind", "Created", "Payload"],
          o.records.map((
            r,
          ) => [String(r.seq), r.device, r.kind, r.createdAt, h("code", {}, json(r.payload, 200))]),
        ),
      );
      const d = (await api("/api/v1/deadletters?limit=50")).deadletters;
      fill(
        dead,
        table(
          `${d.length} most recent dead letters`,
          ["Time", "Device", "Reason", "Message"],
          d.slice().reverse().map((x) => [x.time, x.device ?? "—", x.reason, x.message]),
        ),
      );
    } catch { /* next round */ }
  });
  return () => {
    stop();
    off();
  };
}

function commandsPage(main) {
  const out = h("div", { id: "commands" });
  main.append(
    h("p", {}, "Commands from the hub and from this console, newest first. Send one from a device's page."),
    out,
  );
  return every(3000, async () => {
    try {
      const r = await api("/api/v1/commands?limit=100");
      fill(
        out,
        table(
          `${r.commands.length} commands (${r.pending} waiting, ${r.delivered} delivered)`,
          ["Device", "Method", "Status", "Received", "Answer"],
          r.commands.map((c) => [
            h("a", { href: `/ui/devices/${encodeURIComponent(c.device)}` }, c.device),
            c.method,
            c.status,
            c.receivedAt ?? "—",
            h("code", {}, json(c.payload ?? null, 200)),
          ]),
        ),
      );
    } catch (e) {
      fill(out, h("p", { class: "error" }, e.message));
    }
  });
}

function updatePage(main, _p, { readOnly }) {
  const view = h("div", { id: "update-state" });
  const bar = h("progress", { id: "update-progress", max: 1, value: 0, "aria-label": "Download progress" });
  const url = h("input", { id: "update-url", type: "url", placeholder: "default: update.manifestUrl" });
  const st = status();
  const btn = h("button", { type: "submit", disabled: readOnly }, "Check and apply");
  const form = h(
    "form",
    {},
    h("label", { for: "update-url" }, "Manifest URL"),
    url,
    btn,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("/api/v1/update", { method: "POST", body: url.value ? { manifestUrl: url.value } : {} });
      st.textContent = "Update started.";
    } catch (err) {
      st.textContent = `Not started: ${err.message}`;
    }
  });
  main.append(view, bar, form, st);
  const draw = (u) => {
    fill(
      view,
      facts([
        ["Running", u.current],
        ["State", u.state],
        ["Version", u.version ?? "—"],
        ["Reason", u.reason ?? u.message ?? "—"],
        ["Since", u.at],
      ]),
    );
    bar.max = u.progress?.total || 1;
    bar.value = u.progress?.bytes ?? 0;
  };
  const off = live.on("update", draw);
  const stop = every(5000, async () => {
    try {
      draw(await api("/api/v1/update"));
    } catch { /* next round */ }
  });
  return () => {
    stop();
    off();
  };
}

function logsPage(main) {
  const list = h("ol", { id: "log-list", class: "stream" });
  main.append(h("p", {}, "Recent warnings and errors, newest first."), list);
  const item = (l) =>
    h(
      "li",
      { class: l.level },
      h("time", {}, l.ts),
      " ",
      h("strong", {}, l.level),
      " ",
      l.event,
      " ",
      h(
        "code",
        {},
        JSON.stringify(
          Object.fromEntries(Object.entries(l).filter(([k]) => !["ts", "level", "event"].includes(k))),
        ),
      ),
    );
  (async () => {
    try {
      // The on-disk log ring (the lines `outpost logs` and the hub read), warn and error only.
      const r = await api("/api/v1/logs?level=warn&lines=200");
      fill(list, r.lines.slice().reverse().map(item));
    } catch (e) {
      fill(list, h("li", { class: "error" }, e.message));
    }
  })();
  return live.on("log", (l) => {
    list.prepend(item(l));
    while (list.children.length > 500) list.lastChild.remove();
  });
}

startRouter(
  root,
  [
    ["/ui/", "Overview"],
    ["/ui/devices", "Devices"],
    ["/ui/live", "Live"],
    ["/ui/rules", "Rules"],
    ["/ui/outbox", "Outbox"],
    ["/ui/commands", "Commands"],
    ["/ui/update", "Update"],
    ["/ui/logs", "Logs"],
  ],
  [
    [/^\/ui$/, "Overview", overview],
    [/^\/ui\/devices$/, "Devices", devices],
    [/^\/ui\/devices\/([^/]+)$/, "Device", device],
    [/^\/ui\/live$/, "Live", livePage],
    [/^\/ui\/rules$/, "Rules", rules],
    [/^\/ui\/outbox$/, "Outbox", outboxPage],
    [/^\/ui\/commands$/, "Commands", commandsPage],
    [/^\/ui\/update$/, "Update", updatePage],
    [/^\/ui\/logs$/, "Logs", logsPage],
  ],
  "outpost",
);
