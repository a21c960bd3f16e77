// Which module may import which, checked over the source instead of restated in file headers:
// lib/'s folders are layers (core, wire, store, chat, net, then app.ts on top) and no file imports
// from a layer above its own; lib/ has no import cycles and reaches nothing outside lib/ but npm
// and node modules; the base modules (errors, log, protocol, framing) depend on nothing else in
// lib/; only store/db.ts imports the database drivers; the terminal client uses only lib/'s base
// modules and has no cycles either.

import { assert, assertEquals } from "./support/assert.ts";
import { sanitized } from "./support/util.ts";

const ROOT = new URL("..", import.meta.url).pathname;

/** Modules of the wire format and logging: the base everything else builds on. */
const BASE_MODULES = new Set(["lib/core/errors.ts", "lib/core/log.ts", "lib/wire/protocol.ts", "lib/wire/framing.ts"]);
/** lib/'s layers, lowest first: a file may import from its own layer and those below it. */
const LAYERS = ["lib/core/", "lib/wire/", "lib/store/", "lib/chat/", "lib/net/", "lib/"];

/** The layer of a lib/ file: the index of its folder in LAYERS (lib/app.ts is the top). */
export function layerOf(path: string): number {
  const folder = path.slice(0, path.lastIndexOf("/") + 1);
  const layer = LAYERS.indexOf(folder);
  if (layer === -1) throw new Error(`${path} is in no layer: put it in one of ${LAYERS.join(", ")}`);
  return layer;
}
const DATABASE_DRIVERS = new Set(["postgres", "@electric-sql/pglite"]);
/** The import map's package prefixes ("nats/" reaches a package's own files): npm, not the project. */
const PACKAGE_PREFIXES = Object.keys(JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).imports)
  .filter((key) => key.endsWith("/"));
const isPackagePath = (specifier: string) => PACKAGE_PREFIXES.some((prefix) => specifier.startsWith(prefix));

