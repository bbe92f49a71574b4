// The hub's fleet console: the edges (connected, last seen, version, reported outbox depth), the
// records of an edge and of a device, and on an edge's page: send a command, push rules, offer an
// update. Without an API token on the hub, the console is read-only and says so.
import { api, every, facts, fill, fmtAgo, h, json, startRouter, status, table } from "./lib.js";

const root = document.getElementById("app");

function edges(main) {
  const out = h("div", { id: "edges" });
  main.append(out);
  return every(3000, async () => {
    try {
      const r = await api("/api/v1/edges");
      fill(
        out,
        table(
          `${r.edges.length} edges, ${r.edges.filter((e) => e.connected).length} connected`,
          ["Edge", "Link", "Last seen", "Version", "Outbox depth", "Records"],
          r.edges.map((e) => [
            h("a", { href: `/ui/edges/${encodeURIComponent(e.id)}` }, e.id),
            h("span", { class: e.connected ? "ok" : "muted" }, e.connected ? "connected" : "disconnected"),
            fmtAgo(e.lastSeenAt),
            e.reports?.hello?.version ?? "—",
            e.reports?.outbox?.depth === undefined ? "—" : String(e.reports.outbox.depth),
            String(e.records),
          ]),
          { id: "edges-table" },
        ),
      );
    } catch (e) {
      fill(out, h("p", { class: "error" }, e.message));
    }
  });
}

function records(main, edge, device) {
  const filter = h("input", {
    id: "records-device",
    type: "search",
    value: device ?? "",
    placeholder: "device id",
  });
  const out = h("div", { id: "records" });
  main.append(
    h("p", { class: "row" }, h("label", { for: "records-device" }, "Device"), filter),
    out,
  );
  // Records arrive in order: read on from the last one seen, keep the newest 100.
  let after = 0, latest = [];
  const load = async () => {
    const q = new URLSearchParams({ edge, limit: "1000" });
    if (filter.value.trim()) q.set("device", filter.value.trim());
    try {
      for (let page = 0; page < 20; page++) {
        q.set("after", String(after));
        const r = await api(`/api/v1/records?${q}`);
        latest = latest.concat(r.records).slice(-100);
        if (r.records.length > 0) after = r.records[r.records.length - 1].seq;
        if (r.next === null) break;
      }
      fill(
        out,
        table(
          `The latest ${latest.length} records${filter.value ? ` of ${filter.value}` : ""}`,
          ["Seq", "Device", "Kind", "Time", "Payload"],
          latest.slice().reverse().map((
            x,
          ) => [
            String(x.seq),
            x.device,
            x.kind,
            new Date(x.ts).toISOString(),
            h("code", {}, json(x.payload, 300)),
          ]),
          { id: "records-table" },
        ),
      );
    } catch (e) {
      fill(out, h("p", { class: "error" }, e.message));
    }
  };
  filter.addEventListener("change", () => {
    after = 0;
    latest = [];
    load();
  });
  return every(5000, load);
}

function edge(main, [id], { readOnly }) {
  fill(main, h("h1", {}, `Edge ${id}`));
  const summary = h("div", { id: "edge-summary" });
  main.append(summary);
  const stops = [every(3000, async () => {
    try {
      const e = (await api("/api/v1/edges")).edges.find((x) => x.id === id);
      if (!e) return void fill(summary, h("p", { class: "error" }, "Unknown edge."));
      fill(
        summary,
        facts([
          [
            "Link",
            h(
              "span",
              { class: e.connected ? "ok" : "bad", id: "edge-link" },
              e.connected ? "connected" : "disconnected",
            ),
          ],
          ["Last seen", fmtAgo(e.lastSeenAt)],
          ["Version", e.reports?.hello?.version ?? "—"],
          [
            "Outbox depth (reported)",
            e.reports?.outbox?.depth === undefined ? "—" : String(e.reports.outbox.depth),
          ],
          ["Records", String(e.records)],
          ["Pending pushes", json(e.pending)],
        ]),
      );
    } catch (err) {
      fill(summary, h("p", { class: "error" }, err.message));
    }
  })];
  if (readOnly) {
    main.append(
      h(
        "p",
        { class: "muted" },
        "Read-only: set api.token in the hub's config to send commands, rules and updates.",
      ),
    );
  } else {
    main.append(commandForm(id), rulesForm(id), updateForm(id));
  }
  const rec = h("section", { "aria-labelledby": "edge-records" }, h("h2", { id: "edge-records" }, "Records"));
  main.append(rec);
  stops.push(records(rec, id));
  return () => stops.forEach((s) => s());
}

