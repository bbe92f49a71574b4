/**
 * Summarises a `.cpuprofile` (Chrome format: `bun --cpu-prof`, `deno --cpu-prof`, `node
 * --cpu-prof`) into what the performance notes need: where the samples sit by self time, and
 * inclusive time per function (each function counted once per sample), optionally only for
 * functions whose location contains a filter. Shares are of samples, not of time deltas: a
 * sampler that stops while the thread sleeps gives the first sample after a sleep the whole gap.
 *
 *   deno run -A scripts/bench/profile_summary.ts FILE.cpuprofile [--top 40] [--filter src/] [--owners]
 *     [--after FUNCTION]
 *
 * `--owners` adds a third view: each sample charged to the innermost frame that names an owner,
 * a file under src/ or a package under node_modules/ (native frames and libsql's JS wrapper are
 * charged to whoever called them), so that "the outbox" includes the SQLite time it causes.
 *
 * `--after` counts only the samples from the first one with FUNCTION on its stack on (e.g.
 * `--after onHubFrame`: the agent's samples from the hub's first answer, leaving out a backlog's
 * fill).
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    top: { type: "string", default: "40" },
    filter: { type: "string" },
    owners: { type: "boolean" },
    after: { type: "string" },
  },
});
const profile = JSON.parse(readFileSync(positionals[0], "utf8")) as {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
};
const top = Number(values.top);
const byId = new Map<number, Node>();
const parent = new Map<number, number>();
for (const n of profile.nodes) byId.set(n.id, n);
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const name = (n: Node) => {
  const url = n.callFrame.url.replace(/^.*\/work\/main\//, "").replace(/^file:\/\//, "");
  return `${n.callFrame.functionName || "(anonymous)"} ${url ? `${url}:${n.callFrame.lineNumber + 1}` : ""}`
    .trim();
};
/** The owner a frame names: `src/<dir>/<file>`, or the package under node_modules. */
function owner(n: Node): string | undefined {
  const url = n.callFrame.url;
  const src = /\/src\/(.+\.ts)$/.exec(url);
  if (src) return `src/${src[1]}`;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg && pkg[1] !== "libsql") return pkg[1];
  return undefined;
}
const owners = new Map<string, number>();
const self = new Map<string, number>();
const incl = new Map<string, number>();
let total = 0;
let idle = 0;
let first = 0;
if (values.after) {
  const onStack = (leaf: number) => {
    for (let id: number | undefined = leaf; id !== undefined; id = parent.get(id)) {
      if (byId.get(id)!.callFrame.functionName === values.after) return true;
    }
    return false;
  };
  first = profile.samples.findIndex(onStack);
  if (first < 0) throw new Error(`No sample has ${values.after} on its stack`);
}
for (let i = first; i < profile.samples.length; i++) {
  const dt = 1;
  const leaf = byId.get(profile.samples[i])!;
  const leafName = name(leaf);
  total += dt;
  if (/\((idle|program|garbage collector)\)/.test(leafName)) {
    if (leafName.includes("idle")) idle += dt;
  }
  self.set(leafName, (self.get(leafName) ?? 0) + dt);
  let who = "runtime (no JS owner: event loop, GC, native)";
  for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
    const o = owner(byId.get(id)!);
    if (o) {
      who = o;
      break;
    }
  }
  owners.set(who, (owners.get(who) ?? 0) + dt);
  const seen = new Set<string>();
  for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
    const nm = name(byId.get(id)!);
    if (seen.has(nm)) continue;
    seen.add(nm);
    incl.set(nm, (incl.get(nm) ?? 0) + dt);
  }
}
const pct = (x: number) => `${(100 * x / total).toFixed(1).padStart(5)}%`;
console.log(
  `${total} samples${values.after ? ` from the first with ${values.after} on its stack` : ""}, idle ${
    pct(idle)
  }`,
);
console.log(`\nself time, top ${top}:`);
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(v)}  ${k}`);
console.log(`\ninclusive time${values.filter ? ` (${values.filter})` : ""}, top ${top}:`);
for (
  const [k, v] of [...incl].filter(([k]) => !values.filter || k.includes(values.filter)).sort((a, b) =>
    b[1] - a[1]
  ).slice(0, top)
) console.log(`${pct(v)}  ${k}`);
if (values.owners) {
  console.log(`\nby owner (innermost src/ file or package on the stack), top ${top}:`);
  for (const [k, v] of [...owners].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(v)}  ${k}`);
}