/** Static imports and re-exports (also multi-line and type-only), side-effect imports, import(). */
const IMPORT_PATTERNS = [
  /^\s*(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']/gm,
  /^\s*import\s*["']([^"']+)["']/gm,
  /\bimport\(\s*["']([^"']+)["']\s*\)/g,
];

/** Every specifier imported by `source`. */
export function importsOf(source: string): string[] {
  const found: string[] = [];
  for (const pattern of IMPORT_PATTERNS) {
    for (const match of source.matchAll(pattern)) found.push(match[1]);
  }
  return found;
}

interface Edge {
  from: string;
  /** Project-relative path for relative imports; the bare specifier otherwise. */
  to: string;
}

/** The non-test, non-bench `.ts` files of `dir` (and its folders) and what each imports. */
function graphOf(dir: string, graph = new Map<string, Edge[]>()): Map<string, Edge[]> {
  for (const entry of Deno.readDirSync(`${ROOT}${dir}`)) {
    if (entry.isDirectory) graphOf(`${dir}/${entry.name}`, graph);
    if (!entry.isFile || !entry.name.endsWith(".ts") || /_(test|bench)\.ts$/.test(entry.name)) continue;
    const from = `${dir}/${entry.name}`;
    const edges = importsOf(Deno.readTextFileSync(`${ROOT}${from}`)).map((specifier) => ({
      from,
      to: specifier.startsWith(".") ? new URL(specifier, `file:///${from}`).pathname.slice(1) : specifier,
    }));
    graph.set(from, edges);
  }
  return graph;
}

/** One cycle among the graph's own files, as a path that ends where it starts, or undefined. */
export function findCycle(graph: Map<string, { to: string }[]>): string[] | undefined {
  const state = new Map<string, "visiting" | "done">();
  const path: string[] = [];
  const visit = (node: string): string[] | undefined => {
    if (state.get(node) === "done") return undefined;
    if (state.get(node) === "visiting") return [...path.slice(path.indexOf(node)), node];
    state.set(node, "visiting");
    path.push(node);
    for (const { to } of graph.get(node) ?? []) {
      if (!graph.has(to)) continue;
      const cycle = visit(to);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(node, "done");
    return undefined;
  };
  for (const node of graph.keys()) {
    const cycle = visit(node);
    if (cycle) return cycle;
  }
  return undefined;
}

const lib = graphOf("lib");
const client = graphOf("client");
const libEdges = [...lib.values()].flat();
const clientEdges = [...client.values()].flat();
const describe = (edges: Edge[]) => edges.map((e) => `${e.from} -> ${e.to}`);

Deno.test("import graph: the parser sees multi-line, type-only and re-exported imports", sanitized, () => {
  assertEquals(
    importsOf(
      `import {\n  a,\n  type B,\n} from "./x.ts";\nimport type { C } from './y.ts';\n` +
        `export { d } from "./z.ts";\nimport "./side.ts";\nconst m = await import("./lazy.ts");\n` +
        `// import { e } from "./commented.ts" is not at the start of a statement\n`,
    ),
    ["./x.ts", "./y.ts", "./z.ts", "./side.ts", "./lazy.ts"],
  );
  // And it found the real graph: a known multi-line import and a known driver import.
  assert(lib.get("lib/chat/dispatcher.ts")?.some((e) => e.to === "lib/wire/protocol.ts"), "dispatcher -> protocol");
  assert(lib.get("lib/store/db.ts")?.some((e) => e.to === "postgres"), "db -> postgres");
});

Deno.test("import graph: the cycle finder reports a cycle and accepts a tree", sanitized, () => {
  const edges = (...to: string[]) => to.map((t) => ({ to: t }));
  assertEquals(findCycle(new Map([["a", edges("b")], ["b", edges("c")], ["c", edges("a")], ["d", edges("a")]])), [
    "a",
    "b",
    "c",
    "a",
  ]);
  assertEquals(findCycle(new Map([["a", edges("b", "c")], ["b", edges("c", "npm")], ["c", edges()]])), undefined);
});

Deno.test("import graph: lib/ has no cycles", sanitized, () => {
  assertEquals(findCycle(lib), undefined);
});

Deno.test("import graph: every lib/ file is in a layer and imports nothing from a layer above", sanitized, () => {
  const upward = libEdges.filter((e) => e.to.startsWith("lib/") && layerOf(e.to) > layerOf(e.from));
  assertEquals(describe(upward), []);
  assertEquals(layerOf("lib/app.ts"), LAYERS.length - 1);
  assertEquals(layerOf("lib/net/http.ts") > layerOf("lib/chat/dispatcher.ts"), true);
});

Deno.test("import graph: lib/ imports nothing outside lib/ except npm and node modules", sanitized, () => {
  const outside = libEdges.filter((e) =>
    e.to.includes("/") && !e.to.startsWith("lib/") && !e.to.startsWith("@") && !isPackagePath(e.to)
  );
  assertEquals(describe(outside), [], "lib/ must not import client/, bench/ or tests/");
});

Deno.test("import graph: errors, log, protocol and framing import nothing else from lib/", sanitized, () => {
  const edges = libEdges.filter((e) => BASE_MODULES.has(e.from) && e.to.startsWith("lib/") && !BASE_MODULES.has(e.to));
  assertEquals(describe(edges), []);
});

Deno.test("import graph: only db.ts imports the database drivers", sanitized, () => {
  const edges = [...libEdges, ...clientEdges].filter((e) => DATABASE_DRIVERS.has(e.to) && e.from !== "lib/store/db.ts");
  assertEquals(describe(edges), []);
  assert(libEdges.some((e) => e.from === "lib/store/db.ts" && DATABASE_DRIVERS.has(e.to)), "db.ts imports them");
});

Deno.test("import graph: the terminal client uses only lib/'s base modules, and has no cycles", sanitized, () => {
  const edges = clientEdges.filter((e) =>
    e.to.includes("/") && !e.to.startsWith("client/") && !e.to.startsWith("@") && !BASE_MODULES.has(e.to)
  );
  assertEquals(describe(edges), []);
  assertEquals(findCycle(client), undefined);
});