function commandForm(edge) {
  const device = h("input", { id: "hc-device", required: true, autocomplete: "off" });
  const method = h("input", { id: "hc-method", required: true, autocomplete: "off" });
  const params = h("textarea", { id: "hc-params", rows: 3 }, "{}");
  const out = h("output", { id: "hc-result", "aria-live": "polite" });
  const form = h(
    "form",
    {},
    h("label", { for: "hc-device" }, "Device"),
    device,
    h("label", { for: "hc-method" }, "Method"),
    method,
    h("label", { for: "hc-params" }, "Params (JSON)"),
    params,
    h("button", { type: "submit" }, "Send command"),
    out,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    let p;
    try {
      p = JSON.parse(params.value || "{}");
    } catch (err) {
      return void fill(out, h("span", { class: "error" }, `Params are not valid JSON: ${err.message}`));
    }
    fill(out, "Waiting for the result…");
    try {
      const r = await api(`/api/v1/edges/${encodeURIComponent(edge)}/commands`, {
        method: "POST",
        body: { device: device.value, method: method.value, params: p, timeoutMs: 10000 },
      });
      fill(
        out,
        h("span", { class: r.status === "ok" ? "ok" : "bad" }, r.status),
        " ",
        h("code", {}, JSON.stringify(r.payload)),
      );
    } catch (err) {
      fill(out, h("span", { class: "error" }, err.message));
    }
  });
  return h("section", { "aria-labelledby": "hc-h" }, h("h2", { id: "hc-h" }, "Send a command"), form);
}

function rulesForm(edge) {
  const doc = h("textarea", { id: "hr-doc", rows: 8, spellcheck: "false" });
  doc.value = JSON.stringify({ version: 1, rules: [] }, null, 2);
  const st = status();
  const form = h(
    "form",
    {},
    h("label", { for: "hr-doc" }, "Rules document (JSON)"),
    doc,
    h("button", { type: "submit" }, "Push rules"),
    st,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = await api(`/api/v1/edges/${encodeURIComponent(edge)}/rules`, {
        method: "PUT",
        body: JSON.parse(doc.value),
      });
      st.textContent = `Pushed version ${r.version}: ${r.status}.`;
    } catch (err) {
      st.textContent = `Not pushed: ${err.message}`;
    }
  });
  return h("section", { "aria-labelledby": "hr-h" }, h("h2", { id: "hr-h" }, "Push rules"), form);
}

function updateForm(edge) {
  const version = h("input", { id: "hu-version", required: true });
  const url = h("input", { id: "hu-url", type: "url", required: true });
  const sha = h("input", { id: "hu-sha", pattern: "[0-9a-f]{64}" });
  const st = status();
  const form = h(
    "form",
    {},
    h("label", { for: "hu-version" }, "Version"),
    version,
    h("label", { for: "hu-url" }, "Manifest or artifact URL"),
    url,
    h("label", { for: "hu-sha" }, "SHA-256 (optional)"),
    sha,
    h("button", { type: "submit" }, "Offer update"),
    st,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { version: version.value, url: url.value };
    if (sha.value) body.sha256 = sha.value;
    try {
      const r = await api(`/api/v1/edges/${encodeURIComponent(edge)}/update`, { method: "POST", body });
      st.textContent = `Offered ${r.version}: ${r.status}.`;
    } catch (err) {
      st.textContent = `Not offered: ${err.message}`;
    }
  });
  return h("section", { "aria-labelledby": "hu-h" }, h("h2", { id: "hu-h" }, "Offer an update"), form);
}

function recordsPage(main) {
  const edgeInput = h("input", { id: "rp-edge", placeholder: "edge id" });
  const holder = h("div");
  main.append(h("p", { class: "row" }, h("label", { for: "rp-edge" }, "Edge"), edgeInput), holder);
  let stop;
  edgeInput.addEventListener("change", () => {
    stop?.();
    fill(holder);
    if (edgeInput.value.trim()) stop = records(holder, edgeInput.value.trim());
  });
  return () => stop?.();
}

startRouter(
  root,
  [["/ui/", "Edges"], ["/ui/records", "Records"]],
  [
    [/^\/ui$/, "Edges", edges],
    [/^\/ui\/edges\/([^/]+)$/, "Edge", edge],
    [/^\/ui\/records$/, "Records", recordsPage],
  ],
  "outpost hub",
);
