/**
 * The import rules of `src/` and `tests/`, checked by `npm run check`:
 * 1. no import cycle between files of `src/`;
 * 2. no import cycle between the folders of `src/` (a folder is a unit: what it takes from a
 *    sibling, the sibling must not take back);
 * 3. a folder that has a `mod.ts` is entered only through it from outside the folder (its other
 *    files are its own business); `src/main.ts` and tests may reach inside, to test a part alone;
 * 4. a `_name.ts` file is private to its folder, for tests as well as for code;
 * 5. `Deno`, `Bun` and `process.execPath` are used only in `src/runtime/` (the one runtime door);
 * 6. test files are named `*.test.ts` (one suffix, so `deno test` and people find them alike).
 *
 * Usage: `deno run -A scripts/check_imports.ts [root]`; exit 0, or 1 with one line per finding.
 * Imports are read with a regular expression over `import`/`export … from` statements and
 * dynamic `import("…")` with a literal: enough for this code base, which has no computed imports
 * of its own files.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";

const root = resolve(Deno.args[0] ?? join(dirname(new URL(import.meta.url).pathname), ".."));
const findings: string[] = [];

function walk(dir: string, out: string[] = []): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of names) {
    if (name === "node_modules" || name.startsWith(".")) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path, out);
    else if (/\.(ts|tsx)$/.test(name)) out.push(path);
  }
  return out;
}

const rel = (p: string) => relative(root, p).split(sep).join("/");

const IMPORT = /(?:^|[\s;])(?:import|export)\s+(?:type\s+)?(?:[^'";]*?\sfrom\s+)?["']([^"']+)["']/g;
const DYNAMIC = /\bimport\(\s*["']([^"']+)["']\s*\)/g;

/** Relative specifiers of a file, resolved to repo paths. Comments are blanked first. */
function importsOf(file: string): { target: string; line: number }[] {
  const text = readFileSync(file, "utf8").replace(
    /\/\*[\s\S]*?\*\/|(^|[^:"'`\\])\/\/.*$/gm,
    (m, pre) => (pre ?? "") + m.slice((pre ?? "").length).replace(/[^\n]/g, " "),
  );
  const out: { target: string; line: number }[] = [];
  for (const re of [IMPORT, DYNAMIC]) {
    re.lastIndex = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      const spec = m[1];
      if (!spec.startsWith(".")) continue;
      const line = text.slice(0, m.index).split("\n").length;
      out.push({ target: rel(resolve(dirname(file), spec)), line });
    }
  }
  return out;
}

const srcFiles = walk(join(root, "src")).map(rel);
const testFiles = walk(join(root, "tests")).map(rel);
const scriptFiles = walk(join(root, "scripts")).map(rel);
const known = new Set([...srcFiles, ...testFiles, ...scriptFiles]);

/** The folder of a `src/` file, as `src/a/b`. */
const folderOf = (file: string) => file.slice(0, file.lastIndexOf("/"));
/** The top-level unit of a `src/` file: `src/<folder>` (or the file itself at the top). */
const unitOf = (file: string) => {
  const parts = file.split("/");
  return parts.length > 2 ? `${parts[0]}/${parts[1]}` : file;
};
const hasMod = new Set(srcFiles.filter((f) => f.endsWith("/mod.ts")).map(folderOf));

const graph = new Map<string, string[]>();
const unitGraph = new Map<string, Map<string, string>>();

for (const file of [...srcFiles, ...testFiles, ...scriptFiles]) {
  const inSrc = file.startsWith("src/");
  const edges: string[] = [];
  for (const { target, line } of importsOf(join(root, file))) {
    const where = `${file}:${line}`;
    if (!known.has(target)) {
      if (target.startsWith("src/") || target.startsWith("tests/")) {
        findings.push(`${where}: imports ${target}, which does not exist`);
      }
      continue;
    }
    if (!target.startsWith("src/")) continue;
    edges.push(target);
    const from = folderOf(file);
    const to = folderOf(target);
    const name = target.slice(target.lastIndexOf("/") + 1);
    // Rule 4: a _private.ts file is used only inside its own folder.
    if (name.startsWith("_") && from !== to && !from.startsWith(`${to}/`)) {
      findings.push(`${where}: ${target} is private to ${to}/`);
    }
    // Rule 3: a folder with a mod.ts is entered through it (code only; main.ts wires everything).
    if (inSrc && file !== "src/main.ts" && !name.startsWith("_")) {
      for (const folder of hasMod) {
        const inside = to === folder || to.startsWith(`${folder}/`);
        const fromInside = from === folder || from.startsWith(`${folder}/`);
        if (inside && !fromInside && target !== `${folder}/mod.ts`) {
          findings.push(`${where}: reaches ${target} past ${folder}/mod.ts`);
          break;
        }
      }
    }
    if (inSrc) {
      const a = unitOf(file), b = unitOf(target);
      if (a !== b && a !== "src/main.ts") {
        const m = unitGraph.get(a) ?? new Map<string, string>();
        if (!m.has(b)) m.set(b, where);
        unitGraph.set(a, m);
      }
    }
  }
  if (inSrc) graph.set(file, edges);
}

// Rules 1 and 2: cycles (Tarjan's strongly connected components).
function cycles(nodes: Iterable<string>, next: (n: string) => Iterable<string>): string[][] {
  let index = 0;
  const idx = new Map<string, number>(), low = new Map<string, number>();
  const stack: string[] = [], on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of next(v)) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) out.push(scc.sort());
    }
  };
  for (const n of nodes) if (!idx.has(n)) visit(n);
  return out;
}

for (const scc of cycles(graph.keys(), (n) => graph.get(n) ?? [])) {
  findings.push(`import cycle between files: ${scc.join(" ↔ ")}`);
}
for (const scc of cycles(unitGraph.keys(), (n) => unitGraph.get(n)?.keys() ?? [])) {
  const set = new Set(scc);
  const witness = scc.flatMap((a) =>
    [...(unitGraph.get(a) ?? [])].filter(([b]) => set.has(b)).map(([b, w]) => `${a} → ${b} (${w})`)
  );
  findings.push(`import cycle between folders: ${witness.join("; ")}`);
}

// Rule 5: the runtime door.
const RUNTIME = /\bDeno\.|\bBun\.|\bprocess\.execPath\b|\bglobalThis\.(Deno|Bun)\b/;
for (const file of srcFiles) {
  if (file.startsWith("src/runtime/")) continue;
  const lines = readFileSync(join(root, file), "utf8").split("\n");
  lines.forEach((text, i) => {
    const code = text.replace(/\/\/.*$/, "");
    if (/^\s*(\*|\/\*)/.test(text)) return;
    if (RUNTIME.test(code)) findings.push(`${file}:${i + 1}: runtime-specific code outside src/runtime/`);
  });
}

// Rule 6: one test suffix.
for (const file of testFiles) {
  if (/_test\.tsx?$/.test(file)) findings.push(`${file}: test files end in .test.ts`);
}

if (findings.length > 0) {
  for (const f of findings) console.error(f);
  console.error(`check_imports: ${findings.length} finding(s)`);
  Deno.exit(1);
}
console.log(`check_imports: ${srcFiles.length} source and ${testFiles.length} test files, no finding`);
