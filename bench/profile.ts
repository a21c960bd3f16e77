// Summarises a V8 CPU profile (.cpuprofile, as `deno run --cpu-prof` writes): where the time went,
// by function (self time) and by source (the project's files, the driver, Deno's runtime, GC, idle).
//
//   deno run --allow-read bench/profile.ts bench/results/profiles/fanout-12345.cpuprofile [top]

import { fmt, print, table } from "./out.ts";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileSummary {
  totalMs: number;
  idleMs: number;
  byFunction: { name: string; ms: number }[];
  bySource: { source: string; ms: number }[];
}

/** Self time per function and per source, from the sample counts. */
export function summarise(profile: CpuProfile): ProfileSummary {
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const selfUs = new Map<number, number>();
  // A sample's time is the delta to the next one.
  for (let i = 0; i < samples.length; i++) {
    const us = deltas[i + 1] ?? 0;
    selfUs.set(samples[i], (selfUs.get(samples[i]) ?? 0) + us);
  }
  const byFunction = new Map<string, number>();
  const bySource = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  for (const node of profile.nodes) {
    const us = selfUs.get(node.id) ?? 0;
    if (us === 0) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    totalUs += us;
    if (functionName === "(idle)") idleUs += us;
    const where = shortUrl(url);
    const name = `${functionName || "(anonymous)"} ${where ? `${where}:${lineNumber + 1}` : ""}`.trim();
    byFunction.set(name, (byFunction.get(name) ?? 0) + us);
    const source = sourceOf(functionName, url);
    bySource.set(source, (bySource.get(source) ?? 0) + us);
  }
  const sorted = (m: Map<string, number>) => [...m.entries()].sort((a, b) => b[1] - a[1]);
  return {
    totalMs: totalUs / 1000,
    idleMs: idleUs / 1000,
    byFunction: sorted(byFunction).map(([name, us]) => ({ name, ms: us / 1000 })),
    bySource: sorted(bySource).map(([source, us]) => ({ source, ms: us / 1000 })),
  };
}

function shortUrl(url: string): string {
  if (!url) return "";
  const nm = url.indexOf("node_modules/");
  if (nm >= 0) return url.slice(nm + "node_modules/".length).replace(/^\.deno\/[^/]+\/node_modules\//, "");
  const root = new URL("..", import.meta.url).href;
  if (url.startsWith(root)) return url.slice(root.length);
  // The bench runs servers from a copy of the code in /tmp/chat-bench-code.XXXXXX/.
  const copy = /\/chat-bench-code\.[^/]+\/(.*)$/.exec(url);
  return copy ? copy[1] : url;
}

function sourceOf(functionName: string, url: string): string {
  if (functionName.startsWith("(")) return functionName; // (idle), (garbage collector), (program)
  if (functionName.startsWith("op_")) return "Deno ops (I/O and native calls)";
  const short = shortUrl(url);
  if (short.startsWith("lib/")) return short;
  if (url.includes("node_modules/")) return `npm:${short.split("/")[0]}`;
  if (url.startsWith("ext:") || url.startsWith("node:")) return url.split("/")[0] + "/" + (url.split("/")[1] ?? "");
  return short || "(native / builtins)";
}

/** Prints the summary of one profile: sources, then the top functions, as shares of the busy time. */
export function printProfile(path: string, summary: ProfileSummary, top = 20): void {
  const busy = summary.totalMs - summary.idleMs;
  print(`== profile ${path}: ${fmt(summary.totalMs / 1000, 2)} s sampled, ${fmt(busy / 1000, 2)} s busy`);
  const share = (ms: number) => `${((ms / busy) * 100).toFixed(1)}%`;
  const sources = summary.bySource.filter((s) => s.source !== "(idle)").slice(0, 12);
  print(table([["source", "self ms", "of busy"], ...sources.map((s) => [s.source, fmt(s.ms), share(s.ms)])]));
  const fns = summary.byFunction.filter((f) => !f.name.startsWith("(idle)")).slice(0, top);
  print(table([["function", "self ms", "of busy"], ...fns.map((f) => [f.name, fmt(f.ms), share(f.ms)])]));
  print("");
}

if (import.meta.main) {
  const [path, topText] = Deno.args;
  if (!path) {
    print("usage: deno run --allow-read bench/profile.ts <file.cpuprofile> [top]");
    Deno.exit(2);
  }
  const profile = JSON.parse(await Deno.readTextFile(path)) as CpuProfile;
  printProfile(path, summarise(profile), Number(topText ?? 20));
}
